//! `tensorlet publish <file.wasm|pipeline.toml> … --key <name>`

use std::path::PathBuf;

use anyhow::{Context, Result};
use tensorlet_registry::Kind;
use tensorlet_runtime::artifacts::publish::Publication;
use tensorlet_runtime::{Runtime, RuntimeConfig};

use crate::artifacts::RegistryArgs;

/// Sign and publish a plugin component or a pipeline.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A component (`.wasm`) or a pipeline file (`.toml`, every stage a `ref`).
    pub file: PathBuf,
    /// The artifact name, `namespace/name` (pipelines: default from
    /// `[pipeline] namespace` and `name`).
    #[arg(long)]
    pub name: Option<String>,
    /// The version, semver (pipelines: default `[pipeline] version`).
    #[arg(long)]
    pub version: Option<String>,
    /// preprocessor, trainer or predictor (pipelines: pipeline).
    #[arg(long)]
    pub kind: Option<Kind>,
    /// A model that ships with a predictor component, as `NAME=FILE.onnx`
    /// (repeatable): pinned by digest in the plugin's artifact and offered to
    /// it through `wasi:nn` as graph NAME.
    #[arg(long = "graph", value_name = "NAME=FILE")]
    pub graphs: Vec<String>,
    /// The signing key (see `tensorlet keygen`).
    #[arg(long, env = "TENSORLET_KEY")]
    pub key: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn execute(args: Args) -> Result<()> {
    let reg = crate::artifacts::open()?;
    let key = reg.key(&args.key)?;
    // Inspection needs no device: compile only.
    let rt = Runtime::new(RuntimeConfig {
        cache_dir: Some(crate::common::home().join("cache").join("components")),
        ..RuntimeConfig::default()
    })
    .context("cannot start the wasm runtime")?;
    let publication = Publication {
        file: &args.file,
        name: args.name.as_deref(),
        version: args.version.as_deref(),
        kind: args.kind,
        graphs: &args.graphs,
    };
    let (manifest, blobs) = publication.prepare(&rt, &reg, || args.registry.sources())?;
    let kind = manifest.kind;
    let signed = manifest.sign(&key);
    let p = match args.registry.remote()? {
        Some(remote) => remote.publish(&signed, &blobs)?,
        None => reg.publish(&signed, &blobs)?,
    };
    println!(
        "published {} ({kind}) {} signed by key {}",
        p.reference, p.digest, p.key_id
    );
    Ok(())
}
