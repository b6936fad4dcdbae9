//! `tensorlet bench instances`: what per-request isolation costs.

use anyhow::Result;
use tensorlet_runtime::bench;

use crate::bundled;
use crate::common::{self, DeviceArgs};

/// Time `Store::new` + `InstancePre::instantiate` (what every plugin call pays
/// for its fresh sandbox), and a whole warm call for comparison.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Instances to create per plugin.
    #[arg(long, default_value_t = 20_000)]
    pub iterations: u32,
    #[command(flatten)]
    pub device: DeviceArgs,
}

pub fn execute(args: Args) -> Result<()> {
    let rt = common::runtime(args.device.open()?)?;
    // Bundled plugins are loaded through a throwaway registry's audited
    // unsigned path, so the bench leaves the real audit log alone.
    let scratch = tempfile::tempdir()?;
    let reg = tensorlet_registry::Registry::open(scratch.path())?;
    let n = args.iterations.max(1);
    println!("fresh instance per call (pooling allocator), {n} iterations each:");
    for name in ["standardize", "softmax-regression", "mlp"] {
        let bytes = bundled::plugin(name).expect("bundled plugin").to_vec();
        let component = reg.allow_unsigned(name, bytes)?;
        let per = bench::instantiation(&rt.load(&component)?, n)?;
        println!("  {name:<20} {:>7.2} µs per instance", per * 1e6);
    }

    // A whole warm request's compute for iris-sized input (2 rows, 4 features,
    // 3 classes): standardize.transform + softmax-regression.predict, each in
    // its own fresh instance, as the server runs them.
    let dev = rt.device();
    let load = |name: &str| -> Result<tensorlet_runtime::Plugin> {
        let bytes = bundled::plugin(name).expect("bundled plugin").to_vec();
        Ok(rt.load(&reg.allow_unsigned(name, bytes)?)?)
    };
    let (pre, pred) = (load("standardize")?, load("softmax-regression")?);
    let x = dev.from_vec(&[2, 4], vec![5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3])?;
    let state = pre.fit("{}", &x)?;
    let params = vec![
        ("w".to_string(), dev.fill(&[4, 3], 0.1)?),
        ("b".to_string(), dev.fill(&[3], 0.0)?),
    ];
    let per = bench::per_call(n, || -> Result<()> {
        let xt = pre.transform("{}", &state, &x)?;
        pred.predict("{}", &params, &xt)?;
        Ok(())
    })?;
    println!(
        "  a request's compute (transform + predict, 2 rows): {:.2} µs",
        per * 1e6
    );
    Ok(())
}
