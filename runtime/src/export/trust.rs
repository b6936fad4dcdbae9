//! Whether a node serves an export: `tensorlet serve-wasi-http
//! --require-signed` takes only a tensorlet export signed by a key that the
//! node's trust policy lets publish the model's namespace.

use std::path::Path;

use anyhow::{Context, Result, bail};
use tensorlet_registry::TrustEntry;

use super::{ExportError, Inspection};

/// Refuses the export in `file` (as [`super::inspect`] found it) unless it
/// is signed by a key that `trusted` (the trust policy, read only when
/// needed) allows for its model's namespace.
pub fn require_signed(
    file: &Path,
    inspection: &Result<Inspection, ExportError>,
    trusted: impl FnOnce() -> Result<Vec<TrustEntry>>,
) -> Result<()> {
    let file = file.display();
    match inspection {
        Err(e) => bail!("{file} is refused (--require-signed): {e}"),
        Ok(Inspection {
            signed_by: None, ..
        }) => {
            bail!("{file} is not signed and --require-signed is set; export it with `--key <name>`")
        }
        Ok(Inspection {
            signed_by: Some(key),
            meta,
            ..
        }) => trusted()
            .and_then(|t| check_trusted(&t, key.key_id().as_str(), &meta.model))
            .with_context(|| format!("{file} is refused (--require-signed)")),
    }
}

/// What the export in `file` is, in a few words: its model, manifest and signer.
pub fn describe(inspection: &Result<Inspection, ExportError>) -> String {
    match inspection {
        Ok(i) => format!(
            "{} (model manifest {}), {}",
            i.meta.model,
            i.meta.manifest_digest,
            match &i.signed_by {
                Some(k) => format!("signed by key {}", k.key_id()),
                None => "unsigned".into(),
            }
        ),
        Err(_) => "a wasi:http component that is not a tensorlet export".into(),
    }
}

/// Whether `trusted` lets `key_id` publish `model`'s namespace.
fn check_trusted(trusted: &[TrustEntry], key_id: &str, model: &str) -> Result<()> {
    let ns = model.split('/').next().unwrap_or_default();
    let Some(entry) = trusted.iter().find(|t| t.key_id == key_id) else {
        bail!(
            "it is signed by key {key_id}, which this node's trust policy does not list; \
             `tensorlet trust add <public key> --namespace {ns}` trusts it"
        );
    };
    if !entry.namespaces.iter().any(|n| n == "*" || n == ns) {
        bail!(
            "it is signed by key {key_id}, which this node trusts only for {}, not for `{ns}` \
             (the namespace of {model})",
            entry.namespaces.join(", ")
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key_id: &str, namespaces: &[&str]) -> TrustEntry {
        TrustEntry {
            key_id: key_id.into(),
            public_key: "ed25519:00".into(),
            namespaces: namespaces.iter().map(|n| n.to_string()).collect(),
            added: "2026-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn a_key_must_be_trusted_for_the_model_namespace() {
        let policy = [entry("k1", &["acme"]), entry("k2", &["*"])];
        assert!(check_trusted(&policy, "k1", "acme/iris@1.0.0").is_ok());
        assert!(check_trusted(&policy, "k2", "other/iris@1.0.0").is_ok());
        assert_eq!(
            check_trusted(&policy, "k1", "other/iris@1.0.0")
                .unwrap_err()
                .to_string(),
            "it is signed by key k1, which this node trusts only for acme, not for `other` (the \
             namespace of other/iris@1.0.0)"
        );
        assert_eq!(
            check_trusted(&policy, "k3", "acme/iris@1.0.0")
                .unwrap_err()
                .to_string(),
            "it is signed by key k3, which this node's trust policy does not list; `tensorlet \
             trust add <public key> --namespace acme` trusts it"
        );
    }

    #[test]
    fn a_component_that_is_no_export_is_refused_and_described() {
        let not_export = Err(ExportError::Inspect("it has no section".into()));
        let e = require_signed(Path::new("x.wasm"), &not_export, || {
            panic!("the policy is not read for what is refused anyway")
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "x.wasm is refused (--require-signed): it has no section"
        );
        assert_eq!(
            describe(&not_export),
            "a wasi:http component that is not a tensorlet export"
        );
    }

    fn export(signed_by: Option<tensorlet_registry::PublicKey>) -> Result<Inspection, ExportError> {
        Ok(Inspection {
            meta: super::super::ExportMeta {
                format: super::super::FORMAT.into(),
                model: "acme/iris@1.0.0".into(),
                served_name: "iris".into(),
                version: "1.0.0".into(),
                manifest_digest: "sha256:abc".into(),
                model_key_id: "k0".into(),
                digests: Default::default(),
                tensorlet_version: "0.1.0".into(),
            },
            signed_by,
            digest: "sha256:def".into(),
        })
    }

    #[test]
    fn a_signed_export_is_served_only_under_a_key_trusted_for_it() {
        let unsigned = export(None);
        assert_eq!(
            require_signed(Path::new("x.wasm"), &unsigned, || Ok(Vec::new()))
                .unwrap_err()
                .to_string(),
            "x.wasm is not signed and --require-signed is set; export it with `--key <name>`"
        );
        assert_eq!(
            describe(&unsigned),
            "acme/iris@1.0.0 (model manifest sha256:abc), unsigned"
        );
        let key = tensorlet_registry::KeyPair::generate("k").unwrap().public();
        let id = key.key_id();
        let signed = export(Some(key));
        assert_eq!(
            describe(&signed),
            format!("acme/iris@1.0.0 (model manifest sha256:abc), signed by key {id}")
        );
        let policy = || Ok(vec![entry(id.as_str(), &["acme"])]);
        assert!(require_signed(Path::new("x.wasm"), &signed, policy).is_ok());
        let e = require_signed(Path::new("x.wasm"), &signed, || Ok(Vec::new())).unwrap_err();
        assert_eq!(e.to_string(), "x.wasm is refused (--require-signed)");
    }
}
