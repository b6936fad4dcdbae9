//! The registry's promises, each checked against a real case: refusals of
//! unsigned, untrusted, out-of-namespace and tampered artifacts; immutable
//! versions, yank and aliases; an audit log that catches every kind of SQL
//! tampering; concurrent publishers; crash safety under SIGKILL; and the
//! remote registry over a loopback socket.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

use rusqlite::Connection;
use tensorlet_registry::client::{Remote, pull};
use tensorlet_registry::server::{ServerConfig, serve_listener};
use tensorlet_registry::{
    KeyPair, Kind, Manifest, Pin, Reference, Registry, RegistryError, SignedManifest, digest,
};

/// A registry in a temporary home with key `alice` trusted for `acme`.
fn setup() -> (tempfile::TempDir, Registry, KeyPair) {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::open(home.path()).unwrap();
    let key = reg.keygen("alice").unwrap();
    reg.trust_add(&key.public(), &["acme".into()]).unwrap();
    (home, reg, key)
}

fn plugin(name: &str, version: &str, bytes: &[u8]) -> Manifest {
    let mut m = Manifest::new(name, version, Kind::Preprocessor).unwrap();
    m.blobs.insert("component".into(), digest(bytes));
    m.config = serde_json::json!({"scale": 0.5});
    m
}

fn publish(reg: &Registry, key: &KeyPair, name: &str, version: &str, bytes: &[u8]) -> String {
    reg.publish(&plugin(name, version, bytes).sign(key), &[bytes.to_vec()])
        .unwrap()
        .digest
}

fn refusal(e: RegistryError) -> (String, String, String) {
    match e {
        RegistryError::Refused {
            artifact,
            key_id,
            reason,
        } => (artifact, key_id, reason),
        other => panic!("expected a refusal, got: {other}"),
    }
}

fn sql(home: &Path, statements: &str) {
    let c = Connection::open(home.join("registry.db")).unwrap();
    c.execute_batch(statements).unwrap();
}

fn r(s: &str) -> Reference {
    s.parse().unwrap()
}

#[test]
fn a_published_artifact_verifies_and_yields_its_component() {
    let (_home, reg, key) = setup();
    let d = publish(&reg, &key, "acme/scale", "1.0.0", b"component bytes");
    let v = reg.verify(&r("acme/scale@1.0.0")).unwrap();
    assert_eq!(v.digest(), d);
    assert_eq!(v.key_id(), key.key_id());
    let c = v.component().unwrap();
    assert_eq!(c.bytes(), b"component bytes");
    assert_eq!(c.digest(), digest(b"component bytes"));
    assert_eq!(c.name(), "acme/scale@1.0.0");
    // By digest, by latest.
    assert_eq!(
        reg.verify(&r(&format!("acme/scale@{d}"))).unwrap().digest(),
        d
    );
    assert_eq!(reg.verify(&r("acme/scale")).unwrap().digest(), d);
    let report = reg.audit_verify().unwrap();
    // key.create, trust.add, publish
    assert_eq!(report.entries, 3);
    assert_eq!(report.checkpoint, 3);
    let actions: Vec<String> = reg
        .audit_log()
        .unwrap()
        .into_iter()
        .map(|e| e.action)
        .collect();
    assert_eq!(actions, ["key.create", "trust.add", "publish"]);
}

