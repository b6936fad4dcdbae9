//! An audit log that cannot be emptied, cut back or restarted silently: each
//! way of deleting entries (all of them, with or without the checkpoint file,
//! the tail, one in the middle, the head replaced), of removing or swapping
//! the checkpoint file, and of removing the origin record fails verification
//! with a sentence naming what is wrong; checkpoints exported elsewhere catch
//! what the node's own files cannot; and an untouched registry verifies.

use std::path::Path;
use std::sync::Arc;

use rusqlite::Connection;
use serde_json::json;
use tensorlet_registry::client::Remote;
use tensorlet_registry::server::{ServerConfig, serve_listener};
use tensorlet_registry::{
    AuditCheckpoint, KeyPair, Kind, Manifest, NODE_KEY, Reference, Registry, RegistryError,
    RunDetails, digest,
};

fn r(s: &str) -> Reference {
    s.parse().unwrap()
}

fn publish(reg: &Registry, key: &KeyPair, name: &str, version: &str, bytes: &[u8]) {
    let mut m = Manifest::new(name, version, Kind::Preprocessor).unwrap();
    m.blobs.insert("component".into(), digest(bytes));
    reg.publish(&m.sign(key), &[bytes.to_vec()]).unwrap();
}

/// A registry with some of everything the index holds, and 9 entries:
/// key.create, trust.add, 3 publishes, yank, alias.set, train.start,
/// dataset.add.
fn storied() -> (tempfile::TempDir, Registry) {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::open(home.path()).unwrap();
    let key = reg.keygen("alice").unwrap();
    reg.trust_add(&key.public(), &["acme".into()]).unwrap();
    for v in ["1.0.0", "1.1.0", "1.2.0"] {
        publish(&reg, &key, "acme/scale", v, v.as_bytes());
    }
    reg.yank(&r("acme/scale@1.0.0")).unwrap();
    reg.alias_set("acme/scale", "production", "1.1.0").unwrap();
    let run = RunDetails {
        seed: 1,
        ..RunDetails::default()
    };
    reg.runs().start("acme/pipeline@1.0.0", &run).unwrap();
    let csv = home.path().join("iris.csv");
    std::fs::write(&csv, "a,b\n1,2\n").unwrap();
    reg.datasets().add("iris", &csv).unwrap();
    assert_eq!(reg.audit_verify().unwrap().entries, 9);
    (home, reg)
}

fn sql(home: &Path, statements: &str) {
    Connection::open(home.join("registry.db"))
        .unwrap()
        .execute_batch(statements)
        .unwrap();
}

fn audit_error(reg: &Registry) -> String {
    audit_error_with(reg, &[])
}

fn audit_error_with(reg: &Registry, external: &[&Path]) -> String {
    match reg.audit_verify_with(external) {
        Err(RegistryError::Audit(m)) => m,
        Err(e) => panic!("not an audit failure: {e}"),
        Ok(r) => panic!("verified: {r:?}"),
    }
}

const INDEX: &str = "the index holds 3 artifacts, 1 alias, 1 run, 1 dataset and 1 trust entry";

/// Exports the registry's checkpoint to a file beside its home.
fn export(reg: &Registry, dir: &Path, name: &str) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, reg.audit_checkpoint().unwrap().to_canonical()).unwrap();
    path
}

/// What an attacker holding the node key can write: a checkpoint of the
/// log as it stands now.
fn forge_local_checkpoint(home: &Path) {
    let reg = Registry::open(home).unwrap();
    let node = reg.keys().load(NODE_KEY).unwrap();
    let log = reg.audit_log().unwrap();
    let (seq, hash) = log
        .last()
        .map(|e| (e.seq, e.hash.clone()))
        .unwrap_or((0, tensorlet_registry::GENESIS.into()));
    let mut message = json!({"seq": seq, "hash": hash, "since": 0});
    if let Some(first) = log.first() {
        message["first"] = json!(first.hash);
    }
    let cp = json!({
        "seq": seq, "hash": hash, "first": log.first().map(|e| e.hash.clone()), "since": 0,
        "key_id": node.key_id(),
        "signature": node.sign(&tensorlet_registry::canonical::to_vec(&message)),
    });
    std::fs::write(home.join("audit.checkpoint"), cp.to_string()).unwrap();
}

