//! `tensorlet bench instances`: what per-request isolation costs.

use anyhow::Result;
use tensorlet_runtime::bench::instances;

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
    let out = &mut crate::output::Stdout;
    instances::run(&rt, args.iterations, &crate::bundled::plugin, out)
}