#[test]
fn unsigned_artifacts_are_refused() {
    let (home, reg, key) = setup();
    let unsigned = SignedManifest {
        manifest: plugin("acme/scale", "1.0.0", b"x"),
        signature: None,
    };
    let (artifact, key_id, reason) = refusal(reg.publish(&unsigned, &[b"x".to_vec()]).unwrap_err());
    assert_eq!(artifact, "acme/scale@1.0.0");
    assert_eq!(key_id, "none");
    assert!(reason.contains("unsigned"), "{reason}");

    // An unsigned manifest smuggled into the database is refused at load.
    publish(&reg, &key, "acme/scale", "1.0.0", b"x");
    let stripped = String::from_utf8(unsigned.to_canonical()).unwrap();
    let c = Connection::open(home.path().join("registry.db")).unwrap();
    c.execute("UPDATE artifacts SET manifest = ?1", [&stripped])
        .unwrap();
    let (_, _, reason) = refusal(reg.verify(&r("acme/scale@1.0.0")).unwrap_err());
    assert!(reason.contains("unsigned"), "{reason}");
    // The refusals were audited.
    let log = reg.audit_log().unwrap();
    assert!(log.iter().any(|e| e.action == "publish.refused"));
    assert!(log.iter().any(|e| e.action == "verify.failed"));
}

#[test]
fn an_untrusted_key_is_refused_at_publish_and_at_load() {
    let (_home, reg, key) = setup();
    let mallory = KeyPair::generate("mallory").unwrap();
    let (artifact, key_id, reason) = refusal(
        reg.publish(
            &plugin("acme/scale", "1.0.0", b"x").sign(&mallory),
            &[b"x".to_vec()],
        )
        .unwrap_err(),
    );
    assert_eq!(artifact, "acme/scale@1.0.0");
    assert_eq!(key_id, mallory.key_id());
    assert!(reason.contains("not in this trust policy"), "{reason}");
    assert!(reason.contains("tensorlet trust add"), "{reason}");

    // Trusted when published, distrusted since: refused at load.
    publish(&reg, &key, "acme/scale", "1.0.0", b"x");
    reg.trust_remove(&key.key_id()).unwrap();
    let (_, key_id, reason) = refusal(reg.verify(&r("acme/scale@1.0.0")).unwrap_err());
    assert_eq!(key_id, key.key_id());
    assert!(reason.contains("not in this trust policy"), "{reason}");
}

#[test]
fn a_trusted_key_outside_its_namespace_is_refused() {
    let (_home, reg, key) = setup();
    let (artifact, key_id, reason) = refusal(
        reg.publish(
            &plugin("globex/scale", "1.0.0", b"x").sign(&key),
            &[b"x".to_vec()],
        )
        .unwrap_err(),
    );
    assert_eq!(artifact, "globex/scale@1.0.0");
    assert_eq!(key_id, key.key_id());
    assert!(
        reason.contains("trusted only for namespace(s) acme, not for `globex`"),
        "{reason}"
    );
}

#[test]
fn a_flipped_byte_in_the_component_is_refused() {
    let (home, reg, key) = setup();
    publish(&reg, &key, "acme/scale", "1.0.0", b"component bytes");
    let hex = digest(b"component bytes")
        .trim_start_matches("sha256:")
        .to_string();
    let path = home.path().join("blobs/sha256").join(hex);
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[3] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let (artifact, key_id, reason) = refusal(reg.verify(&r("acme/scale@1.0.0")).unwrap_err());
    assert_eq!(artifact, "acme/scale@1.0.0");
    assert_eq!(key_id, key.key_id());
    assert!(reason.contains("blob `component` was modified"), "{reason}");
}