#[test]
fn an_untouched_registry_verifies_reopened_and_against_its_exported_checkpoints() {
    let (home, reg) = storied();
    let outside = tempfile::tempdir().unwrap();
    let at_9 = export(&reg, outside.path(), "at-9.json");
    let report = reg.audit_verify_with(&[&at_9]).unwrap();
    assert_eq!((report.entries, report.checkpoint), (9, 9));
    assert_eq!(report.external, [9]);
    drop(reg);
    let reg = Registry::open(home.path()).unwrap();
    reg.record("model.load", "acme/scale@1.1.0", json!({}))
        .unwrap();
    // A log that grew since the export still holds it.
    let report = reg.audit_verify_with(&[&at_9]).unwrap();
    assert_eq!((report.entries, report.external[0]), (10, 9));
    let cp = AuditCheckpoint::parse(&std::fs::read(&at_9).unwrap()).unwrap();
    assert_eq!(cp.seq, 9);
    assert!(cp.is_signed_by(&reg.node_key()));
    assert_eq!(
        cp.first.as_deref(),
        Some(reg.audit_log().unwrap()[0].hash.as_str())
    );

    // A new registry: an empty log with its checkpoint verifies, and so does
    // an export of it.
    let fresh_home = tempfile::tempdir().unwrap();
    let fresh = Registry::open(fresh_home.path()).unwrap();
    let empty = export(&fresh, outside.path(), "empty.json");
    let report = fresh.audit_verify_with(&[&empty]).unwrap();
    assert_eq!((report.entries, report.checkpoint), (0, 0));
}

#[test]
fn an_emptied_log_is_caught_with_and_without_its_checkpoint_file() {
    // Every row deleted; the checkpoint file stays.
    let (home, reg) = storied();
    sql(
        home.path(),
        "DROP TRIGGER audit_no_delete; DELETE FROM audit;",
    );
    assert_eq!(
        audit_error(&reg),
        format!(
            "the log is empty, but {INDEX}; the signed checkpoint records 9 entries; the \
             origin record names the log's first entry: entries were deleted"
        )
    );

    // The checkpoint file removed as well: opening the registry does not
    // start a fresh checkpoint, and verification still fails.
    std::fs::remove_file(home.path().join("audit.checkpoint")).unwrap();
    drop(reg);
    let reg = Registry::open(home.path()).unwrap();
    assert!(!home.path().join("audit.checkpoint").exists());
    assert_eq!(
        audit_error(&reg),
        format!(
            "the log is empty, but {INDEX}; the origin record names the log's first \
             entry: entries were deleted"
        )
    );

    // The next action starts a new chain from genesis: caught by the origin
    // record, which kept the first entry 1.
    reg.record("server.start", "http://127.0.0.1:7070", json!({}))
        .unwrap();
    assert_eq!(
        audit_error(&reg),
        "the log was restarted from genesis: its entry 1 (server.start http://127.0.0.1:7070) \
         is not the entry 1 this registry wrote first (the origin record keeps that one's hash)"
    );
}

