//! `tensorlet alias set <ns/name> <alias> <version>`

use anyhow::{Context, Result};

/// Manage aliases (`production`, `staging`, …) that point at versions.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: AliasCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AliasCommand {
    /// Point an alias at a version (moving it if it exists), once the version
    /// verifies against the trust policy.
    Set {
        /// `namespace/name`.
        name: String,
        /// The alias, e.g. `production`.
        alias: String,
        /// The version it should point at.
        version: String,
    },
}

pub fn execute(args: Args) -> Result<()> {
    let reg = crate::artifacts::open()?;
    match args.command {
        AliasCommand::Set {
            name,
            alias,
            version,
        } => {
            // The version must verify against the trust policy, as it will
            // have to when it is served.
            let previous = reg
                .alias_set(&name, &alias, &version)
                .with_context(|| format!("cannot point {name}@{alias} at {version}"))?;
            match previous {
                Some(p) if p != version => {
                    println!("moved {name}@{alias} from {p} to {version}")
                }
                Some(_) => println!("{name}@{alias} already points at {version}"),
                None => println!("{name}@{alias} now points at {version}"),
            }
        }
    }
    Ok(())
}
