//! `tensorlet demo`: the whole story on the bundled data, in seconds: a
//! throwaway key in a temporary registry, the bundled plugins and pipelines
//! signed and published, models trained from the registry and published,
//! predictions from the published models, and the audit log verified.

use std::time::Instant;

use anyhow::{Context, Result};
use tensorlet_registry::Registry;
use tensorlet_runtime::artifacts;
use tensorlet_runtime::data;
use tensorlet_runtime::run::Run;
use tensorlet_runtime::run::data::DataSource;
use tensorlet_runtime::run::publish::PublishAs;

use crate::artifacts::RegistryArgs;
use crate::bundled::{BUNDLED, EXAMPLES};
use crate::commands::train::Bar;
use crate::common::{self, DeviceArgs};

/// The namespace the demo publishes under.
const NS: &str = "tensorlet";

/// Train the bundled iris and digits pipelines from a throwaway signed
/// registry, then predict a few rows.
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
}

pub fn execute(args: Args) -> Result<()> {
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
    let key = match reg.key("demo") {
        Ok(k) => k,
        Err(_) => reg.keygen("demo")?,
    };
    reg.trust_add(&key.public(), &[NS.to_string()])?;
    let version = env!("CARGO_PKG_VERSION");

    let mut published = Vec::new();
    for (name, bytes) in BUNDLED {
        let artifact = format!("{NS}/{name}");
        if reg
            .resolve(&format!("{artifact}@{version}").parse()?)
            .is_ok()
        {
            continue;
        }
        let kind = artifacts::kind_of(&rt, name, bytes)?;
        let m = artifacts::plugin_manifest(&rt, &artifact, version, kind, bytes)?;
        reg.publish(&m.sign(&key), &[bytes.to_vec()])?;
        published.push(format!("{artifact}@{version}"));
    }
    for ex in EXAMPLES {
        let origin = std::path::PathBuf::from(format!("<bundled {}.toml>", ex.name));
        let mut p = tensorlet_runtime::Pipeline::parse(ex.pipeline, &home, &origin)?;
        for (_, stage) in p.stages_mut() {
            if let Some(b) = stage.bundled.take() {
                stage.reference = Some(format!("{NS}/{b}@{version}"));
            }
        }
        let artifact = format!("{NS}/{}", ex.name);
        if reg
            .resolve(&format!("{artifact}@{version}").parse()?)
            .is_ok()
        {
            continue;
        }
        let (m, toml) = artifacts::pipeline_manifest(&rt, &reg, &p, &artifact, version)?;
        reg.publish(&m.sign(&key), &[toml])?;
        published.push(format!("{artifact}@{version}"));
    }
    println!(
        "registry: throwaway key `demo` (id {}) trusted for `{NS}`; signed and published {}",
        key.key_id(),
        if published.is_empty() {
            "nothing new".to_string()
        } else {
            published.join(", ")
        }
    );

    let sources = RegistryArgs::default().sources()?;
    let mut models = Vec::new();
    for ex in EXAMPLES {
        let data_path = home.join(ex.data_file);
        std::fs::write(&data_path, ex.data)
            .with_context(|| format!("cannot write {}", data_path.display()))?;
        let pipeline_ref = format!("{NS}/{}", ex.name);
        let (pipeline, artifact) = sources.pipeline(&reg, &pipeline_ref)?;
        let model_name = format!("{NS}/{}-model", ex.name);
        let publish = PublishAs {
            key: reg.key("demo")?,
            key_name: "demo".into(),
            version: None,
            name: model_name,
        };
        let run = Run {
            rt: &rt,
            reg: &reg,
            sources: &sources,
            origin: &pipeline_ref,
            artifact: artifact.as_ref(),
            stop: None,
        };
        let started = Instant::now();
        let data = DataSource::file(&data_path)?;
        let mut bar = Bar::new(&pipeline.pipeline.name);
        let outcome = run.record(&pipeline, &data, None, Some(&publish), &mut bar, None)?;
        let (meta, p) = (outcome.meta, outcome.published);
        let t = &meta.training;
        println!(
            "{:<7} validation accuracy {:.4}  ({} held-out rows; {} + {}; {} epochs in {:.2} s)",
            meta.name,
            meta.val_accuracy().unwrap_or(f32::NAN),
            meta.split.1,
            meta.plugins
                .trainer
                .as_ref()
                .map_or("no trainer", |t| t.name.as_str()),
            meta.plugins.preprocessor.name,
            t.epochs,
            started.elapsed().as_secs_f64(),
        );
        let p = p.expect("the demo publishes every model");
        models.push((p.reference, data_path));
    }

    println!();
    println!(
        "predictions from the published models ({}):",
        models
            .iter()
            .map(|(r, _)| r.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    for (reference, data_path) in &models {
        let artifact = reg.verify_str(reference)?;
        let model = artifacts::load_model(&rt, &reg, &artifact)?;
        let ds = data::load_labeled(data_path, Some(&model.meta.label))?;
        let f = ds.features();
        // A few rows spread over the file.
        let picks: Vec<usize> = (0..4).map(|i| i * ds.rows() / 4 + 7).collect();
        let x: Vec<f32> = picks
            .iter()
            .flat_map(|&r| ds.x[r * f..(r + 1) * f].iter().copied())
            .collect();
        let p = model.predict(rt.device(), x, picks.len())?;
        for ((&row, &label), probs) in picks.iter().zip(&p.labels).zip(&p.probabilities) {
            let truth = ds.y[row];
            println!(
                "  {:<7} row {:>4}: predicted {:<11} p={:.3}  actual {:<11} {}",
                model.meta.name,
                row + 1,
                model.class_name(label),
                probs[label as usize],
                model.class_name(truth),
                if label == truth { "ok" } else { "MISS" }
            );
        }
    }
    super::demo_serve::run(&rt, &reg, &models, args.serve, &args.addr)?;

    let report = reg.audit_verify()?;
    println!();
    println!(
        "audit log OK: {} entries, hash chain and signed checkpoint verified",
        report.entries
    );
    if let Some(out) = &args.out {
        println!(
            "registry kept in {0}; try: TENSORLET_HOME={0} tensorlet predict {1} --input {0}/iris.csv",
            out.display(),
            models[0].0,
        );
    }
    Ok(())
}
