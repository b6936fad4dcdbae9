//! `tensorlet demo`: the whole story on the bundled data. The bundled
//! plugins and pipelines are signed with a throwaway key and published to a
//! registry of its own, models are trained from the registry and published,
//! predictions come from the published models, and then [`serve`] serves
//! them over the Open Inference Protocol. Each step writes what it did to
//! the `out` it is given.

pub mod serve;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use tensorlet_registry::{KeyPair, Registry};

use crate::run::data::DataSource;
use crate::run::publish::PublishAs;
use crate::run::{Progress, Run};
use crate::source::Sources;
use crate::{Pipeline, Runtime, artifacts, data};

/// The namespace the demo publishes under.
pub const NS: &str = "tensorlet";

/// The name of the demo's signing key.
const KEY: &str = "demo";

/// A pipeline that ships with tensorlet, with its data.
#[derive(Clone, Copy, Debug)]
pub struct Example {
    /// Short name.
    pub name: &'static str,
    /// The pipeline file's text.
    pub pipeline: &'static str,
    /// File name of the data set.
    pub data_file: &'static str,
    /// The data set (CSV).
    pub data: &'static str,
}

/// A published model and the data file it was trained on.
pub type Trained = (String, PathBuf);

/// The demo's registry in `home` and what it publishes there.
pub struct Demo<'a> {
    /// The runtime that inspects, trains and predicts.
    pub rt: &'a Runtime,
    /// The demo's own registry.
    pub reg: &'a Registry,
    /// Its home, where the data files are written.
    pub home: &'a Path,
    /// The bundled plugins (name, component).
    pub plugins: &'a [(&'a str, &'a [u8])],
    /// The bundled pipelines.
    pub examples: &'a [Example],
    /// The version everything is published as.
    pub version: &'a str,
}

impl Demo<'_> {
    /// The demo key (created on first use), trusted for [`NS`].
    pub fn key(&self) -> Result<KeyPair> {
        let key = match self.reg.key(KEY) {
            Ok(k) => k,
            Err(_) => self.reg.keygen(KEY)?,
        };
        self.reg.trust_add(&key.public(), &[NS.to_string()])?;
        Ok(key)
    }

    /// Signs and publishes the bundled plugins and pipelines that this
    /// registry does not have yet; says which.
    pub fn publish(&self, out: &mut dyn Write) -> Result<()> {
        let (rt, reg, version) = (self.rt, self.reg, self.version);
        let key = self.key()?;
        let exists = |artifact: &str| -> Result<bool> {
            Ok(reg
                .resolve(&format!("{artifact}@{version}").parse()?)
                .is_ok())
        };
        let mut published = Vec::new();
        for (name, bytes) in self.plugins {
            let artifact = format!("{NS}/{name}");
            if exists(&artifact)? {
                continue;
            }
            let kind = artifacts::kind_of(rt, name, bytes)?;
            let m = artifacts::plugin_manifest(rt, &artifact, version, kind, bytes)?;
            reg.publish(&m.sign(&key), &[bytes.to_vec()])?;
            published.push(format!("{artifact}@{version}"));
        }
        for ex in self.examples {
            let origin = PathBuf::from(format!("<bundled {}.toml>", ex.name));
            let mut p = Pipeline::parse(ex.pipeline, self.home, &origin)?;
            for (_, stage) in p.stages_mut() {
                if let Some(b) = stage.bundled.take() {
                    stage.reference = Some(format!("{NS}/{b}@{version}"));
                }
            }
            let artifact = format!("{NS}/{}", ex.name);
            if exists(&artifact)? {
                continue;
            }
            let (m, toml) = artifacts::pipeline_manifest(rt, reg, &p, &artifact, version)?;
            reg.publish(&m.sign(&key), &[toml])?;
            published.push(format!("{artifact}@{version}"));
        }
        writeln!(out, "{}", published_line(&key.key_id(), &published))?;
        Ok(())
    }

    /// The width of the name column: the longest example's name.
    fn name_width(&self) -> usize {
        self.examples
            .iter()
            .map(|e| e.name.len())
            .max()
            .unwrap_or(0)
            .max(7)
    }

    /// Trains each bundled pipeline from the registry as a recorded run
    /// (`progress` makes the progress of a pipeline's run) and publishes its
    /// model; returns the models with their data files.
    pub fn train<P: Progress>(
        &self,
        sources: &Sources,
        mut progress: impl FnMut(&str) -> P,
        out: &mut dyn Write,
    ) -> Result<Vec<Trained>> {
        let w = self.name_width();
        let (rt, reg) = (self.rt, self.reg);
        let mut models = Vec::new();
        for ex in self.examples {
            let data_path = self.home.join(ex.data_file);
            std::fs::write(&data_path, ex.data)
                .with_context(|| format!("cannot write {}", data_path.display()))?;
            let pipeline_ref = format!("{NS}/{}", ex.name);
            let (pipeline, artifact) = sources.pipeline(reg, &pipeline_ref)?;
            let publish = PublishAs {
                key: reg.key(KEY)?,
                key_name: KEY.into(),
                version: None,
                name: format!("{NS}/{}-model", ex.name),
            };
            let run = Run {
                rt,
                reg,
                sources,
                origin: &pipeline_ref,
                artifact: artifact.as_ref(),
                stop: None,
            };
            let started = Instant::now();
            let data = DataSource::file(&data_path)?;
            let mut bar = progress(&pipeline.pipeline.name);
            let outcome = run.record(&pipeline, &data, None, Some(&publish), &mut bar, None)?;
            let meta = &outcome.meta;
            writeln!(
                out,
                "{:<w$} validation accuracy {:.4}  ({} held-out rows; {} + {}; {} epochs in {:.2} s)",
                meta.name,
                meta.val_accuracy().unwrap_or(f32::NAN),
                meta.split.1,
                meta.plugins
                    .trainer
                    .as_ref()
                    .map_or("no trainer", |t| t.name.as_str()),
                meta.plugins.preprocessor.name,
                meta.training.epochs,
                started.elapsed().as_secs_f64(),
            )?;
            let p = outcome
                .published
                .context("the demo publishes every model")?;
            models.push((p.reference, data_path));
        }
        Ok(models)
    }

    /// Predicts a few rows of each model's data with the published model,
    /// beside the true labels.
    pub fn predict(&self, models: &[Trained], out: &mut dyn Write) -> Result<()> {
        let w = self.name_width();
        let (rt, reg) = (self.rt, self.reg);
        let names: Vec<&str> = models.iter().map(|(r, _)| r.as_str()).collect();
        writeln!(out)?;
        writeln!(
            out,
            "predictions from the published models ({}):",
            names.join(", ")
        )?;
        for (reference, data_path) in models {
            let artifact = reg.verify_str(reference)?;
            let model = artifacts::load_model(rt, reg, &artifact)?;
            let ds = data::load_labeled(data_path, Some(&model.meta.label))?;
            let f = ds.features();
            let picks = picks(ds.rows());
            let x: Vec<f32> = picks
                .iter()
                .flat_map(|&r| ds.x[r * f..(r + 1) * f].iter().copied())
                .collect();
            let p = model.predict(rt.device(), x, picks.len())?;
            for ((&row, &label), probs) in picks.iter().zip(&p.labels).zip(&p.probabilities) {
                let truth = ds.y[row];
                writeln!(
                    out,
                    "  {:<w$} row {:>4}: predicted {:<11} p={:.3}  actual {:<11} {}",
                    model.meta.name,
                    row + 1,
                    model.class_name(label),
                    probs[label as usize],
                    model.class_name(truth),
                    if label == truth { "ok" } else { "MISS" }
                )?;
            }
        }
        Ok(())
    }
}

