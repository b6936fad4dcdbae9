//! `tensorlet trust add|list|remove`

use anyhow::Result;
use tensorlet_registry::PublicKey;
use tensorlet_runtime::report::listing::TrustTable;

/// Manage the trust policy: which public keys may publish in which namespaces.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: TrustCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum TrustCommand {
    /// Trust a public key for one or more namespaces.
    Add {
        /// `ed25519:<hex>`, as printed by `tensorlet keygen` / `key export`.
        public_key: String,
        /// A namespace the key may publish in (repeat for several; `*` for all).
        #[arg(long = "namespace", required = true)]
        namespaces: Vec<String>,
    },
    /// List trusted keys and their namespaces.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Stop trusting a key (by key id or public key).
    Remove {
        /// Key id or `ed25519:<hex>`.
        key: String,
    },
}

pub fn execute(args: Args) -> Result<()> {
    let reg = crate::artifacts::open()?;
    match args.command {
        TrustCommand::Add {
            public_key,
            namespaces,
        } => {
            let key = PublicKey::parse(&public_key)?;
            let e = reg.trust_add(&key, &namespaces)?;
            println!(
                "trusted key {} for namespace(s) {}",
                e.key_id,
                e.namespaces.join(", ")
            );
        }
        TrustCommand::List { json } => {
            let all = reg.trust_list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&all)?);
            } else {
                print!("{}", TrustTable(&all));
            }
        }
        TrustCommand::Remove { key } => {
            let e = reg.trust_remove(&key)?;
            println!(
                "removed key {} (was trusted for {})",
                e.key_id,
                e.namespaces.join(", ")
            );
        }
    }
    Ok(())
}
