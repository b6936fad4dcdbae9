//! `tensorlet keygen <name>`

use anyhow::Result;

/// Create an ed25519 signing key in `$TENSORLET_HOME/keys/` (the private key
/// file has mode 0600); prints the key id and the public key.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The key's name (letters, digits, `-`, `_`, `.`).
    pub name: String,
}

pub fn execute(args: Args) -> Result<()> {
    let reg = crate::artifacts::open()?;
    let key = reg.keygen(&args.name)?;
    println!(
        "created key `{}` (id {}) in {}",
        args.name,
        key.key_id(),
        reg.keys().dir().display()
    );
    println!("key id {}", key.key_id());
    println!(
        "to trust it: tensorlet trust add {} --namespace <namespace>",
        key.public()
    );
    println!("{}", key.public());
    Ok(())
}