#[test]
fn an_emptied_log_is_caught_when_the_origin_record_goes_too() {
    let (home, reg) = storied();
    std::fs::remove_file(home.path().join("audit.checkpoint")).unwrap();
    sql(
        home.path(),
        "DROP TRIGGER audit_no_delete; DELETE FROM audit;
         DROP TRIGGER audit_origin_no_delete; DELETE FROM audit_origin;",
    );
    drop(reg);
    let reg = Registry::open(home.path()).unwrap();
    // The index rows still say there was history.
    assert_eq!(
        audit_error(&reg),
        format!("the log is empty, but {INDEX}: entries were deleted")
    );
    reg.record("server.start", "http://127.0.0.1:7070", json!({}))
        .unwrap();
    assert!(
        audit_error(&reg).starts_with("the audit origin record was deleted"),
        "{}",
        audit_error(&reg)
    );

    // Without index rows, the missing origin record alone says it.
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::open(home.path()).unwrap();
    reg.keygen("alice").unwrap();
    sql(
        home.path(),
        "DROP TRIGGER audit_no_delete; DELETE FROM audit;
         DROP TRIGGER audit_origin_no_delete; DELETE FROM audit_origin;",
    );
    std::fs::remove_file(home.path().join("audit.checkpoint")).unwrap();
    drop(reg);
    let reg = Registry::open(home.path()).unwrap();
    assert!(!home.path().join("audit.checkpoint").exists());
    assert_eq!(
        audit_error(&reg),
        "the audit origin record was deleted (the database writes it when it is created and \
         never removes it): the log may have been emptied or restarted"
    );
}

#[test]
fn a_log_wiped_to_look_new_is_caught_by_an_exported_checkpoint() {
    // Everything the node holds is reset: log, index, origin record (made
    // again as new) and checkpoint file. Locally that is a new registry; the
    // checkpoint kept elsewhere is not fooled.
    let (home, reg) = storied();
    let outside = tempfile::tempdir().unwrap();
    let kept = export(&reg, outside.path(), "kept.json");
    sql(
        home.path(),
        "DROP TRIGGER audit_no_delete; DELETE FROM audit;
         DELETE FROM alias_history; DELETE FROM aliases; DELETE FROM artifact_blobs;
         DELETE FROM artifacts; DELETE FROM checkpoints; DELETE FROM runs;
         DELETE FROM datasets; DELETE FROM trust;
         DROP TRIGGER audit_origin_no_delete; DELETE FROM audit_origin;
         INSERT INTO audit_origin (id, created) VALUES (1, '2026-01-01T00:00:00Z');",
    );
    std::fs::remove_file(home.path().join("audit.checkpoint")).unwrap();
    drop(reg);
    let reg = Registry::open(home.path()).unwrap();
    assert_eq!(reg.audit_verify().unwrap().entries, 0);
    let m = audit_error_with(&reg, &[&kept]);
    assert_eq!(
        m,
        format!(
            "the log is empty, but the checkpoint {} records 9 entries: entries were \
             deleted",
            kept.display()
        )
    );
    reg.record("server.start", "http://127.0.0.1:7070", json!({}))
        .unwrap();
    let m = audit_error_with(&reg, &[&kept]);
    assert!(
        m.starts_with(
            "the log was restarted from genesis: its entry 1 (server.start \
             http://127.0.0.1:7070) is not the entry 1 the checkpoint"
        ),
        "{m}"
    );
}

#[test]
fn a_truncated_tail_is_caught_even_after_the_checkpoint_file_is_removed() {
    let (home, reg) = storied();
    let outside = tempfile::tempdir().unwrap();
    let kept = export(&reg, outside.path(), "kept.json");
    sql(
        home.path(),
        "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq > 6;",
    );
    assert_eq!(
        audit_error(&reg),
        "the log was truncated after entry 6: the signed checkpoint records 9 entries"
    );
    // The checkpoint file removed too, and the next commit writes a new one:
    // it says from which entry on it guards the log.
    std::fs::remove_file(home.path().join("audit.checkpoint")).unwrap();
    assert_eq!(
        audit_error(&reg),
        format!(
            "the checkpoint file {} is missing, so truncation cannot be ruled out",
            home.path().join("audit.checkpoint").display()
        )
    );
    reg.record("server.start", "http://127.0.0.1:7070", json!({}))
        .unwrap();
    let m = audit_error(&reg);
    assert!(
        m.contains("went missing (or was damaged) and was written again at entry 7"),
        "{m}"
    );
    // An attacker with the node key re-signs the checkpoint file; the index
    // still has rows whose entries are gone, and the exported checkpoint
    // names the entry the log no longer matches.
    forge_local_checkpoint(home.path());
    let m = audit_error(&reg);
    assert_eq!(
        m,
        "3 index rows are not accounted for by the log; the first: the index points \
         acme/scale@production at 1.1.0, but no `alias.set`, `promote` or `rollback` entry \
         records it: entries were deleted, or the index was edited behind the registry's back"
    );
    let m = audit_error_with(&reg, &[&kept]);
    assert_eq!(
        m,
        format!(
            "the log is shorter than the checkpoint {}: it ends at entry 7, the checkpoint \
             records 9 entries; entries 8 to 9 were deleted",
            kept.display()
        )
    );
}

