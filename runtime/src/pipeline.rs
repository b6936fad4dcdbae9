//! The pipeline file: which plugins, with what configuration, trained how.
//!
//! ```toml
//! [pipeline]
//! name = "iris"
//! description = "Softmax regression on Fisher's iris"
//!
//! [data]                       # optional
//! label = "species"            # default: the last column
//! class_names = ["setosa", "versicolor", "virginica"]
//!
//! [preprocessor]
//! bundled = "standardize"      # or: path = "plugins/standardize.wasm"
//!
//! [trainer]
//! bundled = "softmax-regression"
//! config = { l2 = 0.0 }        # any table; passed to the plugin as JSON
//!
//! [predictor]
//! bundled = "softmax-regression"
//!
//! [training]
//! epochs = 100
//! batch_size = 16
//! learning_rate = 0.1
//! seed = 42
//! validation_fraction = 0.2
//! keep = "best"              # or "last": which epoch becomes the model
//! ```
//!
//! Unknown keys are errors, so a typo never turns into a silent default.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, RuntimeError};

/// A parsed, validated pipeline.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Pipeline {
    /// Name and description.
    pub pipeline: Meta,
    /// How to read the training data.
    #[serde(default)]
    pub data: DataConfig,
    /// The preprocessing plugin.
    pub preprocessor: Stage,
    /// The training plugin. Absent for a predictor that brings its own
    /// weights (an ONNX model through `wasi:nn`): training then only fits the
    /// preprocessor and evaluates the predictor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trainer: Option<Stage>,
    /// The prediction plugin.
    pub predictor: Stage,
    /// Training hyper-parameters.
    #[serde(default)]
    pub training: TrainingConfig,
}

/// `[pipeline]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Meta {
    /// A short name, used for the model.
    pub name: String,
    /// The registry namespace it is published under (`tensorlet publish`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// The version it is published as (semver).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// One line for people.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// `[data]`
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// The label column's name; the last column when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// Names of the classes, by index.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class_names: Option<Vec<String>>,
}

/// `[preprocessor]`, `[trainer]` or `[predictor]`: where the component comes
/// from (exactly one of `ref`, `path` and `bundled`) and its configuration.
/// `ref` names a signed registry artifact; `path` and `bundled` are for local
/// development and run only with `--allow-unsigned`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Stage {
    /// A registry artifact: `ns/name@1.2.0`, `ns/name@alias`, `ns/name@sha256:…`.
    #[serde(rename = "ref", default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// A component file, relative to the pipeline file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathBuf>,
    /// The name of a plugin built into the tensorlet binary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bundled: Option<String>,
    /// Configuration handed to the plugin as a JSON object.
    #[serde(default)]
    pub config: toml::Table,
}

/// Where a stage's component comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PluginSource {
    /// A registry artifact reference.
    Registry(String),
    /// A file (already resolved against the pipeline's directory).
    Path(PathBuf),
    /// A plugin built into the binary.
    Bundled(String),
}

impl Stage {
    /// The component's source.
    pub fn source(&self) -> PluginSource {
        match (&self.reference, &self.path, &self.bundled) {
            (Some(r), _, _) => PluginSource::Registry(r.clone()),
            (None, Some(p), _) => PluginSource::Path(p.clone()),
            (None, None, Some(b)) => PluginSource::Bundled(b.clone()),
            (None, None, None) => unreachable!("validated by Pipeline::parse"),
        }
    }

    /// The configuration as a JSON object string.
    pub fn config_json(&self) -> String {
        serde_json::to_string(&self.config).expect("a TOML table is valid JSON")
    }
}

/// `[training]`
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingConfig {
    /// Passes over the training split.
    pub epochs: u32,
    /// Rows per optimisation step.
    pub batch_size: u32,
    /// Step size, passed to the trainer as `learning_rate`.
    pub learning_rate: f32,
    /// Seeds the split, the shuffles and the initialisation.
    pub seed: u64,
    /// Share of rows held out for validation, in [0, 1).
    pub validation_fraction: f32,
    /// Which epoch's checkpoint becomes the model: `best` (lowest validation
    /// loss, the earliest on ties; the last without a validation split) or
    /// `last`.
    #[serde(skip_serializing_if = "Keep::is_best")]
    pub keep: Keep,
}