/// What the registry step says: the key, and what it published.
fn published_line(key_id: &str, published: &[String]) -> String {
    format!(
        "registry: throwaway key `{KEY}` (id {key_id}) trusted for `{NS}`; signed and published {}",
        if published.is_empty() {
            "nothing new".to_string()
        } else {
            published.join(", ")
        }
    )
}

/// The rows predicted: four spread over a file of `rows` rows.
fn picks(rows: usize) -> Vec<usize> {
    (0..4).map(|i| i * rows / 4 + 7).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn four_rows_spread_over_the_file_are_predicted() {
        assert_eq!(picks(150), [7, 44, 82, 119]);
        assert_eq!(picks(1797), [7, 456, 905, 1354]);
    }

    #[test]
    fn the_registry_step_names_what_it_published() {
        assert_eq!(
            published_line("0123", &[]),
            "registry: throwaway key `demo` (id 0123) trusted for `tensorlet`; signed and \
             published nothing new"
        );
        let both = [
            "tensorlet/iris@0.1.0".to_string(),
            "tensorlet/mlp@0.1.0".to_string(),
        ];
        assert!(
            published_line("0123", &both).ends_with(" tensorlet/iris@0.1.0, tensorlet/mlp@0.1.0")
        );
    }

    #[test]
    fn the_demo_key_is_made_once_and_trusted_for_its_namespace() {
        let home = tempfile::tempdir().unwrap();
        let reg = Registry::open(home.path()).unwrap();
        let rt = Runtime::new(crate::RuntimeConfig::default()).unwrap();
        let demo = Demo {
            rt: &rt,
            reg: &reg,
            home: home.path(),
            plugins: &[],
            examples: &[],
            version: "0.1.0",
        };
        let first = demo.key().unwrap();
        assert_eq!(demo.key().unwrap().key_id(), first.key_id());
        let trusted = reg.trust_list().unwrap();
        assert!(
            trusted
                .iter()
                .any(|t| t.key_id == first.key_id() && t.namespaces == [NS])
        );
        let mut out = Vec::new();
        demo.publish(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            format!("{}\n", published_line(&first.key_id(), &[]))
        );
        assert!(
            demo.train(&Sources::default(), |_| NoProgress, &mut Vec::new())
                .unwrap()
                .is_empty()
        );
    }

    struct NoProgress;
    impl Progress for NoProgress {}
}