#[test]
fn a_flipped_byte_in_the_weights_is_refused() {
    let (home, reg, key) = setup();
    let pipeline_digest = {
        let m = Manifest::new("acme/iris", "1.0.0", Kind::Pipeline).unwrap();
        reg.publish(&m.sign(&key), &[]).unwrap().digest
    };
    let params = vec![7u8; 256];
    let mut m = Manifest::new("acme/iris-model", "0.1.0", Kind::Model).unwrap();
    m.blobs.insert("params.safetensors".into(), digest(&params));
    m.depends.insert(
        "pipeline".into(),
        Pin {
            reference: "acme/iris@1.0.0".into(),
            digest: pipeline_digest,
        },
    );
    m.lineage = serde_json::json!({"dataset": digest(b"data"), "run_id": "r1"});
    reg.publish(&m.sign(&key), std::slice::from_ref(&params))
        .unwrap();
    reg.verify(&r("acme/iris-model@0.1.0")).unwrap();
    let path = home
        .path()
        .join("blobs/sha256")
        .join(digest(&params).trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 0x80;
    std::fs::write(&path, bytes).unwrap();
    let (_, _, reason) = refusal(reg.verify(&r("acme/iris-model@0.1.0")).unwrap_err());
    assert!(
        reason.contains("blob `params.safetensors` was modified"),
        "{reason}"
    );
}

#[test]
fn a_flipped_byte_in_the_manifest_is_refused() {
    let (home, reg, key) = setup();
    publish(&reg, &key, "acme/scale", "1.0.0", b"x");
    // A meaningful edit: the config the plugin will receive.
    sql(
        home.path(),
        "UPDATE artifacts SET manifest = replace(manifest, '0.5', '0.6')",
    );
    let (_, key_id, reason) = refusal(reg.verify(&r("acme/scale@1.0.0")).unwrap_err());
    assert_eq!(key_id, key.key_id());
    assert!(reason.contains("its manifest was modified"), "{reason}");

    // Any single flipped byte anywhere in the stored manifest.
    let (home, reg, key) = setup();
    publish(&reg, &key, "acme/scale", "1.0.0", b"x");
    let c = Connection::open(home.path().join("registry.db")).unwrap();
    let text: String = c
        .query_row("SELECT manifest FROM artifacts", [], |r| r.get(0))
        .unwrap();
    for i in (0..text.len()).step_by(17) {
        let mut bytes = text.clone().into_bytes();
        bytes[i] ^= 1;
        let Ok(flipped) = String::from_utf8(bytes) else {
            continue;
        };
        c.execute("UPDATE artifacts SET manifest = ?1", [&flipped])
            .unwrap();
        let e = reg.verify(&r("acme/scale@1.0.0")).unwrap_err();
        assert!(e.is_refusal(), "byte {i}: {e}");
    }
}

#[test]
fn a_signature_swapped_in_from_another_artifact_is_refused() {
    let (home, reg, key) = setup();
    publish(&reg, &key, "acme/a", "1.0.0", b"a");
    publish(&reg, &key, "acme/b", "1.0.0", b"b");
    let signed_a = reg.show(&r("acme/a@1.0.0")).unwrap().1;
    let mut signed_b = reg.show(&r("acme/b@1.0.0")).unwrap().1;
    signed_b.signature = signed_a.signature.clone();
    // At publish time...
    let mut forged = signed_b.clone();
    forged.manifest.version = "2.0.0".into();
    let (_, _, reason) = refusal(reg.publish(&forged, &[b"b".to_vec()]).unwrap_err());
    assert!(reason.contains("signature does not verify"), "{reason}");
    // ...and in the database.
    let text = String::from_utf8(signed_b.to_canonical()).unwrap();
    let c = Connection::open(home.path().join("registry.db")).unwrap();
    c.execute(
        "UPDATE artifacts SET manifest = ?1 WHERE name = 'b'",
        [&text],
    )
    .unwrap();
    let (artifact, _, reason) = refusal(reg.verify(&r("acme/b@1.0.0")).unwrap_err());
    assert_eq!(artifact, "acme/b@1.0.0");
    assert!(reason.contains("signature does not verify"), "{reason}");
}

#[test]
fn an_existing_version_cannot_be_published_again() {
    let (_home, reg, key) = setup();
    let d = publish(&reg, &key, "acme/scale", "1.0.0", b"x");
    let again = reg.publish(
        &plugin("acme/scale", "1.0.0", b"y").sign(&key),
        &[b"y".to_vec()],
    );
    match again.unwrap_err() {
        RegistryError::AlreadyExists { artifact, digest } => {
            assert_eq!(artifact, "acme/scale@1.0.0");
            assert_eq!(digest, d);
        }
        e => panic!("{e}"),
    }
    // The original is untouched.
    let v = reg.verify(&r("acme/scale@1.0.0")).unwrap();
    assert_eq!(v.component().unwrap().bytes(), b"x");
}

#[test]
fn a_yanked_version_is_used_only_when_named_exactly() {
    let (_home, reg, key) = setup();
    publish(&reg, &key, "acme/scale", "1.0.0", b"a");
    publish(&reg, &key, "acme/scale", "1.10.0", b"c");
    publish(&reg, &key, "acme/scale", "1.2.0", b"b");
    assert_eq!(reg.resolve(&r("acme/scale")).unwrap().version, "1.10.0");
    reg.yank(&r("acme/scale@1.10.0")).unwrap();
    assert_eq!(reg.resolve(&r("acme/scale")).unwrap().version, "1.2.0");
    let exact = reg.verify(&r("acme/scale@1.10.0")).unwrap();
    assert!(exact.yanked());
    assert_eq!(exact.component().unwrap().bytes(), b"c");
    reg.yank(&r("acme/scale@1.2.0")).unwrap();
    reg.yank(&r("acme/scale@1.0.0")).unwrap();
    let e = reg.resolve(&r("acme/scale")).unwrap_err().to_string();
    assert!(e.contains("every version of acme/scale is yanked"), "{e}");
    let yanks = reg
        .audit_log()
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "yank")
        .count();
    assert_eq!(yanks, 3);
}

