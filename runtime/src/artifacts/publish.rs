//! What `tensorlet publish` signs: a plugin component (with the ONNX graphs
//! it ships) or a pipeline file, checked and turned into an unsigned
//! manifest and the blobs it pins.

use std::path::Path;

use anyhow::{Context, Result, bail};
use tensorlet_registry::{Kind, Manifest, Registry};

use crate::source::Sources;
use crate::{Pipeline, Runtime};

/// A file to publish and what was said about it.
pub struct Publication<'a> {
    /// A component (`.wasm`) or a pipeline file (`.toml`).
    pub file: &'a Path,
    /// The artifact name, `namespace/name` (pipelines: default from the file).
    pub name: Option<&'a str>,
    /// The version (pipelines: default from the file).
    pub version: Option<&'a str>,
    /// The kind (pipelines: `pipeline` or none).
    pub kind: Option<Kind>,
    /// `NAME=FILE.onnx` graphs shipped with a component.
    pub graphs: &'a [String],
}

impl Publication<'_> {
    /// Whether the file is a pipeline file rather than a component.
    pub fn is_pipeline(&self) -> bool {
        self.file.extension().is_some_and(|e| e == "toml")
    }

    /// The unsigned manifest and the blobs to publish with it. A pipeline's
    /// stages are fetched first (from the remote of `sources`, asked for only
    /// then) and verified; a component is inspected with `rt`.
    pub fn prepare(
        &self,
        rt: &Runtime,
        reg: &Registry,
        sources: impl FnOnce() -> Result<Sources>,
    ) -> Result<(Manifest, Vec<Vec<u8>>)> {
        self.check()?;
        if self.is_pipeline() {
            let pipeline = Pipeline::load(self.file)?;
            let (name, version) = self.pipeline_name(&pipeline)?;
            // Pull the plugins it names from the remote first, verifying them.
            let sources = sources()?;
            for (_, stage) in pipeline.stages() {
                if let Some(r) = &stage.reference {
                    sources.fetch(reg, r)?;
                }
            }
            let (m, toml) = super::pipeline_manifest(rt, reg, &pipeline, &name, &version)?;
            return Ok((m, vec![toml]));
        }
        let (Some(name), Some(version), Some(kind)) = (self.name, self.version, self.kind) else {
            bail!(
                "publishing a component needs --name ns/name, --version x.y.z and --kind \
                 preprocessor|trainer|predictor"
            );
        };
        let bytes = std::fs::read(self.file)
            .with_context(|| format!("cannot read {}", self.file.display()))?;
        let mut m = super::plugin_manifest(rt, name, version, kind, &bytes)?;
        let mut graphs = Vec::new();
        for g in self.graphs {
            let (gname, file) = parse_graph(g)?;
            let gbytes =
                std::fs::read(file).with_context(|| format!("cannot read graph file {file}"))?;
            graphs.push((gname.to_string(), gbytes));
        }
        let mut blobs = vec![bytes];
        blobs.extend(super::add_graphs(&mut m, &graphs)?);
        Ok((m, blobs))
    }

    /// Refuses what does not fit the file's kind.
    fn check(&self) -> Result<()> {
        if self.is_pipeline() {
            if !self.graphs.is_empty() {
                bail!("--graph belongs to a plugin component (.wasm), not to a pipeline file");
            }
            if self.kind.is_some_and(|k| k != Kind::Pipeline) {
                bail!(
                    "{} is a pipeline file; leave out --kind or pass --kind pipeline",
                    self.file.display()
                );
            }
        }
        Ok(())
    }

    /// A pipeline's artifact name and version: as given, else from its
    /// `[pipeline]` table.
    fn pipeline_name(&self, pipeline: &Pipeline) -> Result<(String, String)> {
        let p = &pipeline.pipeline;
        let name = match (self.name, &p.namespace) {
            (Some(n), _) => n.to_string(),
            (None, Some(ns)) => format!("{ns}/{}", p.name),
            (None, None) => bail!(
                "{}: name the artifact with --name ns/name, or set `namespace` in [pipeline]",
                self.file.display()
            ),
        };
        let Some(version) = self.version.map(str::to_string).or(p.version.clone()) else {
            bail!(
                "{}: give a version with --version 1.0.0, or set `version` in [pipeline]",
                self.file.display()
            );
        };
        Ok((name, version))
    }
}

/// A `--graph NAME=FILE`.
fn parse_graph(g: &str) -> Result<(&str, &str)> {
    g.split_once('=').with_context(|| {
        format!("--graph takes NAME=FILE (for example --graph model=iris.onnx), not `{g}`")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn publication<'a>(file: &'a str, graphs: &'a [String]) -> Publication<'a> {
        Publication {
            file: Path::new(file),
            name: None,
            version: None,
            kind: None,
            graphs,
        }
    }

    #[test]
    fn a_pipeline_file_takes_no_graph_and_no_plugin_kind() {
        let graphs = ["model=iris.onnx".to_string()];
        let e = publication("p.toml", &graphs).check().unwrap_err();
        assert_eq!(
            e.to_string(),
            "--graph belongs to a plugin component (.wasm), not to a pipeline file"
        );
        let trainer = Publication {
            kind: Some(Kind::Trainer),
            ..publication("p.toml", &[])
        };
        assert_eq!(
            trainer.check().unwrap_err().to_string(),
            "p.toml is a pipeline file; leave out --kind or pass --kind pipeline"
        );
        let pipeline = Publication {
            kind: Some(Kind::Pipeline),
            ..publication("p.toml", &[])
        };
        assert!(pipeline.check().is_ok());
        assert!(publication("c.wasm", &graphs).check().is_ok());
    }

    #[test]
    fn a_pipeline_is_named_by_its_file_unless_told() {
        let mut pipeline = Pipeline::parse(
            r#"
            [pipeline]
            name = "iris"
            namespace = "acme"
            version = "1.2.0"
            [preprocessor]
            bundled = "standardize"
            [trainer]
            bundled = "softmax-regression"
            [predictor]
            bundled = "softmax-regression"
            "#,
            Path::new("."),
            Path::new("p.toml"),
        )
        .unwrap();
        let p = publication("p.toml", &[]);
        assert_eq!(
            p.pipeline_name(&pipeline).unwrap(),
            ("acme/iris".to_string(), "1.2.0".to_string())
        );
        let told = Publication {
            name: Some("other/x"),
            version: Some("2.0.0"),
            ..publication("p.toml", &[])
        };
        assert_eq!(
            told.pipeline_name(&pipeline).unwrap(),
            ("other/x".to_string(), "2.0.0".to_string())
        );
        pipeline.pipeline.version = None;
        assert_eq!(
            p.pipeline_name(&pipeline).unwrap_err().to_string(),
            "p.toml: give a version with --version 1.0.0, or set `version` in [pipeline]"
        );
        pipeline.pipeline.namespace = None;
        assert_eq!(
            p.pipeline_name(&pipeline).unwrap_err().to_string(),
            "p.toml: name the artifact with --name ns/name, or set `namespace` in [pipeline]"
        );
    }

    #[test]
    fn a_graph_is_name_equals_file() {
        assert_eq!(
            parse_graph("model=a=b.onnx").unwrap(),
            ("model", "a=b.onnx")
        );
        assert_eq!(
            parse_graph("iris.onnx").unwrap_err().to_string(),
            "--graph takes NAME=FILE (for example --graph model=iris.onnx), not `iris.onnx`"
        );
    }
}
