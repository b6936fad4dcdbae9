//! Where a run's model goes: a signed, published artifact and/or a model
//! directory. Everything about it that can be checked before training is
//! checked before training, so that a run that could not keep its model
//! fails before the first epoch.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tensorlet_registry::{
    KeyPair, Reference, Registry, RegistryError, RunDetails, Selector, VerifiedArtifact,
    check_name, check_version,
};

use crate::pipeline::{Pipeline, PluginSource};
use crate::source::Sources;

/// Where a trained model is published.
pub struct PublishAs {
    /// The signing key.
    pub key: KeyPair,
    /// Its name (recorded so that a resumed run publishes the same way).
    pub key_name: String,
    /// `ns/name`.
    pub name: String,
    /// Semantic version; `None` takes the next patch version when publishing.
    pub version: Option<String>,
}

/// What was asked of a run's model: each part unset leaves the default (or,
/// for a resumed run, what the run recorded).
#[derive(Clone, Debug, Default)]
pub struct PublishRequest {
    /// The name of the signing key; without one nothing is published.
    pub key: Option<String>,
    /// The model's `ns/name`; default `<namespace>/<pipeline name>-model`.
    pub name: Option<String>,
    /// Its version; default the next patch version.
    pub version: Option<String>,
    /// A directory to save the model in.
    pub out: Option<PathBuf>,
}

impl PublishRequest {
    /// Fills what is unset from a run's record (its `publish` and `out`).
    pub fn or_recorded(self, record: &RunDetails) -> Self {
        let p = record.publish.as_ref();
        PublishRequest {
            key: self.key.or_else(|| p.map(|p| p.key.clone())),
            name: self.name.or_else(|| p.map(|p| p.name.clone())),
            version: self.version.or_else(|| p.and_then(|p| p.version.clone())),
            out: self.out.or_else(|| record.out.as_ref().map(PathBuf::from)),
        }
    }

    /// Checks the request before training: the output directory, the key,
    /// the model's name and version, that the version is free, that the key
    /// may publish in the namespace, and that every stage is a signed
    /// registry artifact. `None`: the model is only saved to `out`.
    pub fn check(
        &self,
        reg: &Registry,
        sources: &Sources,
        pipeline: &Pipeline,
        artifact: Option<&VerifiedArtifact>,
    ) -> Result<Option<PublishAs>> {
        if let Some(out) = &self.out
            && out.exists()
            && !out.is_dir()
        {
            bail!(
                "--out {} is a file, not a directory; the model is saved as a directory",
                out.display()
            );
        }
        let Some(key) = self.key.clone() else {
            if self.out.is_none() {
                bail!(
                    "nowhere to put the model: pass --key <name> to sign it and publish it to \
                     the registry, and/or --out <dir> to save it as a directory"
                );
            }
            return Ok(None);
        };
        let name = match self.name.clone() {
            Some(n) => n,
            None => default_model_name(pipeline, artifact)?,
        };
        let version = self.version.clone();
        let key_pair = reg.key(&key)?;
        let target = format!("{name}@{}", version.as_deref().unwrap_or("<next version>"));
        check_publishable(reg, sources, pipeline, &key_pair, &name, version.as_deref())
            .with_context(|| {
                format!(
                    "cannot publish the model as {target} with key `{key}`, so training did not \
                     start"
                )
            })?;
        Ok(Some(PublishAs {
            key: key_pair,
            key_name: key,
            name,
            version,
        }))
    }
}

/// `<namespace>/<pipeline name>-model`, the namespace being the pipeline
/// artifact's or the pipeline file's.
pub fn default_model_name(
    pipeline: &Pipeline,
    artifact: Option<&VerifiedArtifact>,
) -> Result<String> {
    let ns = match artifact {
        Some(a) => a.manifest().namespace().to_string(),
        None => match &pipeline.pipeline.namespace {
            Some(ns) => ns.clone(),
            None => bail!(
                "the pipeline has no namespace to publish the model under; pass --model ns/name \
                 or set `namespace` in [pipeline]"
            ),
        },
    };
    Ok(format!("{ns}/{}-model", pipeline.pipeline.name))
}