#[test]
fn aliases_point_at_versions_and_moves_are_audited() {
    let (_home, reg, key) = setup();
    publish(&reg, &key, "acme/scale", "1.0.0", b"a");
    publish(&reg, &key, "acme/scale", "1.1.0", b"b");
    assert_eq!(
        reg.alias_set("acme/scale", "production", "1.0.0").unwrap(),
        None
    );
    assert_eq!(
        reg.resolve(&r("acme/scale@production")).unwrap().version,
        "1.0.0"
    );
    assert_eq!(
        reg.alias_set("acme/scale", "production", "1.1.0").unwrap(),
        Some("1.0.0".into())
    );
    let v = reg.verify(&r("acme/scale@production")).unwrap();
    assert_eq!(v.component().unwrap().bytes(), b"b");
    assert!(reg.alias_set("acme/scale", "production", "9.9.9").is_err());
    let list = reg.list().unwrap();
    assert_eq!(list[1].aliases, ["production"]);
    let moves: Vec<_> = reg
        .audit_log()
        .unwrap()
        .into_iter()
        .filter(|e| e.action == "alias.set")
        .map(|e| e.detail["to"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(moves, ["1.0.0", "1.1.0"]);
}

/// An alias never points at a version that would be refused when served:
/// `alias_set`, `promote` and `rollback` verify the target in the
/// transaction that moves the alias, and audit the refusal.
#[test]
fn aliases_move_only_to_versions_that_verify() {
    let (home, reg, key) = setup();
    publish(&reg, &key, "acme/scale", "1.0.0", b"a");
    publish(&reg, &key, "acme/scale", "1.1.0", b"b");
    reg.alias_set("acme/scale", "production", "1.0.0").unwrap();
    reg.promote(&r("acme/scale@1.1.0"), "production").unwrap();
    // 1.0.0's component is modified on disk: moving an alias back to it, in
    // any of the three ways, is refused and leaves the alias where it was.
    let hex = digest(b"a").trim_start_matches("sha256:").to_string();
    std::fs::write(home.path().join("blobs/sha256").join(hex), b"evil").unwrap();
    let (artifact, key_id, reason) = refusal(
        reg.alias_set("acme/scale", "production", "1.0.0")
            .unwrap_err(),
    );
    assert_eq!(
        (artifact.as_str(), key_id.as_str()),
        ("acme/scale@1.0.0", key.key_id().as_str())
    );
    assert!(
        reason.starts_with("blob `component` was modified"),
        "{reason}"
    );
    let (_, _, reason) = refusal(
        reg.promote(&r("acme/scale@1.0.0"), "production")
            .unwrap_err(),
    );
    assert!(
        reason.starts_with("blob `component` was modified"),
        "{reason}"
    );
    let (_, _, reason) = refusal(reg.rollback("acme/scale", "production").unwrap_err());
    assert!(
        reason.starts_with("blob `component` was modified"),
        "{reason}"
    );
    assert_eq!(
        reg.resolve(&r("acme/scale@production")).unwrap().version,
        "1.1.0"
    );
    let refusals: Vec<String> = reg
        .audit_log()
        .unwrap()
        .into_iter()
        .filter(|e| e.action.ends_with(".refused"))
        .map(|e| format!("{} {}", e.action, e.subject))
        .collect();
    assert_eq!(
        refusals,
        [
            "alias.refused acme/scale@1.0.0",
            "promote.refused acme/scale@1.0.0",
            "rollback.refused acme/scale@1.0.0"
        ]
    );
    // A key no longer trusted: refused with that reason.
    reg.trust_remove(&key.key_id()).unwrap();
    let (_, _, reason) = refusal(reg.alias_set("acme/scale", "staging", "1.1.0").unwrap_err());
    assert!(reason.contains("not in this trust policy"), "{reason}");
    assert!(reg.resolve(&r("acme/scale@staging")).is_err());
    reg.audit_verify().unwrap();
}

#[test]
fn a_second_rollback_names_every_version_the_alias_pointed_at() {
    let (_home, reg, key) = setup();
    publish(&reg, &key, "acme/scale", "0.1.0", b"a");
    publish(&reg, &key, "acme/scale", "0.1.1", b"b");
    reg.alias_set("acme/scale", "production", "0.1.0").unwrap();
    reg.alias_set("acme/scale", "production", "0.1.1").unwrap();
    let m = reg.rollback("acme/scale", "production").unwrap();
    assert_eq!((m.from.as_deref(), m.to.as_str()), (Some("0.1.1"), "0.1.0"));
    let e = reg.rollback("acme/scale", "production").unwrap_err();
    assert!(matches!(e, RegistryError::NotFound(_)), "{e}");
    let e = e.to_string();
    assert!(
        e.contains("acme/scale@production is at 0.1.0, the first version it pointed at"),
        "{e}"
    );
    assert!(e.contains("(to 0.1.1) have been rolled back"), "{e}");
    assert!(!e.contains("pointed only at"), "{e}");
    assert_eq!(
        reg.resolve(&r("acme/scale@production")).unwrap().version,
        "0.1.0",
        "a refused rollback moves nothing"
    );

    // Moved forward again, it rolls back to 0.1.0 once more.
    reg.alias_set("acme/scale", "production", "0.1.1").unwrap();
    let m = reg.rollback("acme/scale", "production").unwrap();
    assert_eq!(m.to, "0.1.0");

    // An alias that never moved says so.
    reg.alias_set("acme/scale", "staging", "0.1.1").unwrap();
    let e = reg
        .rollback("acme/scale", "staging")
        .unwrap_err()
        .to_string();
    assert!(e.contains("has pointed only at 0.1.1"), "{e}");
}

/// A registry whose log has 7 entries.
fn busy() -> (tempfile::TempDir, Registry) {
    let (home, reg, key) = setup();
    for v in ["1.0.0", "1.1.0", "1.2.0", "1.3.0"] {
        publish(&reg, &key, "acme/scale", v, v.as_bytes());
    }
    reg.yank(&r("acme/scale@1.0.0")).unwrap();
    assert_eq!(reg.audit_verify().unwrap().entries, 7);
    (home, reg)
}

fn audit_error(reg: &Registry) -> String {
    match reg.audit_verify().unwrap_err() {
        RegistryError::Audit(m) => m,
        e => panic!("{e}"),
    }
}

#[test]
fn the_audit_log_refuses_plain_updates_and_deletes() {
    let (home, _reg) = busy();
    let c = Connection::open(home.path().join("registry.db")).unwrap();
    let e = c
        .execute("UPDATE audit SET subject = 'x' WHERE seq = 3", [])
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
    let e = c
        .execute("DELETE FROM audit WHERE seq = 7", [])
        .unwrap_err();
    assert!(e.to_string().contains("append-only"), "{e}");
}

#[test]
fn an_edited_audit_entry_is_named() {
    let (home, reg) = busy();
    sql(
        home.path(),
        "DROP TRIGGER audit_no_update; UPDATE audit SET subject = 'acme/other@1.0.0' WHERE seq = 4",
    );
    let m = audit_error(&reg);
    assert!(
        m.starts_with("entry 4 (publish acme/other@1.0.0) was edited"),
        "{m}"
    );
}

#[test]
fn a_deleted_audit_entry_is_named() {
    let (home, reg) = busy();
    sql(
        home.path(),
        "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 3",
    );
    let m = audit_error(&reg);
    assert!(m.starts_with("entry 3 was deleted"), "{m}");

    // Deleted and renumbered to hide the gap.
    let (home, reg) = busy();
    sql(
        home.path(),
        "DROP TRIGGER audit_no_delete; DROP TRIGGER audit_no_update;
         DELETE FROM audit WHERE seq = 3;
         UPDATE audit SET seq = seq + 100 WHERE seq > 3;
         UPDATE audit SET seq = seq - 101 WHERE seq > 100;",
    );
    let m = audit_error(&reg);
    assert!(
        m.starts_with("entry 3 (publish acme/scale@1.1.0) does not follow entry 2"),
        "{m}"
    );
}

#[test]
fn reordered_audit_entries_are_named() {
    let (home, reg) = busy();
    sql(
        home.path(),
        "DROP TRIGGER audit_no_update;
         UPDATE audit SET seq = 100 WHERE seq = 4;
         UPDATE audit SET seq = 4 WHERE seq = 5;
         UPDATE audit SET seq = 5 WHERE seq = 100;",
    );
    let m = audit_error(&reg);
    assert!(
        m.starts_with("entry 4 (publish acme/scale@1.2.0) is out of order"),
        "{m}"
    );
}

#[test]
fn an_inserted_audit_entry_is_named() {
    // Appended at the end with a correctly recomputed chain: only the node
    // signature gives it away.
    let (home, reg) = busy();
    let last = reg.audit_log().unwrap().pop().unwrap();
    let detail = serde_json::json!({"note": "nothing to see"});
    let time = "2026-01-01T00:00:00.000Z";
    let hash = tensorlet_registry::entry_hash(&last.hash, time, "trust.add", "mallory", &detail);
    let forger = KeyPair::generate("forger").unwrap();
    let c = Connection::open(home.path().join("registry.db")).unwrap();
    c.execute(
        "INSERT INTO audit VALUES (8, ?1, 'trust.add', 'mallory', ?2, ?3, ?4, ?5)",
        rusqlite::params![
            time,
            detail.to_string(),
            last.hash,
            hash,
            forger.sign(hash.as_bytes())
        ],
    )
    .unwrap();
    let m = audit_error(&reg);
    assert!(
        m.starts_with("entry 8 (trust.add mallory) was not written by this node"),
        "{m}"
    );

    // Inserted in the middle by replaying a genuine entry.
    let (home, reg) = busy();
    sql(
        home.path(),
        "DROP TRIGGER audit_no_update;
         UPDATE audit SET seq = seq + 100 WHERE seq >= 4;
         UPDATE audit SET seq = seq - 99 WHERE seq > 100;
         INSERT INTO audit SELECT 4, time, action, subject, detail, prev_hash, hash, signature
           FROM audit WHERE seq = 2;",
    );
    let m = audit_error(&reg);
    assert!(m.starts_with("entry 4 (trust.add"), "{m}");
}

#[test]
fn a_truncated_audit_log_is_caught_by_the_checkpoint() {
    let (home, reg) = busy();
    sql(
        home.path(),
        "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq > 5",
    );
    let m = audit_error(&reg);
    assert_eq!(
        m,
        "the log was truncated after entry 5: the signed checkpoint records 7 entries"
    );
    // A forged checkpoint does not help.
    std::fs::write(
        home.path().join("audit.checkpoint"),
        r#"{"hash":"00","key_id":"x","seq":5,"signature":"00"}"#,
    )
    .unwrap();
    let m = audit_error(&reg);
    assert!(m.contains("is not signed by this node's key"), "{m}");
}

#[test]
fn concurrent_publishers_all_land_and_the_chain_holds() {
    let (home, _reg, _key) = setup();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let home = home.path().to_path_buf();
            std::thread::spawn(move || {
                // Each thread has its own connection, as separate processes would.
                let reg = Registry::open(&home).unwrap();
                let key = reg.key("alice").unwrap();
                for i in 0..8 {
                    let bytes = format!("thread {t} version {i}").into_bytes();
                    publish(
                        &reg,
                        &key,
                        &format!("acme/t{t}"),
                        &format!("1.0.{i}"),
                        &bytes,
                    );
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let reg = Registry::open(home.path()).unwrap();
    assert_eq!(reg.list().unwrap().len(), 32);
    for t in 0..4 {
        for i in 0..8 {
            reg.verify(&r(&format!("acme/t{t}@1.0.{i}"))).unwrap();
        }
    }
    let report = reg.audit_verify().unwrap();
    assert_eq!(report.entries, 2 + 32);
    assert_eq!(report.checkpoint, 34);
}

/// The child of `publishes_survive_sigkill`: publishes in a loop and prints
/// `ACK <version>` after each publish returns. Does nothing in a normal run.
#[test]
fn crash_child() {
    let Some(home) = std::env::var_os("TENSORLET_CRASH_HOME") else {
        return;
    };
    let round: u64 = std::env::var("TENSORLET_CRASH_ROUND")
        .unwrap()
        .parse()
        .unwrap();
    let reg = Registry::open(Path::new(&home)).unwrap();
    let key = reg.key("alice").unwrap();
    for i in 0.. {
        let version = format!("{round}.0.{i}");
        let mut bytes = vec![round as u8; 8192];
        bytes.extend_from_slice(version.as_bytes());
        publish(&reg, &key, "acme/crash", &version, &bytes);
        println!("ACK {version}");
    }
}

#[test]
fn publishes_survive_sigkill() {
    let (home, reg, _key) = setup();
    drop(reg);
    let exe = std::env::current_exe().unwrap();
    let mut acked = Vec::new();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let started = std::time::Instant::now();
    let mut rounds = 0;
    while rounds < 40 && started.elapsed().as_secs() < 20 {
        rounds += 1;
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let delay = 30 + seed % 170;
        let mut child = Command::new(&exe)
            .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
            .env("TENSORLET_CRASH_HOME", home.path())
            .env("TENSORLET_CRASH_ROUND", rounds.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let reader = std::thread::spawn(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("ACK ").map(str::to_string))
                .collect::<Vec<_>>()
        });
        std::thread::sleep(std::time::Duration::from_millis(delay));
        // SIGKILL: no destructors, no flushing, no chance to finish a write.
        unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
        child.wait().unwrap();
        acked.extend(reader.join().unwrap());
    }
    eprintln!(
        "{rounds} SIGKILL rounds, {} acknowledged publishes",
        acked.len()
    );
    assert!(rounds >= 10, "only {rounds} rounds");
    assert!(
        acked.len() >= 10,
        "the child published too little: {acked:?}"
    );

    let c = Connection::open(home.path().join("registry.db")).unwrap();
    let ok: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(ok, "ok");
    let reg = Registry::open(home.path()).unwrap();
    let report = reg.audit_verify().unwrap();
    assert!(report.entries >= 2 + acked.len() as u64, "{report:?}");
    for v in &acked {
        reg.verify(&r(&format!("acme/crash@{v}")))
            .unwrap_or_else(|e| panic!("acknowledged publish {v} lost: {e}"));
    }
}

/// Serves `reg` on a loopback port in a background thread.
fn serve(reg: Registry, max_body_bytes: usize) -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let reg = Arc::new(reg);
    std::thread::spawn(move || {
        serve_listener(
            reg,
            listener,
            ServerConfig {
                max_body_bytes,
                ..ServerConfig::default()
            },
        )
    });
    url
}

#[test]
fn the_remote_registry_accepts_trusted_publishes_and_clients_verify_pulls() {
    // Server trusts alice for acme.
    let (server_home, server_reg, alice) = setup();
    let url = serve(server_reg, 64 << 10);
    let remote = Remote::new(&url).unwrap();

    let bytes = b"remote component".to_vec();
    let published = remote
        .publish(
            &plugin("acme/scale", "1.0.0", &bytes).sign(&alice),
            std::slice::from_ref(&bytes),
        )
        .unwrap();
    assert_eq!(published.reference, "acme/scale@1.0.0");
    assert_eq!(remote.list().unwrap().len(), 1);

    // The server refuses an untrusted key, an existing version and a huge body.
    let mallory = KeyPair::generate("mallory").unwrap();
    let e = remote
        .publish(
            &plugin("acme/evil", "1.0.0", b"e").sign(&mallory),
            &[b"e".to_vec()],
        )
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("403") && e.contains("not in this trust policy"),
        "{e}"
    );
    let e = remote
        .publish(
            &plugin("acme/scale", "1.0.0", b"z").sign(&alice),
            &[b"z".to_vec()],
        )
        .unwrap_err()
        .to_string();
    assert!(e.contains("409") && e.contains("already published"), "{e}");
    let big = vec![1u8; 100 << 10];
    let e = remote
        .publish(&plugin("acme/big", "1.0.0", &big).sign(&alice), &[big])
        .unwrap_err()
        .to_string();
    assert!(e.contains("413"), "{e}");

    // A client that trusts alice pulls, verifies and caches.
    let client_home = tempfile::tempdir().unwrap();
    let client = Registry::open(client_home.path()).unwrap();
    client.trust_add(&alice.public(), &["acme".into()]).unwrap();
    let v = pull(&client, &remote, &r("acme/scale")).unwrap();
    assert_eq!(v.component().unwrap().bytes(), b"remote component");
    assert!(
        client
            .audit_log()
            .unwrap()
            .iter()
            .any(|e| e.action == "pull")
    );
    // Offline: no connection is `Unreachable` (after which a cache may
    // answer), and the cache answers without the server.
    let dead = Remote::new("http://127.0.0.1:9").unwrap();
    let e = pull(&client, &dead, &r("acme/scale")).unwrap_err();
    assert!(
        e.is_unreachable() && e.to_string().contains("connection refused"),
        "{e:?}"
    );
    client.verify(&r("acme/scale@1.0.0")).unwrap();

    // A client that does not trust alice refuses the same artifact.
    let other_home = tempfile::tempdir().unwrap();
    let other = Registry::open(other_home.path()).unwrap();
    let (_, key_id, reason) = refusal(pull(&other, &remote, &r("acme/scale@1.0.0")).unwrap_err());
    assert_eq!(key_id, alice.key_id());
    assert!(reason.contains("not in this trust policy"), "{reason}");
    assert!(other.list().unwrap().is_empty());

    // A compromised server swaps the component: the client refuses it.
    let hex = digest(&bytes).trim_start_matches("sha256:").to_string();
    std::fs::write(server_home.path().join("blobs/sha256").join(hex), b"evil").unwrap();
    let third_home = tempfile::tempdir().unwrap();
    let third = Registry::open(third_home.path()).unwrap();
    third.trust_add(&alice.public(), &["acme".into()]).unwrap();
    let e = pull(&third, &remote, &r("acme/scale@1.0.0")).unwrap_err();
    assert!(e.to_string().contains("refusing"), "{e}");
    assert!(third.list().unwrap().is_empty());
}
