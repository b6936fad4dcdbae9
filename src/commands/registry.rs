//! `tensorlet registry serve --addr <addr>`

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use tensorlet_runtime::registry::server::{self, ServerConfig};

/// Run a registry server.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: RegistryCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum RegistryCommand {
    /// Serve `$TENSORLET_HOME`'s registry over HTTP. Publishes are accepted
    /// only when signed by a key this registry's trust policy allows for the
    /// namespace.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7070")]
        addr: SocketAddr,
        /// Refuse request bodies larger than this many bytes (413).
        #[arg(long, default_value_t = 64 << 20)]
        max_body_bytes: usize,
    },
}

pub fn execute(args: Args) -> Result<()> {
    match args.command {
        RegistryCommand::Serve {
            addr,
            max_body_bytes,
        } => {
            let reg = Arc::new(crate::artifacts::open()?);
            let listener = std::net::TcpListener::bind(addr)
                .with_context(|| format!("cannot listen on {addr}"))?;
            let local = listener.local_addr()?;
            println!(
                "serving the registry in {} on http://{local} (ctrl-c stops)",
                reg.home().display()
            );
            server::serve_listener(reg, listener, ServerConfig { max_body_bytes })?;
            Ok(())
        }
    }
}
