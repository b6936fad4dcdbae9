//! `tensorlet demo`: the whole story on the bundled data, in seconds: a
//! throwaway key in a temporary registry, the bundled plugins and pipelines
//! signed and published, models trained from the registry and published,
//! predictions from the published models, and the audit log verified.

use anyhow::{Context, Result};
use tensorlet_registry::Registry;
use tensorlet_runtime::demo::{Demo, serve};

use crate::artifacts::RegistryArgs;
use crate::bundled::{BUNDLED, EXAMPLES};
use crate::common::{self, DeviceArgs};
use tensorlet_runtime::run::Bar;

/// Train the bundled pipelines (iris, digits, a CNN on digits, a transformer
/// on token sequences) from a throwaway signed registry, then predict a few
/// rows.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Keep the demo's registry home (key, artifacts, audit log) in this
    /// directory instead of a temporary one.
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    /// After the demo, keep serving the models until Ctrl-C.
    #[arg(long)]
    pub serve: bool,
    /// Where the demo serves its models (port 0: any free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    pub addr: String,
    /// Train only these bundled pipelines, comma-separated (default: all of
    /// them; names as `tensorlet demo` prints them).
    #[arg(long, value_delimiter = ',')]
    pub only: Vec<String>,
}

/// The bundled examples `only` names (all when empty); an unknown name is an
/// error that lists the known ones.
fn chosen(only: &[String]) -> Result<Vec<tensorlet_runtime::demo::Example>> {
    if only.is_empty() {
        return Ok(EXAMPLES.to_vec());
    }
    let known: Vec<&str> = EXAMPLES.iter().map(|e| e.name).collect();
    only.iter()
        .map(|name| {
            EXAMPLES
                .iter()
                .find(|e| e.name == name)
                .copied()
                .with_context(|| {
                    format!(
                        "--only: no bundled pipeline `{name}`; the bundled ones are: {}",
                        known.join(", ")
                    )
                })
        })
        .collect()
}

pub fn execute(args: Args) -> Result<()> {
    let examples = chosen(&args.only)?;
    let device = args.device.open()?;
    println!("tensorlet demo on {}", device.info());
    // The compile cache is shared with the real home (it is keyed by digest);
    // the registry, its key and its audit log are the demo's own.
    let rt = common::runtime(device)?;
    let tmp = tempfile::tempdir().context("cannot create a temporary directory")?;
    let home = args.out.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&home).with_context(|| format!("cannot create {}", home.display()))?;
    let reg = Registry::open(&home)
        .with_context(|| format!("cannot open a registry in {}", home.display()))?;
    let demo = Demo {
        rt: &rt,
        reg: &reg,
        home: &home,
        plugins: BUNDLED,
        examples: &examples,
        version: env!("CARGO_PKG_VERSION"),
    };
    let out = &mut crate::output::Stdout;
    demo.publish(out)?;
    let sources = RegistryArgs::default().sources()?;
    let models = demo.train(&sources, Bar::new, out)?;
    demo.predict(&models, out)?;
    let http = common::http_client()?;
    serve::serve(&rt, &reg, &models, (args.serve, &args.addr), &http, out)?;

    let report = reg.audit_verify()?;
    println!();
    println!(
        "audit log OK: {} entries, hash chain and signed checkpoint verified",
        report.entries
    );
    if let (Some(out), Some((model, data))) = (&args.out, models.first()) {
        println!(
            "registry kept in {0}; try: TENSORLET_HOME={0} tensorlet predict {1} --input {2}",
            out.display(),
            model,
            data.display(),
        );
    }
    Ok(())
}
