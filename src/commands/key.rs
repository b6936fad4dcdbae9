//! `tensorlet key export <name>`, `tensorlet key list`

use anyhow::Result;

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
                rows.push(serde_json::json!({
                    "name": name, "key_id": key.key_id(), "public_key": key.public().to_string(),
                }));
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                for r in rows {
                    println!(
                        "{:<16} {}  {}",
                        r["name"].as_str().unwrap_or(""),
                        r["key_id"].as_str().unwrap_or(""),
                        r["public_key"].as_str().unwrap_or("")
                    );
                }
            }
        }
    }
    Ok(())
}
