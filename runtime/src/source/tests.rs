//! Unit tests of [`super::Sources`].

use std::sync::Mutex;

use super::*;

static BUNDLED: &[(&str, &[u8])] = &[("alpha", b"a-bytes"), ("beta", b"b-bytes")];

fn collecting() -> (Sources, Arc<Mutex<Vec<Notice>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let sources = Sources::default()
        .with_bundled(BUNDLED)
        .with_notify(Arc::new(move |n| s.lock().unwrap().push(n.clone())));
    (sources, seen)
}

#[test]
fn bundled_and_path_stages_are_read_and_unknown_ones_named() {
    let (s, _) = collecting();
    let (name, bytes) = s
        .local_plugin(&PluginSource::Bundled("beta".into()))
        .unwrap();
    assert_eq!((name.as_str(), bytes.as_slice()), ("beta", &b"b-bytes"[..]));
    let e = s
        .local_plugin(&PluginSource::Bundled("gamma".into()))
        .unwrap_err()
        .to_string();
    assert!(e.contains("bundled plugins are: alpha, beta"), "{e}");

    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("scaler.wasm");
    std::fs::write(&file, b"wasm").unwrap();
    let (name, bytes) = s.local_plugin(&PluginSource::Path(file)).unwrap();
    assert_eq!((name.as_str(), bytes.as_slice()), ("scaler", &b"wasm"[..]));
}

#[test]
fn local_stages_need_allow_unsigned_and_are_audited_and_noticed() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::open(home.path()).unwrap();
    let (s, seen) = collecting();
    let stage = PluginSource::Bundled("alpha".into());
    let e = s.stage(&reg, &stage).unwrap_err().to_string();
    assert!(e.contains("pass --allow-unsigned"), "{e}");
    assert!(seen.lock().unwrap().is_empty());

    let s = s.allow_unsigned(true);
    let c = s.stage(&reg, &stage).unwrap();
    assert_eq!(c.bytes(), b"a-bytes");
    assert_eq!(
        *seen.lock().unwrap(),
        vec![Notice::Unsigned {
            name: "alpha".into(),
            digest: crate::digest(b"a-bytes"),
        }]
    );
    let log = reg.audit_log().unwrap();
    assert!(
        log.iter()
            .any(|e| e.action == "load.unsigned" && e.subject == "alpha"),
        "the unsigned run is audited: {log:?}"
    );
}

#[test]
fn a_reference_that_is_not_a_model_directory_is_explained() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::open(home.path()).unwrap();
    let rt = Runtime::new(crate::RuntimeConfig::default()).unwrap();
    let e = Sources::default()
        .model(&rt, &reg, "no such dir")
        .err()
        .unwrap()
        .to_string();
    assert!(
        e.contains("neither a model directory nor a registry reference"),
        "{e}"
    );
}

#[test]
fn notices_read_as_warnings() {
    let unreachable = Notice::Unreachable {
        url: "https://r:7070".into(),
        message: "connection refused".into(),
    };
    assert_eq!(
        unreachable.to_string(),
        "warning: registry https://r:7070 is unreachable (connection refused); using the \
         local cache"
    );
    let yanked = Notice::Yanked {
        reference: "acme/a@1.0.0".into(),
    };
    assert_eq!(
        yanked.to_string(),
        "warning: acme/a@1.0.0 is yanked; it runs because it was named exactly"
    );
    let unsigned = Notice::Unsigned {
        name: "alpha".into(),
        digest: "sha256:ab".into(),
    };
    assert!(unsigned.to_string().starts_with(
        "WARNING: --allow-unsigned: running `alpha` (sha256:ab) WITHOUT signature verification;"
    ));
    let damaged = Notice::DamagedCheckpoints {
        run: "r1".into(),
        epoch: 4,
    };
    assert_eq!(
        damaged.to_string(),
        "warning: run r1: the checkpoints after epoch 4 are damaged; continuing after epoch 4"
    );
}
