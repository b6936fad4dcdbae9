//! The model side of `tensorlet export`: which artifact can be exported,
//! the signed components it composes, and what an export reports.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tensorlet_registry::{Kind, Registry, VerifiedArtifact};

/// A model's preprocessors in chain order, each with its section
/// (`preprocessor`, `preprocessor.2`…), and its predictor.
pub type Components = (Vec<(String, Vec<u8>)>, Vec<u8>);

/// The model's preprocessor and predictor components, each verified
/// through its pin; refused for an artifact that is not a model.
pub fn components(reg: &Registry, model: &VerifiedArtifact) -> Result<Components> {
    check_kind(&model.reference(), model.kind())?;
    let component = |section: &str| -> Result<Vec<u8>> {
        let pin = model
            .manifest()
            .depends
            .get(section)
            .with_context(|| format!("{} does not pin its {section}", model.reference()))?;
        let dep = reg.verify_pin(pin)?;
        let c = dep
            .component()
            .with_context(|| format!("its {section} {} is not a plugin", pin.reference))?;
        Ok(c.bytes().to_vec())
    };
    let meta = model
        .blob(crate::model::META)
        .with_context(|| format!("{} has no `{}` blob", model.reference(), crate::model::META))?;
    let meta = crate::model::parse_meta(meta)
        .map_err(|e| anyhow::anyhow!("{}: {e}", model.reference()))?;
    let preprocessors = meta
        .plugins
        .preprocessors()
        .into_iter()
        .map(|(section, _)| Ok((section.clone(), component(&section)?)))
        .collect::<Result<_>>()?;
    Ok((preprocessors, component("predictor")?))
}

fn check_kind(reference: &str, kind: Kind) -> Result<()> {
    if kind != Kind::Model {
        bail!(
            "{reference} is a {kind}, not a model; export a trained model (`tensorlet list` shows \
             them)"
        );
    }
    Ok(())
}

/// An export written to a file.
pub struct Exported<'a> {
    /// The model, `ns/name@version`.
    pub model: &'a str,
    /// `sha256:` of its signed manifest.
    pub manifest_digest: &'a str,
    /// Where the component was written.
    pub output: &'a Path,
    /// Its size in bytes.
    pub bytes: usize,
    /// `sha256:` of the component.
    pub digest: &'a str,
    /// The key id that signed it, when signed.
    pub signed_by: Option<&'a str>,
    /// The name it answers to in `/v2/models/{name}/…`.
    pub served_name: &'a str,
}

impl Exported<'_> {
    /// Records the export in the audit log (`model.export`).
    pub fn record(&self, reg: &Registry) -> Result<()> {
        reg.record(
            "model.export",
            self.model,
            json!({
                "format": "wasi-http",
                "manifest_digest": self.manifest_digest,
                "digest": self.digest,
                "signed_by": self.signed_by,
            }),
        )?;
        Ok(())
    }

    /// What was written, and how to serve it.
    pub fn lines(&self) -> [String; 2] {
        let out = self.output.display();
        [
            format!(
                "exported {} (manifest {}) to {out}: {}, {}{}",
                self.model,
                self.manifest_digest,
                crate::human_bytes(self.bytes),
                self.digest,
                match self.signed_by {
                    Some(k) => format!(", signed by key {k}"),
                    None => ", unsigned (give --key to sign it)".into(),
                }
            ),
            format!(
                "serves POST /v2/models/{}/infer under any wasi:http host, e.g. \
                 `tensorlet serve-wasi-http {out}` or `wasmtime serve -S cli {out}`",
                self.served_name
            ),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_model_is_exported() {
        assert!(check_kind("acme/iris@1.0.0", Kind::Model).is_ok());
        assert_eq!(
            check_kind("acme/iris@1.0.0", Kind::Pipeline)
                .unwrap_err()
                .to_string(),
            "acme/iris@1.0.0 is a pipeline, not a model; export a trained model (`tensorlet \
             list` shows them)"
        );
    }

    #[test]
    fn says_what_was_written_and_how_to_serve_it() {
        let e = Exported {
            model: "acme/iris-model@0.1.0",
            manifest_digest: "sha256:aa",
            output: Path::new("out/iris.wasm"),
            bytes: 2048,
            digest: "sha256:bb",
            signed_by: Some("k1"),
            served_name: "iris-model",
        };
        let [first, second] = e.lines();
        assert_eq!(
            first,
            format!(
                "exported acme/iris-model@0.1.0 (manifest sha256:aa) to out/iris.wasm: {}, \
                 sha256:bb, signed by key k1",
                crate::human_bytes(2048)
            )
        );
        assert_eq!(
            second,
            "serves POST /v2/models/iris-model/infer under any wasi:http host, e.g. `tensorlet \
             serve-wasi-http out/iris.wasm` or `wasmtime serve -S cli out/iris.wasm`"
        );
        let unsigned = Exported {
            signed_by: None,
            ..e
        };
        assert!(unsigned.lines()[0].ends_with(", sha256:bb, unsigned (give --key to sign it)"));
    }
}
