//! `tensorlet key export <name>`, `tensorlet key list`

use anyhow::Result;
use tensorlet_runtime::report::listing::KeyRow;

/// Inspect signing keys.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: KeyCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum KeyCommand {
    /// Print a key's id and public key (the public key is the last line).
    Export {
        /// The key's name.
        name: String,
    },
    /// List the signing keys in `$TENSORLET_HOME/keys/`.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

pub fn execute(args: Args) -> Result<()> {
    let reg = crate::artifacts::open()?;
    match args.command {
        KeyCommand::Export { name } => {
            let key = reg.key(&name)?;
            println!("key id {}", key.key_id());
            println!("{}", key.public());
        }
        KeyCommand::List { json } => {
            let mut rows = Vec::new();
            for name in reg.keys().list()? {
                let key = reg.key(&name)?;
                rows.push(KeyRow {
                    key_id: key.key_id(),
                    public_key: key.public().to_string(),
                    name,
                });
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in rows {
                    println!("{r}");
                }
            }
        }
    }
    Ok(())
}
