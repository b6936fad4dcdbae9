//! `tensorlet verify <ref>`

use anyhow::Result;

use crate::artifacts::RegistryArgs;

/// Verify an artifact and everything it pins: digests, signatures, trust.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// `ns/name`, `ns/name@1.2.0`, `ns/name@alias` or `ns/name@sha256:…`.
    pub reference: String,
    #[command(flatten)]
    pub registry: RegistryArgs,
}

pub fn execute(args: Args) -> Result<()> {
    let reg = crate::artifacts::open()?;
    let a = args.registry.sources()?.fetch(&reg, &args.reference)?;
    let mut pins = 0;
    let mut queue: Vec<_> = a.manifest().depends.values().cloned().collect();
    while let Some(pin) = queue.pop() {
        let dep = reg.verify_pin(&pin)?;
        queue.extend(dep.manifest().depends.values().cloned());
        pins += 1;
    }
    println!(
        "OK {} ({}) {} signed by key {}; {} blob(s) and {pins} pinned artifact(s) verified",
        a.reference(),
        a.kind(),
        a.digest(),
        a.key_id(),
        a.manifest().blobs.len(),
    );
    Ok(())
}
