//! `tensorlet alias set <ns/name> <alias> <version>`

use anyhow::Result;

/// Manage aliases (`production`, `staging`, …) that point at versions.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: AliasCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AliasCommand {
    /// Point an alias at a version (moving it if it exists).
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
            let previous = reg.alias_set(&name, &alias, &version)?;
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
