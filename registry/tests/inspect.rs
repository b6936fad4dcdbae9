//! Looking without loading: `Registry::inspect` refuses what `verify` refuses
//! but writes nothing to the audit log, and `Registry::check_signature`
//! judges a manifest held elsewhere by the local trust policy.

use tensorlet_registry::{Kind, Manifest, Reference, Registry, RegistryError, digest};

fn r(s: &str) -> Reference {
    s.parse().unwrap()
}

#[test]
fn inspect_refuses_a_tampered_blob_without_an_audit_entry() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::open(home.path()).unwrap();
    let key = reg.keygen("alice").unwrap();
    reg.trust_add(&key.public(), &["acme".into()]).unwrap();
    let bytes = b"component bytes".to_vec();
    let mut m = Manifest::new("acme/scale", "1.0.0", Kind::Preprocessor).unwrap();
    m.blobs.insert("component".into(), digest(&bytes));
    reg.publish(&m.sign(&key), std::slice::from_ref(&bytes))
        .unwrap();

    let ok = reg.inspect(&r("acme/scale@1.0.0")).unwrap();
    assert_eq!(ok.key_id(), key.key_id());
    assert_eq!(ok.blob("component"), Some(bytes.as_slice()));

    let blob = home
        .path()
        .join("blobs/sha256")
        .join(digest(&bytes).trim_start_matches("sha256:"));
    std::fs::write(&blob, b"something else").unwrap();
    let before = reg.audit_log().unwrap().len();
    let e = reg.inspect(&r("acme/scale@1.0.0")).unwrap_err();
    assert!(
        matches!(&e, RegistryError::Refused { reason, .. } if reason.contains("blob `component` was modified")),
        "{e}"
    );
    assert_eq!(
        reg.audit_log().unwrap().len(),
        before,
        "inspect wrote to the log"
    );
    // What loads an artifact still records the refusal.
    reg.verify(&r("acme/scale@1.0.0")).unwrap_err();
    let log = reg.audit_log().unwrap();
    assert_eq!(log.len(), before + 1);
    assert_eq!(log.last().unwrap().action, "verify.failed");
}

#[test]
fn check_signature_judges_a_foreign_manifest_by_the_local_policy() {
    let home = tempfile::tempdir().unwrap();
    let reg = Registry::open(home.path()).unwrap();
    let alice = reg.keygen("alice").unwrap();
    let mallory = reg.keygen("mallory").unwrap();
    reg.trust_add(&alice.public(), &["acme".into()]).unwrap();
    let m = Manifest::new("acme/scale", "1.0.0", Kind::Preprocessor).unwrap();
    assert_eq!(
        reg.check_signature(&m.clone().sign(&alice)).unwrap(),
        alice.key_id()
    );
    let e = reg.check_signature(&m.clone().sign(&mallory)).unwrap_err();
    assert!(
        e.is_refusal() && e.to_string().contains("not in this trust policy"),
        "{e}"
    );
    let mut forged = m.clone().sign(&alice);
    forged.manifest.version = "1.0.1".into();
    let e = reg.check_signature(&forged).unwrap_err();
    assert!(e.to_string().contains("does not verify"), "{e}");
    let before = reg.audit_log().unwrap().len();
    let _ = reg.check_signature(&forged);
    assert_eq!(reg.audit_log().unwrap().len(), before);
}