#[test]
fn a_log_shorter_than_an_exported_checkpoint_names_the_deleted_entries() {
    let (home, reg) = storied();
    let outside = tempfile::tempdir().unwrap();
    let kept = export(&reg, outside.path(), "kept.json");
    // The dataset entry deleted, and the index row with it; the checkpoint
    // file re-signed with the node key.
    sql(
        home.path(),
        "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 9; DELETE FROM datasets;",
    );
    forge_local_checkpoint(home.path());
    assert_eq!(reg.audit_verify().unwrap().entries, 8);
    assert_eq!(
        audit_error_with(&reg, &[&kept]),
        format!(
            "the log is shorter than the checkpoint {}: it ends at entry 8, the checkpoint \
             records 9 entries; entry 9 was deleted",
            kept.display()
        )
    );
}

#[test]
fn a_middle_entry_deleted_or_the_head_replaced_is_named() {
    let (home, reg) = storied();
    sql(
        home.path(),
        "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 5;",
    );
    assert!(
        audit_error(&reg).starts_with("entry 5 was deleted"),
        "{}",
        audit_error(&reg)
    );

    // The head replaced by a replay of a genuine entry.
    let (home, reg) = storied();
    sql(
        home.path(),
        "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 9;
         INSERT INTO audit SELECT 9, time, action, subject, detail, prev_hash, hash, signature
           FROM audit WHERE seq = 3;",
    );
    let m = audit_error(&reg);
    assert!(m.starts_with("entry 9 (publish acme/scale@1.0.0)"), "{m}");

    // The head replaced by one signed with the node key, chained correctly:
    // the checkpoint file's hash catches it, and an exported checkpoint
    // does when the file is re-signed too.
    let (home, reg) = storied();
    let outside = tempfile::tempdir().unwrap();
    let kept = export(&reg, outside.path(), "kept.json");
    let node = reg.keys().load(NODE_KEY).unwrap();
    let log = reg.audit_log().unwrap();
    let prev = &log[7].hash;
    let (time, detail) = ("2026-01-01T00:00:00.000Z", json!({"digest": "sha256:00"}));
    let hash = tensorlet_registry::entry_hash(prev, time, "dataset.add", "other", &detail);
    let c = Connection::open(home.path().join("registry.db")).unwrap();
    c.execute_batch("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 9;")
        .unwrap();
    c.execute(
        "INSERT INTO audit VALUES (9, ?1, 'dataset.add', 'other', ?2, ?3, ?4, ?5)",
        rusqlite::params![
            time,
            detail.to_string(),
            prev,
            hash,
            node.sign(hash.as_bytes())
        ],
    )
    .unwrap();
    assert_eq!(
        audit_error(&reg),
        "entry 9 does not match the signed checkpoint: the log was rewritten up to there"
    );
    forge_local_checkpoint(home.path());
    assert_eq!(
        audit_error_with(&reg, &[&kept]),
        format!(
            "entry 9 (dataset.add other) diverges from the checkpoint {}: the log was rewritten \
             at or before entry 9",
            kept.display()
        )
    );
}

