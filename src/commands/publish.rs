//! `tensorlet publish <file.wasm|pipeline.toml> … --key <name>`

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tensorlet_registry::Kind;
use tensorlet_runtime::artifacts;
use tensorlet_runtime::{Pipeline, Runtime, RuntimeConfig};

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
    let is_toml = args.file.extension().is_some_and(|e| e == "toml");
    if is_toml && !args.graphs.is_empty() {
        bail!("--graph belongs to a plugin component (.wasm), not to a pipeline file");
    }
    let (manifest, blobs) = if is_toml {
        if args.kind.is_some_and(|k| k != Kind::Pipeline) {
            bail!(
                "{} is a pipeline file; leave out --kind or pass --kind pipeline",
                args.file.display()
            );
        }
        let pipeline = Pipeline::load(&args.file)?;
        let name = match (&args.name, &pipeline.pipeline.namespace) {
            (Some(n), _) => n.clone(),
            (None, Some(ns)) => format!("{ns}/{}", pipeline.pipeline.name),
            (None, None) => bail!(
                "{}: name the artifact with --name ns/name, or set `namespace` in [pipeline]",
                args.file.display()
            ),
        };
        let Some(version) = args.version.clone().or(pipeline.pipeline.version.clone()) else {
            bail!(
                "{}: give a version with --version 1.0.0, or set `version` in [pipeline]",
                args.file.display()
            );
        };
        // Pull the plugins it names from the remote first, verifying them.
        let sources = args.registry.sources()?;
        for (_, stage) in pipeline.stages() {
            if let Some(r) = &stage.reference {
                sources.fetch(&reg, r)?;
            }
        }
        let (m, toml) = artifacts::pipeline_manifest(&rt, &reg, &pipeline, &name, &version)?;
        (m, vec![toml])
    } else {
        let (Some(name), Some(version), Some(kind)) = (&args.name, &args.version, args.kind) else {
            bail!(
                "publishing a component needs --name ns/name, --version x.y.z and --kind \
                 preprocessor|trainer|predictor"
            );
        };
        let bytes = std::fs::read(&args.file)
            .with_context(|| format!("cannot read {}", args.file.display()))?;
        let mut m = artifacts::plugin_manifest(&rt, name, version, kind, &bytes)?;
        let mut graphs = Vec::new();
        for g in &args.graphs {
            let Some((gname, file)) = g.split_once('=') else {
                bail!("--graph takes NAME=FILE (for example --graph model=iris.onnx), not `{g}`");
            };
            let gbytes =
                std::fs::read(file).with_context(|| format!("cannot read graph file {file}"))?;
            graphs.push((gname.to_string(), gbytes));
        }
        let mut blobs = vec![bytes];
        blobs.extend(artifacts::add_graphs(&mut m, &graphs)?);
        (m, blobs)
    };
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