/// What publishing `name@version` signed by `key` will check, checked before
/// training: the registry's own checks (name, version, trust, a free version)
/// for the local registry; for a remote one, which applies its own trust
/// policy, the name, the version and that the version is free there. A model
/// pins its plugins, so every stage must be a signed registry artifact.
fn check_publishable(
    reg: &Registry,
    sources: &Sources,
    pipeline: &Pipeline,
    key: &KeyPair,
    name: &str,
    version: Option<&str>,
) -> Result<()> {
    for (section, stage) in pipeline.stages() {
        if !matches!(stage.source(), PluginSource::Registry(_)) {
            bail!(
                "its {section} is a local `path`/`bundled` plugin, which a published model cannot \
                 pin; publish the plugins and name them with `ref`, or save the model with --out \
                 only"
            );
        }
    }
    let Some(remote) = sources.remote() else {
        reg.check_publish(&key.public(), name, version)?;
        return Ok(());
    };
    check_name(name)?;
    let Some(version) = version else {
        return Ok(());
    };
    let exact = Reference {
        name: name.to_string(),
        selector: Selector::Version(check_version(version)?),
    };
    match remote.resolve(&exact) {
        Ok((summary, _)) => Err(RegistryError::AlreadyExists {
            artifact: summary.reference(),
            digest: summary.digest,
        }
        .into()),
        Err(RegistryError::NotFound(_)) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn pipeline(namespace: Option<&str>, stage: &str) -> Pipeline {
        let ns = namespace.map_or(String::new(), |n| format!("namespace = \"{n}\"\n"));
        let text = format!(
            "[pipeline]\nname = \"iris\"\n{ns}[preprocessor]\n{stage}\n[model]\nref = \
             \"acme/mlp@1.0.0\"\n"
        );
        Pipeline::parse(&text, Path::new("."), Path::new("iris.toml")).unwrap()
    }

    #[test]
    fn a_resumed_run_publishes_as_it_recorded_unless_told_otherwise() {
        let rec = RunDetails {
            publish: Some(tensorlet_registry::RunPublish {
                key: "ci".into(),
                name: "acme/iris-model".into(),
                version: None,
            }),
            out: Some("/tmp/model".into()),
            ..RunDetails::default()
        };
        let r = PublishRequest {
            version: Some("2.0.0".into()),
            ..PublishRequest::default()
        }
        .or_recorded(&rec);
        assert_eq!(r.key.as_deref(), Some("ci"));
        assert_eq!(r.name.as_deref(), Some("acme/iris-model"));
        assert_eq!(r.version.as_deref(), Some("2.0.0"));
        assert_eq!(r.out, Some(PathBuf::from("/tmp/model")));
    }

    #[test]
    fn the_default_model_name_needs_a_namespace() {
        let p = pipeline(Some("acme"), "ref = \"acme/std@1.0.0\"");
        assert_eq!(default_model_name(&p, None).unwrap(), "acme/iris-model");
        let e = default_model_name(&pipeline(None, "ref = \"acme/std@1.0.0\""), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no namespace to publish the model under"), "{e}");
    }

    #[test]
    fn a_model_with_nowhere_to_go_or_local_plugins_is_refused_before_training() {
        let home = tempfile::tempdir().unwrap();
        let reg = Registry::open(home.path()).unwrap();
        reg.keygen("ci").unwrap();
        let sources = Sources::default();
        let signed = pipeline(Some("acme"), "ref = \"acme/std@1.0.0\"");
        let check = |r: PublishRequest, p: &Pipeline| {
            r.check(&reg, &sources, p, None).map(|t| t.map(|t| t.name))
        };
        let e = check(PublishRequest::default(), &signed)
            .unwrap_err()
            .to_string();
        assert!(e.contains("nowhere to put the model"), "{e}");

        let file = home.path().join("model");
        std::fs::write(&file, "").unwrap();
        let to_file = PublishRequest {
            out: Some(file),
            ..PublishRequest::default()
        };
        let e = check(to_file, &signed).unwrap_err().to_string();
        assert!(e.contains("is a file, not a directory"), "{e}");

        let only_out = PublishRequest {
            out: Some(home.path().join("dir")),
            ..PublishRequest::default()
        };
        assert_eq!(check(only_out, &signed).unwrap(), None);

        let local = pipeline(Some("acme"), "bundled = \"standardize\"");
        let publish = PublishRequest {
            key: Some("ci".into()),
            ..PublishRequest::default()
        };
        let e = format!("{:#}", check(publish, &local).unwrap_err());
        assert!(
            e.contains("cannot publish the model as acme/iris-model@<next version> with key `ci`")
                && e.contains("its preprocessor is a local `path`/`bundled` plugin"),
            "{e}"
        );
    }
}
