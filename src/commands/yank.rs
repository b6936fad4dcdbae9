//! `tensorlet yank <ref>`

use anyhow::Result;
use tensorlet_registry::Reference;

/// Yank a version: it is never chosen as the latest, but still runs when
/// named exactly. Operates on the local registry (on a server's host, run it
/// there).
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The version to yank, e.g. `ns/name@1.2.0`.
    pub reference: String,
}

pub fn execute(args: Args) -> Result<()> {
    let reg = crate::artifacts::open()?;
    let s = reg.yank(&Reference::parse(&args.reference)?)?;
    println!("yanked {} ({})", s.reference(), s.digest);
    Ok(())
}
