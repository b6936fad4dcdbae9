//! `tensorlet registry serve --addr <addr> [--tls-cert <pem> --tls-key <pem>]`

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use tensorlet_registry::server::{self, ServerConfig, TlsIdentity};

/// Run a registry server.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: RegistryCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum RegistryCommand {
    /// Serve `$TENSORLET_HOME`'s registry over HTTP, or HTTPS with
    /// --tls-cert and --tls-key. Publishes are accepted only when signed by
    /// a key this registry's trust policy allows for the namespace.
    Serve {
        /// Address to listen on.
        #[arg(long, default_value = "127.0.0.1:7070")]
        addr: SocketAddr,
        /// Refuse request bodies larger than this many bytes (413).
        #[arg(long, default_value_t = 64 << 20)]
        max_body_bytes: usize,
        /// Serve HTTPS with this certificate (PEM: the server's certificate,
        /// then any intermediates); needs --tls-key.
        #[arg(long, requires = "tls_key", value_name = "PEM")]
        tls_cert: Option<PathBuf>,
        /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
        #[arg(long, requires = "tls_cert", value_name = "PEM")]
        tls_key: Option<PathBuf>,
    },
}

pub fn execute(args: Args) -> Result<()> {
    match args.command {
        RegistryCommand::Serve {
            addr,
            max_body_bytes,
            tls_cert,
            tls_key,
        } => {
            let tls = match (&tls_cert, &tls_key) {
                (Some(cert), Some(key)) => Some(TlsIdentity::from_pem_files(cert, key)?),
                _ => None,
            };
            let scheme = if tls.is_some() { "https" } else { "http" };
            let reg = Arc::new(crate::artifacts::open()?);
            let listener = std::net::TcpListener::bind(addr)
                .with_context(|| format!("cannot listen on {addr}"))?;
            let local = listener.local_addr()?;
            println!(
                "serving the registry in {} on {scheme}://{local} (ctrl-c stops)",
                reg.home().display()
            );
            server::serve_listener(
                reg,
                listener,
                ServerConfig {
                    max_body_bytes,
                    tls,
                },
            )?;
            Ok(())
        }
    }
}