/// Which checkpoint of a run becomes the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Keep {
    /// The epoch with the lowest validation loss.
    #[default]
    Best,
    /// The final epoch.
    Last,
}

impl Keep {
    fn is_best(&self) -> bool {
        *self == Keep::Best
    }
}

impl std::str::FromStr for Keep {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "best" => Ok(Keep::Best),
            "last" => Ok(Keep::Last),
            _ => Err(format!(
                "`{s}` is not a checkpoint choice; use `best` or `last`"
            )),
        }
    }
}

impl Default for TrainingConfig {
    fn default() -> Self {
        TrainingConfig {
            epochs: 10,
            batch_size: 32,
            learning_rate: 0.01,
            seed: 0,
            validation_fraction: 0.2,
            keep: Keep::Best,
        }
    }
}

impl TrainingConfig {
    /// As a JSON value whose `f32`s keep their shortest form (`0.1`).
    /// `serde_json::to_value` widens an `f32` to the `f64` nearest it
    /// (`0.10000000149011612`); writing the text first keeps what was given.
    pub fn to_json(&self) -> serde_json::Value {
        let text = serde_json::to_string(self).expect("a training config serialises");
        serde_json::from_str(&text).expect("serde_json reads what it wrote")
    }

    /// Checks ranges; the message names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.epochs == 0 {
            return Err("training.epochs must be at least 1".into());
        }
        if self.batch_size == 0 {
            return Err("training.batch_size must be at least 1".into());
        }
        if !(self.learning_rate.is_finite() && self.learning_rate > 0.0) {
            return Err(format!(
                "training.learning_rate must be a positive number, got {}",
                self.learning_rate
            ));
        }
        if !(0.0..1.0).contains(&self.validation_fraction) {
            return Err(format!(
                "training.validation_fraction must be in [0, 1), got {}",
                self.validation_fraction
            ));
        }
        Ok(())
    }
}

impl Pipeline {
    /// The stages it has, in order, with their section names.
    pub fn stages(&self) -> Vec<(&'static str, &Stage)> {
        let mut v = vec![("preprocessor", &self.preprocessor)];
        if let Some(t) = &self.trainer {
            v.push(("trainer", t));
        }
        v.push(("predictor", &self.predictor));
        v
    }

    /// [`Pipeline::stages`], mutable.
    pub fn stages_mut(&mut self) -> Vec<(&'static str, &mut Stage)> {
        let mut v = vec![("preprocessor", &mut self.preprocessor)];
        if let Some(t) = &mut self.trainer {
            v.push(("trainer", t));
        }
        v.push(("predictor", &mut self.predictor));
        v
    }

