//! Signed artifacts through the `tensorlet` binary: keys, trust, publish and
//! its refusals, train/predict from the registry, yank, aliases, the audit
//! log under SQL tampering, and a remote registry over a loopback socket.

mod common;

use common::*;

#[test]
fn keygen_writes_a_private_key_with_mode_0600_and_exports_the_public_key() {
    let home = tempfile::tempdir().unwrap();
    let (id, public) = keygen(home.path(), "alice");
    assert_eq!(id.len(), 16);
    assert!(
        public.starts_with("ed25519:") && public.len() == 8 + 64,
        "{public}"
    );
    let key_file = home.path().join("keys/alice.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let export = ok(&tensorlet(home.path(), &["key", "export", "alice"]));
    assert_eq!(export.lines().last().unwrap(), public);
    let err = fails(&tensorlet(home.path(), &["keygen", "alice"]));
    assert!(err.contains("a key named `alice` exists already"), "{err}");
    let err = fails(&tensorlet(home.path(), &["key", "export", "bob"]));
    assert!(err.contains("tensorlet keygen bob"), "{err}");

    ok(&tensorlet(
        home.path(),
        &[
            "trust",
            "add",
            &public,
            "--namespace",
            "acme",
            "--namespace",
            "beta",
        ],
    ));
    let list: serde_json::Value =
        serde_json::from_str(&ok(&tensorlet(home.path(), &["trust", "list", "--json"]))).unwrap();
    assert_eq!(list[0]["key_id"], id.as_str());
    assert_eq!(list[0]["namespaces"], serde_json::json!(["acme", "beta"]));
    ok(&tensorlet(home.path(), &["trust", "remove", &id]));
    let list = ok(&tensorlet(home.path(), &["trust", "list", "--json"]));
    assert_eq!(list.trim(), "[]");
    let err = fails(&tensorlet(
        home.path(),
        &["trust", "add", "ed25519:zz", "--namespace", "acme"],
    ));
    assert!(err.contains("is not a public key"), "{err}");
}

#[test]
fn publish_refuses_untrusted_keys_foreign_namespaces_wrong_kinds_and_republishing() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let (alice_id, public) = keygen(h, "alice");
    // Not trusted yet.
    let err = fails(&publish_plugin(
        h,
        "standardize",
        "acme/standardize",
        "preprocessor",
        "alice",
    ));
    assert!(
        err.contains(&format!(
            "refusing acme/standardize@1.0.0 (key {alice_id}): the key is not in this trust policy"
        )),
        "{err}"
    );
    ok(&tensorlet(
        h,
        &["trust", "add", &public, "--namespace", "acme"],
    ));
    // Outside its namespace.
    let err = fails(&publish_plugin(
        h,
        "standardize",
        "globex/standardize",
        "preprocessor",
        "alice",
    ));
    assert!(
        err.contains(&format!(
            "refusing globex/standardize@1.0.0 (key {alice_id}): the key is trusted only for namespace(s) acme, not for `globex`"
        )),
        "{err}"
    );
    // A preprocessor is not a trainer.
    let err = fails(&publish_plugin(
        h,
        "standardize",
        "acme/standardize",
        "trainer",
        "alice",
    ));
    assert!(
        err.contains("it is published as a trainer but does not export tensorlet:ml/train"),
        "{err}"
    );
    // Garbage is not a component.
    let junk = h.join("junk.wasm");
    std::fs::write(&junk, b"\0asm\x01\0\0\0junk").unwrap();
    let err = fails(&tensorlet(
        h,
        &[
            "publish",
            s(&junk),
            "--name",
            "acme/junk",
            "--version",
            "1.0.0",
            "--kind",
            "predictor",
            "--key",
            "alice",
        ],
    ));
    assert!(err.contains("not a valid WebAssembly component"), "{err}");

    let out = ok(&publish_plugin(
        h,
        "standardize",
        "acme/standardize",
        "preprocessor",
        "alice",
    ));
    assert!(
        out.contains("published acme/standardize@1.0.0 (preprocessor) sha256:"),
        "{out}"
    );
    let err = fails(&publish_plugin(
        h,
        "standardize",
        "acme/standardize",
        "preprocessor",
        "alice",
    ));
    assert!(
        err.contains("acme/standardize@1.0.0 is already published"),
        "{err}"
    );

    let list: serde_json::Value =
        serde_json::from_str(&ok(&tensorlet(h, &["list", "--json"]))).unwrap();
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["kind"], "preprocessor");
    let show: serde_json::Value =
        serde_json::from_str(&ok(&tensorlet(h, &["show", "acme/standardize", "--json"]))).unwrap();
    assert_eq!(show["manifest"]["signature"]["key_id"], alice_id.as_str());
    let exports = show["manifest"]["manifest"]["config"]["exports"].to_string();
    assert!(exports.contains("tensorlet:ml/preprocess@"), "{exports}");

    // A flipped byte in the stored component is refused with artifact, key and reason.
    let out = ok(&tensorlet(h, &["verify", "acme/standardize@1.0.0"]));
    assert!(
        out.starts_with("OK acme/standardize@1.0.0 (preprocessor)"),
        "{out}"
    );
    let blob = show["manifest"]["manifest"]["blobs"]["component"]
        .as_str()
        .unwrap();
    let path = h
        .join("blobs/sha256")
        .join(blob.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[100] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let err = fails(&tensorlet(h, &["verify", "acme/standardize@1.0.0"]));
    assert!(
        err.contains(&format!(
            "refusing acme/standardize@1.0.0 (key {alice_id}): blob `component` was modified"
        )),
        "{err}"
    );
}