#[test]
fn a_removed_damaged_or_foreign_checkpoint_file_is_named() {
    let (home, reg) = storied();
    let path = home.path().join("audit.checkpoint");
    std::fs::remove_file(&path).unwrap();
    drop(reg);
    // Reopening does not write a new one for a registry with history.
    let reg = Registry::open(home.path()).unwrap();
    assert!(!path.exists());
    assert_eq!(
        audit_error(&reg),
        format!(
            "the checkpoint file {} is missing, so truncation cannot be ruled out",
            path.display()
        )
    );
    // The next commit writes it again, and says so.
    reg.record("server.start", "http://127.0.0.1:7070", json!({}))
        .unwrap();
    assert!(path.exists());
    assert_eq!(
        audit_error(&reg),
        format!(
            "the checkpoint file {} went missing (or was damaged) and was written again at \
             entry 10: entries deleted before then cannot be ruled out; restore the file from a \
             copy, or check the log against an exported checkpoint",
            path.display()
        )
    );

    // Damaged: named, and the next commit does not paper over it.
    let (home, reg) = storied();
    let path = home.path().join("audit.checkpoint");
    std::fs::write(&path, "{").unwrap();
    assert!(
        audit_error(&reg).starts_with(&format!(
            "the checkpoint file {} is damaged",
            path.display()
        )),
        "{}",
        audit_error(&reg)
    );
    reg.record("server.start", "http://127.0.0.1:7070", json!({}))
        .unwrap();
    assert!(
        audit_error(&reg).contains("was written again at entry 10"),
        "{}",
        audit_error(&reg)
    );

    // Another registry's checkpoint, copied over this one's or given as an
    // external checkpoint.
    let (home, reg) = storied();
    let (other_home, other) = storied();
    let m = audit_error_with(&reg, &[&other_home.path().join("audit.checkpoint")]);
    assert_eq!(
        m,
        format!(
            "the checkpoint {} was signed by key {}, not by this node's key {}: it comes from \
             another registry",
            other_home.path().join("audit.checkpoint").display(),
            other.node_key().key_id(),
            reg.node_key().key_id()
        )
    );
    std::fs::copy(
        other_home.path().join("audit.checkpoint"),
        home.path().join("audit.checkpoint"),
    )
    .unwrap();
    let m = audit_error(&reg);
    assert_eq!(
        m,
        format!(
            "the checkpoint file {} is not signed by this node's key ({} signed it, not {}): it \
             comes from another registry, or was forged",
            home.path().join("audit.checkpoint").display(),
            other.node_key().key_id(),
            reg.node_key().key_id()
        )
    );
    // The next commit does not adopt it either.
    reg.record("server.start", "http://127.0.0.1:7070", json!({}))
        .unwrap();
    assert!(
        audit_error(&reg).contains("was written again at entry 10"),
        "{}",
        audit_error(&reg)
    );
}

#[test]
fn the_origin_record_is_guarded_and_its_removal_named() {
    let (home, reg) = storied();
    let c = Connection::open(home.path().join("registry.db")).unwrap();
    for statement in [
        "DELETE FROM audit_origin",
        "UPDATE audit_origin SET first_hash = 'x'",
        "UPDATE audit_origin SET checkpointed = 0",
    ] {
        let e = c.execute(statement, []).unwrap_err();
        assert!(e.to_string().contains("audit origin record"), "{e}");
    }
    c.execute_batch("DROP TRIGGER audit_origin_no_delete; DELETE FROM audit_origin;")
        .unwrap();
    assert!(
        audit_error(&reg).starts_with("the audit origin record was deleted"),
        "{}",
        audit_error(&reg)
    );
}