    /// Reads and validates a pipeline file; `path` stages resolve against its directory.
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| RuntimeError::io(path, e))?;
        let base = path.parent().unwrap_or(Path::new("."));
        Pipeline::parse(&text, base, path)
    }

    /// Parses pipeline text; `origin` names it in errors.
    pub fn parse(text: &str, base: &Path, origin: &Path) -> Result<Self> {
        let err = |message: String| RuntimeError::Pipeline {
            path: origin.to_path_buf(),
            message,
        };
        let mut p: Pipeline = toml::from_str(text).map_err(|e| err(e.to_string()))?;
        for (section, stage) in p.stages_mut() {
            let given = [
                stage.reference.is_some(),
                stage.path.is_some(),
                stage.bundled.is_some(),
            ];
            match given.iter().filter(|g| **g).count() {
                0 => {
                    return Err(err(format!(
                        "[{section}] needs `ref = \"ns/name@1.0.0\"` (a registry artifact), or \
                         for local development `path = \"plugin.wasm\"` or `bundled = \"<name>\"`"
                    )));
                }
                1 => {}
                _ if stage.reference.is_none() => {
                    return Err(err(format!(
                        "[{section}] gives both `path` and `bundled`; keep one"
                    )));
                }
                _ => {
                    return Err(err(format!(
                        "[{section}] gives `ref` and also `path` or `bundled`; keep one"
                    )));
                }
            }
            if let Some(r) = &stage.reference {
                tensorlet_registry::Reference::parse(r)
                    .map_err(|e| err(format!("[{section}] ref: {e}")))?;
            }
            if let Some(rel) = &stage.path {
                stage.path = Some(base.join(rel));
            }
        }
        if p.pipeline.name.trim().is_empty() {
            return Err(err("[pipeline] name must not be empty".into()));
        }
        p.training.validate().map_err(err)?;
        if p.trainer.is_none() {
            // Without a trainer, training is one evaluation pass.
            p.training.epochs = 1;
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn training_json_keeps_the_shortest_f32_form() {
        let t = TrainingConfig {
            learning_rate: 0.1,
            validation_fraction: 0.3,
            ..TrainingConfig::default()
        };
        let v = t.to_json();
        assert_eq!(v["learning_rate"].to_string(), "0.1");
        assert_eq!(v["validation_fraction"].to_string(), "0.3");
        // What the plain conversion gives, and what the record used to hold.
        let widened = serde_json::to_value(&t).unwrap();
        assert_eq!(widened["learning_rate"].to_string(), "0.10000000149011612");
        // Either form reads back as the same config.
        assert_eq!(serde_json::from_value::<TrainingConfig>(v).unwrap(), t);
        assert_eq!(
            serde_json::from_value::<TrainingConfig>(widened).unwrap(),
            t
        );
    }

    const MINIMAL: &str = r#"
        [pipeline]
        name = "t"
        [preprocessor]
        bundled = "standardize"
        [trainer]
        path = "m.wasm"
        config = { hidden = [8, 4], optimizer = "adam" }
        [predictor]
        bundled = "mlp"
    "#;

    #[test]
    fn parses_and_resolves_paths() {
        let p = Pipeline::parse(MINIMAL, Path::new("/x"), Path::new("p.toml")).unwrap();
        assert_eq!(
            p.trainer.as_ref().unwrap().source(),
            PluginSource::Path("/x/m.wasm".into())
        );
        assert_eq!(
            p.preprocessor.source(),
            PluginSource::Bundled("standardize".into())
        );
        assert_eq!(
            p.trainer.as_ref().unwrap().config_json(),
            r#"{"hidden":[8,4],"optimizer":"adam"}"#
        );
        assert_eq!(p.training, TrainingConfig::default());
    }

    #[test]
    fn registry_refs_are_a_third_source() {
        let text = MINIMAL.replace("bundled = \"mlp\"", "ref = \"acme/mlp@1.0.0\"");
        let p = Pipeline::parse(&text, Path::new("."), Path::new("p.toml")).unwrap();
        assert_eq!(
            p.predictor.source(),
            PluginSource::Registry("acme/mlp@1.0.0".into())
        );
        let both = MINIMAL.replace("bundled = \"mlp\"", "bundled = \"mlp\"\nref = \"acme/mlp\"");
        let e = Pipeline::parse(&both, Path::new("."), Path::new("p.toml")).unwrap_err();
        assert!(e.to_string().contains("gives `ref` and also"), "{e}");
        let bad = MINIMAL.replace("bundled = \"mlp\"", "ref = \"mlp\"");
        let e = Pipeline::parse(&bad, Path::new("."), Path::new("p.toml")).unwrap_err();
        assert!(
            e.to_string()
                .contains("[predictor] ref: `mlp` is not an artifact reference"),
            "{e}"
        );
    }

    #[test]
    fn rejects_unknown_keys_and_bad_values() {
        let typo = MINIMAL.replace("[predictor]", "[predictor]\nbundeld = \"x\"");
        let e = Pipeline::parse(&typo, Path::new("."), Path::new("p.toml")).unwrap_err();
        assert!(e.to_string().contains("unknown field `bundeld`"), "{e}");

        let both = MINIMAL.replace("bundled = \"mlp\"", "bundled = \"mlp\"\npath = \"a.wasm\"");
        let e = Pipeline::parse(&both, Path::new("."), Path::new("p.toml")).unwrap_err();
        assert!(e.to_string().contains("both `path` and `bundled`"), "{e}");

        let lr = format!("{MINIMAL}\n[training]\nlearning_rate = -1.0\n");
        let e = Pipeline::parse(&lr, Path::new("."), Path::new("p.toml")).unwrap_err();
        assert!(
            e.to_string().contains("learning_rate must be a positive"),
            "{e}"
        );
    }
}
