//! OCI image manifests and the annotations a pull reads (the tensorlet
//! manifest, its signature, the dependencies' digests): every step answers
//! a value or an error naming what is malformed, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tensorlet_registry::oci::{Carried, ImageManifest};

fuzz_target!(|data: &[u8]| {
    let what = "oci://registry.test/acme/scale:1.0.0";
    let Ok(oci) = ImageManifest::parse(what, data) else {
        return;
    };
    assert_eq!(oci.schema_version, 2);
    let _ = oci.depends(what);
    match oci.carried_manifest(what) {
        Ok(Carried::Annotation(m)) => {
            if let Ok(signed) = oci.signed(what, m.as_bytes()) {
                let _ = signed.manifest.validate();
                let _ = signed.signer();
            }
        }
        Ok(Carried::Layer(digest)) => {
            assert!(oci.layers.iter().any(|l| l.digest == digest));
            let _ = tensorlet_registry::check_digest(digest);
        }
        Err(e) => assert!(e.to_string().contains("no tensorlet manifest")),
    }
});