#[test]
fn index_rows_written_behind_the_registrys_back_are_named() {
    // A key trusted through SQL, not through `trust add`.
    let (home, reg) = storied();
    let mallory = KeyPair::generate("mallory").unwrap();
    sql(
        home.path(),
        &format!(
            "INSERT INTO trust VALUES ('{}', '{}', '[\"acme\"]', '2026-01-01T00:00:00Z')",
            mallory.key_id(),
            mallory.public()
        ),
    );
    assert_eq!(
        audit_error(&reg),
        format!(
            "the trust policy holds key {} (namespaces acme), but no `trust.add` entry since its \
             last removal records it: entries were deleted, or the index was edited behind the \
             registry's back",
            mallory.key_id()
        )
    );

    // A namespace granted through SQL.
    let (home, reg) = storied();
    sql(home.path(), "UPDATE trust SET namespaces = '[\"*\"]'");
    let m = audit_error(&reg);
    assert!(
        m.contains("publish in *, but the audit log granted acme"),
        "{m}"
    );

    // An alias moved, a version un-yanked... through SQL.
    let (home, reg) = storied();
    sql(home.path(), "UPDATE aliases SET version = '1.2.0'");
    assert!(
        audit_error(&reg).starts_with(
            "the index points acme/scale@production at 1.2.0, but the audit log last moved it \
             to 1.1.0"
        ),
        "{}",
        audit_error(&reg)
    );

    // An artifact row inserted.
    let (home, reg) = storied();
    sql(
        home.path(),
        "INSERT INTO artifacts (namespace, name, version, kind, digest, manifest, key_id, created)
         SELECT namespace, name, '9.0.0', kind, 'sha256:99', manifest, key_id, created
           FROM artifacts WHERE version = '1.2.0'",
    );
    assert!(
        audit_error(&reg).starts_with(
            "the index holds acme/scale@9.0.0 (sha256:99), but no `publish` or `pull` entry \
             records it"
        ),
        "{}",
        audit_error(&reg)
    );
}

#[test]
fn a_registry_from_before_the_origin_record_upgrades_and_verifies() {
    let (home, reg) = storied();
    drop(reg);
    // What an older tensorlet left: no origin table, dataset schemas nor
    // tracked-run columns (schema version 2) and a checkpoint without
    // `first` and `since`.
    sql(
        home.path(),
        "DROP TABLE audit_origin; ALTER TABLE datasets DROP COLUMN schema; \
         ALTER TABLE runs DROP COLUMN namespace; ALTER TABLE runs DROP COLUMN key_id; \
         PRAGMA user_version = 2;",
    );
    let log = {
        let c = Connection::open(home.path().join("registry.db")).unwrap();
        let mut stmt = c
            .prepare("SELECT seq, hash FROM audit ORDER BY seq DESC LIMIT 1")
            .unwrap();
        stmt.query_row([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)))
            .unwrap()
    };
    let node = tensorlet_registry::KeyStore::new(home.path().join("keys"))
        .load(NODE_KEY)
        .unwrap();
    let message = json!({"seq": log.0, "hash": log.1});
    let legacy = json!({
        "seq": log.0, "hash": log.1, "key_id": node.key_id(),
        "signature": node.sign(&tensorlet_registry::canonical::to_vec(&message)),
    });
    std::fs::write(home.path().join("audit.checkpoint"), legacy.to_string()).unwrap();
    let reg = Registry::open(home.path()).unwrap();
    assert_eq!(reg.audit_verify().unwrap().entries, 9);
    reg.record("server.start", "http://127.0.0.1:7070", json!({}))
        .unwrap();
    assert_eq!(reg.audit_verify().unwrap().entries, 10);
}

#[test]
fn the_registry_server_hands_out_its_checkpoint_for_a_witness_to_keep() {
    let (home, reg) = storied();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let reg = Arc::new(reg);
    {
        let reg = reg.clone();
        std::thread::spawn(move || serve_listener(reg, listener, ServerConfig::default()));
    }
    let remote = Remote::new(&url).unwrap();
    let cp = remote.audit_checkpoint().unwrap();
    // The server records its start before serving: 10 entries.
    assert_eq!(cp.seq, 10);
    assert_eq!(cp.key_id, reg.node_key().key_id());
    let outside = tempfile::tempdir().unwrap();
    let kept = outside.path().join("witness.json");
    std::fs::write(&kept, cp.to_canonical()).unwrap();
    assert_eq!(reg.audit_verify_with(&[&kept]).unwrap().external, [10]);

    // A log that fails verification gets no checkpoint, and the answer
    // does not say why.
    sql(
        home.path(),
        "DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq = 4;",
    );
    let e = remote.audit_checkpoint().unwrap_err().to_string();
    assert!(
        e.contains("HTTP 500") && e.contains("internal error"),
        "{e}"
    );
    assert!(!e.contains("entry 4"), "{e}");
}
