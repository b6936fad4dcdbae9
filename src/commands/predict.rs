//! `tensorlet predict <model-ref|model-dir> --input <csv|json>`

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use tensorlet_runtime::artifacts;
use tensorlet_runtime::data;
use tensorlet_runtime::model::{Model, StageMeta};
use tensorlet_runtime::registry::{Reference, Registry};
use tensorlet_runtime::{Runtime, RuntimeError};

use crate::artifacts::{RegistryArgs, UnsignedArgs};
use crate::common::{self, DeviceArgs};

/// Predict with a model: one label per input row.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model: a registry reference (`ns/name[@version|@alias]`), or a
    /// model directory written by `tensorlet train --out`.
    pub model: String,
    /// Rows to predict: CSV with a header (a label column is ignored), or a
    /// `.json` file holding an array of rows.
    #[arg(long)]
    pub input: PathBuf,
    /// Print JSON (label, class name, probabilities per row; for regression the
    /// predicted target) instead of labels.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    #[command(flatten)]
    pub unsigned: UnsignedArgs,
}

/// Loads a model from the registry (verified with everything it pins) or
/// from a directory. A directory's components run only when the registry
/// holds each as a verified artifact, or with `--allow-unsigned`.
pub fn load_model(
    rt: &Runtime,
    reg: &Registry,
    registry: &RegistryArgs,
    allow_unsigned: bool,
    arg: &str,
) -> Result<Model> {
    let dir = Path::new(arg);
    if dir.is_dir() {
        let component = |s: &StageMeta, bytes: Vec<u8>| {
            if let Some(c) = reg.component_by_digest(&s.digest)? {
                return Ok(c);
            }
            if allow_unsigned {
                return crate::artifacts::unsigned(reg, &s.name, bytes);
            }
            Err(RuntimeError::Load {
                plugin: s.name.clone(),
                message: format!(
                    "its component {} in {} is not a verified artifact in the registry; predict \
                     from a published model (`tensorlet predict ns/name-model`), publish the \
                     plugin, or pass --allow-unsigned for local development",
                    s.digest,
                    dir.display()
                ),
            })
        };
        let model = Model::load(rt, dir, &component)?;
        reg.record(
            "model.load",
            &dir.display().to_string(),
            serde_json::json!({"params": model.meta.params_digest}),
        )?;
        return Ok(model);
    }
    if Reference::parse(arg).is_err() {
        bail!(
            "`{arg}` is neither a model directory nor a registry reference (`ns/name`, \
             `ns/name@1.0.0`, `ns/name@production`)"
        );
    }
    let artifact = registry.fetch(reg, arg)?;
    Ok(artifacts::load_model(rt, reg, &artifact)?)
}

pub fn execute(args: Args) -> Result<()> {
    let reg = crate::artifacts::open()?;
    let rt = common::runtime(args.device.open()?)?;
    let model = load_model(
        &rt,
        &reg,
        &args.registry,
        args.unsigned.allow_unsigned,
        &args.model,
    )?;
    let input = data::load_features(
        &args.input,
        Some(&model.meta.label),
        model.meta.schema.as_deref(),
    )?;
    let p = model.predict(rt.device(), input.x, input.rows)?;
    if !p.values.is_empty() {
        // Regression: the predicted target(s) of each row.
        if args.json {
            let rows: Vec<_> = p
                .values
                .iter()
                .map(|v| serde_json::json!({ model.meta.label.as_str(): v }))
                .collect();
            println!("{}", serde_json::to_string_pretty(&rows)?);
        } else {
            for v in &p.values {
                let cells: Vec<String> = v.iter().map(f32::to_string).collect();
                println!("{}", cells.join(","));
            }
        }
        return Ok(());
    }
    if args.json {
        let rows: Vec<_> = p
            .labels
            .iter()
            .zip(&p.probabilities)
            .map(|(&label, probs)| {
                serde_json::json!({
                    "label": label,
                    "class": model.class_name(label),
                    "probabilities": probs,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&rows)?);
    } else {
        for &label in &p.labels {
            println!("{}", model.class_name(label));
        }
    }
    Ok(())
}
