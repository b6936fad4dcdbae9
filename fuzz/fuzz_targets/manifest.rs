//! Signed manifests as they arrive from a publisher or a remote registry:
//! parsing, validation and signature checks never panic; what parses comes
//! back the same from its canonical bytes; a fresh signature over any
//! manifest verifies, and stops verifying once the manifest is altered.
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use tensorlet_registry::{KeyPair, SignedManifest};

fn key() -> &'static KeyPair {
    static KEY: OnceLock<KeyPair> = OnceLock::new();
    KEY.get_or_init(|| KeyPair::generate("fuzz").expect("a key"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(signed) = SignedManifest::parse(data) else {
        return;
    };
    let again = SignedManifest::parse(&signed.to_canonical()).expect("canonical bytes parse");
    assert_eq!(again, signed, "the canonical form reads back differently");
    let _ = signed.manifest.validate();
    if let Ok(signer) = signed.signer() {
        assert_eq!(Some(signer.key_id()), signed.signature.map(|s| s.key_id));
    }
    let fresh = signed.manifest.clone().sign(key());
    let signer = fresh.signer().expect("a fresh signature verifies");
    assert_eq!(signer.key_id(), key().key_id());
    let mut altered = fresh.clone();
    altered.manifest.version.push('1');
    assert!(
        altered.signer().is_err(),
        "an altered manifest still verifies"
    );
});
