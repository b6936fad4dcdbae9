//! `tensorlet export <model> --wasi-http -o model.wasm [--key <name>]`

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use serde_json::json;
use tensorlet_registry::Kind;
use tensorlet_runtime::export::{self, ExportInput, Parts};
use tensorlet_runtime::serve::registry::served_name;

use crate::artifacts::RegistryArgs;

/// Export a model as one standard wasi:http component that other Wasm hosts
/// (wasmtime serve, Spin, wasmCloud, jco serve) can serve.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model: `ns/name`, `ns/name@1.2.0`, `ns/name@alias` or `ns/name@sha256:…`.
    pub model: String,
    /// Export as a `wasi:http` component answering the Open Inference Protocol
    /// (the one export format so far).
    #[arg(long)]
    pub wasi_http: bool,
    /// Where to write the component.
    #[arg(short, long)]
    pub output: PathBuf,
    /// Sign the exported component with this key (a `tensorlet-signature`
    /// custom section over the whole file).
    #[arg(long)]
    pub key: Option<String>,
    /// The name it answers to in `/v2/models/{name}/…`. Default: the model's
    /// name without its namespace, as `tensorlet serve` serves it.
    #[arg(long)]
    pub name: Option<String>,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn execute(args: Args) -> Result<()> {
    if !args.wasi_http {
        bail!(
            "say which kind of export: `--wasi-http` (a wasi:http component serving the Open \
             Inference Protocol) is the one kind so far"
        );
    }
    let reg = crate::artifacts::open()?;
    let model = args.registry.sources()?.fetch(&reg, &args.model)?;
    if model.kind() != Kind::Model {
        bail!(
            "{} is a {}, not a model; export a trained model (`tensorlet list` shows them)",
            model.reference(),
            model.kind()
        );
    }
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
    let (pre, pred) = (component("preprocessor")?, component("predictor")?);
    let key = args.key.as_deref().map(|k| reg.key(k)).transpose()?;
    let served_name = args
        .name
        .clone()
        .unwrap_or_else(|| served_name(&model.reference()));
    let parts = Parts {
        front: crate::bundled::export_part("http-front").expect("built by build.rs"),
        tensor: crate::bundled::export_part("tensor-cpu").expect("built by build.rs"),
        forward_predict: crate::bundled::export_part("forward-predict").expect("built by build.rs"),
    };
    let bytes = export::export_wasi_http(
        &ExportInput {
            model: &model,
            served_name: &served_name,
            preprocessor: &pre,
            predictor: &pred,
        },
        parts,
        key.as_ref(),
    )?;
    std::fs::write(&args.output, &bytes)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let digest = tensorlet_runtime::digest(&bytes);
    reg.record(
        "model.export",
        &model.reference(),
        json!({
            "format": "wasi-http",
            "manifest_digest": model.digest(),
            "digest": digest,
            "signed_by": key.as_ref().map(|k| k.key_id()),
        }),
    )?;
    println!(
        "exported {} (manifest {}) to {}: {}, {digest}{}",
        model.reference(),
        model.digest(),
        args.output.display(),
        tensorlet_runtime::human_bytes(bytes.len()),
        match &key {
            Some(k) => format!(", signed by key {}", k.key_id()),
            None => ", unsigned (give --key to sign it)".into(),
        }
    );
    println!(
        "serves POST /v2/models/{served_name}/infer under any wasi:http host, e.g. \
         `tensorlet serve-wasi-http {0}` or `wasmtime serve -S cli {0}`",
        args.output.display()
    );
    Ok(())
}