#[test]
fn train_and_predict_from_the_registry_with_yank_and_aliases() {
    let (home, alice_id) = published_home();
    let h = home.path();
    let iris = data("iris.csv");
    let out = ok(&tensorlet(
        h,
        &["train", "acme/iris", "--data", s(&iris), "--key", "alice"],
    ));
    assert!(out.contains("trained iris: validation accuracy"), "{out}");
    assert!(
        out.contains("published acme/iris-model@0.1.0 (sha256:") && out.contains(&alice_id),
        "{out}"
    );
    let out = ok(&tensorlet(
        h,
        &[
            "train",
            "acme/iris@1.0.0",
            "--data",
            s(&iris),
            "--key",
            "alice",
            "--seed",
            "3",
        ],
    ));
    assert!(out.contains("published acme/iris-model@0.1.1"), "{out}");

    let show: serde_json::Value = serde_json::from_str(&ok(&tensorlet(
        h,
        &["show", "acme/iris-model@0.1.0", "--json"],
    )))
    .unwrap();
    let m = &show["manifest"]["manifest"];
    assert_eq!(m["kind"], "model");
    assert_eq!(m["depends"]["pipeline"]["ref"], "acme/iris@1.0.0");
    assert_eq!(m["depends"]["trainer"]["ref"], "acme/softmax@1.0.0");
    assert_eq!(m["lineage"]["pipeline"], "acme/iris@1.0.0");
    assert!(
        m["lineage"]["dataset"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert!(
        m["blobs"]["params.safetensors"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    let out = ok(&tensorlet(h, &["verify", "acme/iris-model@0.1.0"]));
    assert!(
        out.contains("3 blob(s) and 7 pinned artifact(s) verified"),
        "{out}"
    );

    let predict = |model: &str| tensorlet(h, &["predict", model, "--input", s(&iris)]);
    let labels = ok(&predict("acme/iris-model"));
    let lines: Vec<&str> = labels.lines().collect();
    assert_eq!(lines.len(), 150);
    assert_eq!(lines[0], "setosa");
    assert_eq!(lines[149], "virginica");

    // Yanked: not the latest any more, but still usable by exact version.
    ok(&tensorlet(h, &["yank", "acme/iris-model@0.1.1"]));
    ok(&tensorlet(
        h,
        &["alias", "set", "acme/iris-model", "production", "0.1.1"],
    ));
    ok(&tensorlet(h, &["yank", "acme/iris-model@0.1.0"]));
    let err = fails(&predict("acme/iris-model"));
    assert!(
        err.contains("every version of acme/iris-model is yanked"),
        "{err}"
    );
    let exact = predict("acme/iris-model@0.1.0");
    ok(&exact);
    assert!(String::from_utf8_lossy(&exact.stderr).contains("acme/iris-model@0.1.0 is yanked"));
    ok(&predict("acme/iris-model@production"));
    let out = ok(&tensorlet(
        h,
        &["alias", "set", "acme/iris-model", "production", "0.1.0"],
    ));
    assert!(
        out.contains("moved acme/iris-model@production from 0.1.1 to 0.1.0"),
        "{out}"
    );

    // A flipped byte in the weights stops prediction.
    let show: serde_json::Value = serde_json::from_str(&ok(&tensorlet(
        h,
        &["show", "acme/iris-model@0.1.0", "--json"],
    )))
    .unwrap();
    let params = show["manifest"]["manifest"]["blobs"]["params.safetensors"]
        .as_str()
        .unwrap();
    let path = h
        .join("blobs/sha256")
        .join(params.trim_start_matches("sha256:"));
    let mut bytes = std::fs::read(&path).unwrap();
    let n = bytes.len() - 2;
    bytes[n] ^= 1;
    std::fs::write(&path, bytes).unwrap();
    let err = fails(&predict("acme/iris-model@production"));
    assert!(
        err.contains(&format!(
            "refusing acme/iris-model@0.1.0 (key {alice_id}): blob `params.safetensors` was modified"
        )),
        "{err}"
    );

    let log: serde_json::Value =
        serde_json::from_str(&ok(&tensorlet(h, &["audit", "log", "--json"]))).unwrap();
    let actions: Vec<&str> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    for a in [
        "key.create",
        "trust.add",
        "publish",
        "train.run",
        "model.load",
        "yank",
        "alias.set",
        "verify.failed",
    ] {
        assert!(actions.contains(&a), "{a} missing from {actions:?}");
    }
    let out = ok(&tensorlet(h, &["audit", "verify"]));
    assert!(
        out.starts_with(&format!("OK {} entries", actions.len())),
        "{out}"
    );
}

#[test]
fn local_plugins_need_allow_unsigned() {
    let home = tempfile::tempdir().unwrap();
    let err = fails(&tensorlet(
        home.path(),
        &[
            "train",
            s(&pipeline("iris")),
            "--data",
            s(&data("iris.csv")),
            "--out",
            s(&home.path().join("m")),
        ],
    ));
    assert!(err.contains("plugin `standardize` cannot be loaded: it is a local `path`/`bundled` plugin, not a signed registry artifact"), "{err}");
    assert!(err.contains("--allow-unsigned"), "{err}");
    let out = tensorlet(
        home.path(),
        &[
            "train",
            s(&pipeline("iris")),
            "--data",
            s(&data("iris.csv")),
            "--out",
            s(&home.path().join("m")),
            "--allow-unsigned",
        ],
    );
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stderr).contains("WARNING: --allow-unsigned"));
    // A model directory of unsigned components does not run without the flag.
    let err = fails(&tensorlet(
        home.path(),
        &[
            "predict",
            s(&home.path().join("m")),
            "--input",
            s(&data("iris.csv")),
        ],
    ));
    assert!(
        err.contains("is not a verified artifact in the registry"),
        "{err}"
    );
}

#[test]
fn audit_verify_names_the_entry_edited_through_sql() {
    let (home, _) = published_home();
    let h = home.path();
    let out = ok(&tensorlet(h, &["audit", "verify"]));
    // key.create, trust.add, 2 publishes, the pipeline publish.
    assert!(out.starts_with("OK 5 entries"), "{out}");
    let c = rusqlite::Connection::open(h.join("registry.db")).unwrap();
    c.execute_batch(
        "DROP TRIGGER audit_no_update; UPDATE audit SET subject = 'acme/evil@1.0.0' WHERE seq = 3;",
    )
    .unwrap();
    let err = fails(&tensorlet(h, &["audit", "verify"]));
    assert!(
        err.contains("audit log: entry 3 (publish acme/evil@1.0.0) was edited"),
        "{err}"
    );
    c.execute_batch("UPDATE audit SET subject = 'acme/standardize@1.0.0' WHERE seq = 3;")
        .unwrap();
    ok(&tensorlet(h, &["audit", "verify"]));
    c.execute_batch("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE seq > 3;")
        .unwrap();
    let err = fails(&tensorlet(h, &["audit", "verify"]));
    assert!(
        err.contains(
            "the log was truncated after entry 3: the signed checkpoint records 5 entries"
        ),
        "{err}"
    );
}

#[test]
fn an_emptied_audit_log_fails_verification_and_an_exported_checkpoint_is_checked() {
    let (home, _) = published_home();
    let h = home.path();
    let outside = tempfile::tempdir().unwrap();
    let kept = outside.path().join("kept.json");
    let out = ok(&tensorlet(h, &["audit", "checkpoint", "--out", s(&kept)]));
    assert!(
        out.starts_with("wrote the checkpoint at entry 5 (key "),
        "{out}"
    );
    let printed: serde_json::Value =
        serde_json::from_str(&ok(&tensorlet(h, &["audit", "checkpoint"]))).unwrap();
    assert_eq!(printed["seq"], 5);
    let out = ok(&tensorlet(
        h,
        &["audit", "verify", "--checkpoint", s(&kept)],
    ));
    assert!(out.starts_with("OK 5 entries"), "{out}");
    assert!(
        out.contains(&format!(
            "OK the log holds the checkpoint {} (entry 5)",
            s(&kept)
        )),
        "{out}"
    );

    // Every row deleted and the checkpoint file removed: no longer "OK 0
    // entries", and the next action does not start a chain that verifies.
    let c = rusqlite::Connection::open(h.join("registry.db")).unwrap();
    c.execute_batch("DROP TRIGGER audit_no_delete; DELETE FROM audit;")
        .unwrap();
    std::fs::remove_file(h.join("audit.checkpoint")).unwrap();
    let err = fails(&tensorlet(h, &["audit", "verify"]));
    assert!(
        err.contains(
            "audit log: the log is empty, but the index holds 3 artifacts and 1 trust entry; \
             the origin record names the log's first entry: entries were deleted"
        ),
        "{err}"
    );
    keygen(h, "bob");
    let err = fails(&tensorlet(h, &["audit", "verify"]));
    assert!(
        err.contains("audit log: the log was restarted from genesis: its entry 1 (key.create bob)"),
        "{err}"
    );
    // The log is never exported once it fails.
    let err = fails(&tensorlet(h, &["audit", "checkpoint"]));
    assert!(err.contains("restarted from genesis"), "{err}");
}

#[test]
fn alias_set_refuses_a_version_that_no_longer_verifies() {
    let (home, alice_id) = published_home();
    let h = home.path();
    ok(&tensorlet(h, &["trust", "remove", &alice_id]));
    let err = fails(&tensorlet(
        h,
        &["alias", "set", "acme/standardize", "production", "1.0.0"],
    ));
    assert!(
        err.contains("cannot point acme/standardize@production at 1.0.0"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "refusing acme/standardize@1.0.0 (key {alice_id}): the key is not in this trust policy"
        )),
        "{err}"
    );
    let list = ok(&tensorlet(h, &["list", "--json"]));
    assert!(!list.contains("production"), "{list}");
    let log = ok(&tensorlet(h, &["audit", "log"]));
    assert!(log.contains("alias.refused"), "{log}");
    assert!(!log.contains("alias.set"), "{log}");
    ok(&tensorlet(h, &["audit", "verify"]));
}

#[test]
fn a_remote_registry_serves_signed_artifacts_and_clients_verify_them() {
    // The server's home: alice trusted for acme, plugins and pipeline published.
    let (server_home, alice_id) = published_home();
    let server = RegistryServer::start(server_home.path(), &["--max-body-bytes", "2000000"]);
    let url = server.url.clone();
    let alice_pub = ok(&tensorlet(server_home.path(), &["key", "export", "alice"]))
        .lines()
        .last()
        .unwrap()
        .to_string();

    // A client that trusts alice trains from the remote and publishes the model there.
    let client = tempfile::tempdir().unwrap();
    let c = client.path();
    std::fs::create_dir_all(c.join("keys")).unwrap();
    for f in ["alice.key", "alice.pub"] {
        std::fs::copy(
            server_home.path().join("keys").join(f),
            c.join("keys").join(f),
        )
        .unwrap();
    }
    ok(&tensorlet(
        c,
        &["trust", "add", &alice_pub, "--namespace", "acme"],
    ));
    let remote = [("TENSORLET_REGISTRY", url.as_str())];
    let list = ok(&tensorlet_env(c, &["list"], &remote));
    assert!(list.contains("acme/iris@1.0.0"), "{list}");
    let out = ok(&tensorlet_env(
        c,
        &[
            "train",
            "acme/iris",
            "--data",
            s(&data("iris.csv")),
            "--key",
            "alice",
        ],
        &remote,
    ));
    assert!(out.contains("published acme/iris-model@0.1.0"), "{out}");
    let served = ok(&tensorlet(server_home.path(), &["list", "--json"]));
    assert!(served.contains("acme/iris-model"), "{served}");

    // A witness keeps the server's audit checkpoint; the server's log is
    // later checked against it.
    let witness = c.join("server-audit.json");
    let out = ok(&tensorlet(
        c,
        &[
            "audit",
            "checkpoint",
            "--registry",
            &url,
            "--out",
            s(&witness),
        ],
    ));
    assert!(out.starts_with("wrote the checkpoint at entry "), "{out}");
    let out = ok(&tensorlet(
        server_home.path(),
        &["audit", "verify", "--checkpoint", s(&witness)],
    ));
    assert!(out.contains("OK the log holds the checkpoint"), "{out}");
    let err = fails(&tensorlet(
        c,
        &["audit", "verify", "--checkpoint", s(&witness)],
    ));
    assert!(err.contains("it comes from another registry"), "{err}");

    // Another edge device pulls the model, verifying everything locally.
    let edge = tempfile::tempdir().unwrap();
    let e = edge.path();
    ok(&tensorlet(
        e,
        &["trust", "add", &alice_pub, "--namespace", "acme"],
    ));
    let predict = |env: &[(&str, &str)]| {
        tensorlet_env(
            e,
            &[
                "predict",
                "acme/iris-model",
                "--input",
                s(&data("iris.csv")),
            ],
            env,
        )
    };
    let labels = ok(&predict(&remote));
    assert_eq!(labels.lines().count(), 150);
    let log = ok(&tensorlet(e, &["audit", "log", "--json"]));
    assert!(log.contains("\"pull\""), "{log}");

    // A device that does not trust alice refuses what the server offers.
    let stranger = tempfile::tempdir().unwrap();
    let err = fails(&tensorlet_env(
        stranger.path(),
        &["verify", "acme/iris-model"],
        &remote,
    ));
    assert!(
        err.contains(&format!(
            "(key {alice_id}): the key is not in this trust policy"
        )),
        "{err}"
    );

    // The server refuses publishes from keys it does not trust, and big bodies.
    let (_, mallory_pub) = keygen(c, "mallory");
    ok(&tensorlet(
        c,
        &["trust", "add", &mallory_pub, "--namespace", "acme"],
    ));
    let err = fails(&tensorlet_env(
        c,
        &[
            "publish",
            s(&plugin_path("mlp")),
            "--name",
            "acme/mlp",
            "--version",
            "1.0.0",
            "--kind",
            "trainer",
            "--key",
            "mallory",
        ],
        &remote,
    ));
    assert!(
        err.contains("403") && err.contains("not in this trust policy"),
        "{err}"
    );
    let big = c.join("big.wasm");
    let mut bytes = std::fs::read(plugin_path("mlp")).unwrap();
    {
        // A valid component padded with a custom section past the limit.
        let pad = 2_100_000usize;
        bytes.push(0);
        let mut len = pad as u32;
        let mut leb = Vec::new();
        loop {
            let b = (len & 0x7f) as u8;
            len >>= 7;
            if len == 0 {
                leb.push(b);
                break;
            }
            leb.push(b | 0x80);
        }
        bytes.extend(leb);
        bytes.push(1);
        bytes.push(b'x');
        bytes.extend(std::iter::repeat_n(0u8, pad - 2));
    }
    std::fs::write(&big, &bytes).unwrap();
    let err = fails(&tensorlet_env(
        c,
        &[
            "publish",
            s(&big),
            "--name",
            "acme/big",
            "--version",
            "1.0.0",
            "--kind",
            "trainer",
            "--key",
            "alice",
        ],
        &remote,
    ));
    assert!(err.contains("413"), "{err}");

    // Offline: the edge device keeps working from its cache.
    drop(server);
    let offline = predict(&remote);
    assert_eq!(ok(&offline).lines().count(), 150);
    assert!(String::from_utf8_lossy(&offline.stderr).contains("unreachable"));
}
