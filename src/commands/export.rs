//! `tensorlet export <model> --wasi-http -o model.wasm [--key <name>] [--spin-toml spin.toml]`

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tensorlet_runtime::export::model::Exported;
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
    /// Also write a Spin application manifest here (`spin.toml`): one HTTP
    /// trigger on every route, running the exported component with no
    /// outbound hosts. Its `source` is the component's path relative to the
    /// manifest's directory when the component lies under it, else absolute.
    #[arg(long, value_name = "PATH")]
    pub spin_toml: Option<PathBuf>,
    /// The HTTP front: `wasi-p2` (WASI 0.2's `incoming-handler`; `jco serve`,
    /// `wasmtime serve`, Spin) or `spin` (built on `spin-sdk`: WASI 0.3's
    /// `handler`; Spin and `tensorlet serve-wasi-http`, not `jco serve`).
    #[arg(long, value_enum, default_value = "wasi-p2")]
    pub front: Front,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

/// Which HTTP front an export gets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Front {
    /// WASI 0.2 `wasi:http/incoming-handler`.
    WasiP2,
    /// `spin-sdk` 7: WASI 0.3 `wasi:http/handler`.
    Spin,
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
    let (pre, pred) = export::model::components(&reg, &model)?;
    let key = args.key.as_deref().map(|k| reg.key(k)).transpose()?;
    let served_name = args
        .name
        .clone()
        .unwrap_or_else(|| served_name(&model.reference()));
    let parts = Parts {
        front: crate::bundled::export_part(match args.front {
            Front::WasiP2 => "http-front",
            Front::Spin => "spin-front",
        })
        .expect("built by build.rs"),
        tensor: crate::bundled::export_part("tensor-cpu").expect("built by build.rs"),
        forward_predict: crate::bundled::export_part("forward-predict").expect("built by build.rs"),
    };
    let bytes = export::export_wasi_http(
        &ExportInput {
            model: &model,
            served_name: &served_name,
            preprocessors: &pre,
            predictor: &pred,
        },
        parts,
        key.as_ref(),
    )?;
    std::fs::write(&args.output, &bytes)
        .with_context(|| format!("cannot write {}", args.output.display()))?;
    let digest = tensorlet_runtime::digest(&bytes);
    let key_id = key.as_ref().map(|k| k.key_id());
    let exported = Exported {
        model: &model.reference(),
        manifest_digest: model.digest(),
        output: &args.output,
        bytes: bytes.len(),
        digest: &digest,
        signed_by: key_id.as_deref(),
        served_name: &served_name,
    };
    exported.record(&reg)?;
    for line in exported.lines() {
        println!("{line}");
    }
    if let Some(path) = &args.spin_toml {
        let source = spin_source(path, &args.output)?;
        let manifest = export::spin::spin_toml(
            &export::spin::SpinApp {
                served_name: &served_name,
                version: &model.manifest().version,
                model: &model.reference(),
                source: &source,
            },
            &bytes,
        )
        .with_context(|| format!("cannot write a Spin manifest for {}", args.output.display()))?;
        std::fs::write(path, manifest)
            .with_context(|| format!("cannot write {}", path.display()))?;
        println!(
            "wrote {}: Spin application `{served_name}`, route /..., component source {source}",
            path.display()
        );
    }
    Ok(())
}

/// The component's path as `spin.toml` at `manifest` names it: relative to
/// the manifest's directory when the component lies under it, else absolute.
fn spin_source(manifest: &Path, component: &Path) -> Result<String> {
    let component = component
        .canonicalize()
        .with_context(|| format!("cannot resolve {}", component.display()))?;
    let dir = match manifest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let dir = dir
        .canonicalize()
        .with_context(|| format!("cannot resolve the directory of {}", manifest.display()))?;
    let path = component.strip_prefix(&dir).unwrap_or(&component);
    path.to_str()
        .map(str::to_string)
        .with_context(|| format!("{} is not valid UTF-8", path.display()))
}
