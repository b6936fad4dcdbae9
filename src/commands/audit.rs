//! `tensorlet audit log [--json]`, `tensorlet audit verify [--checkpoint <file>]`,
//! `tensorlet audit checkpoint [--out <file>] [--registry <url>]`

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// Read and verify the audit log.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    pub command: AuditCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Print the audit log, oldest first.
    Log {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify the hash chain, the node signatures, the signed checkpoint and
    /// that the log accounts for every index row; exits non-zero naming the
    /// first bad entry or what is inconsistent.
    Verify {
        /// Also check the log against a checkpoint kept elsewhere (written by
        /// `tensorlet audit checkpoint`): a log shorter than it, restarted,
        /// or with another entry at its position fails. Repeatable.
        #[arg(long, value_name = "FILE")]
        checkpoint: Vec<PathBuf>,
    },
    /// Print (or write) a signed checkpoint of the log's head, to keep off
    /// this machine; `audit verify --checkpoint` checks the log against it
    /// later. Only a log that verifies gets one.
    Checkpoint {
        /// Write it to this file (atomically) instead of printing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
        /// Fetch the checkpoint of this registry server's log instead
        /// (`http://host:port`), to witness it.
        #[arg(long, value_name = "URL")]
        registry: Option<String>,
    },
}

pub fn execute(args: Args) -> Result<()> {
    match args.command {
        AuditCommand::Log { json } => {
            let log = crate::artifacts::open()?.audit_log()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&log)?);
            } else {
                for e in log {
                    println!("{}", e.line());
                }
            }
        }
        AuditCommand::Verify { checkpoint } => {
            let reg = crate::artifacts::open()?;
            let external: Vec<&Path> = checkpoint.iter().map(PathBuf::as_path).collect();
            for line in reg.audit_verify_with(&external)?.lines(&external) {
                println!("{line}");
            }
        }
        AuditCommand::Checkpoint { out, registry } => {
            let cp = match registry.as_deref().filter(|r| !r.is_empty()) {
                Some(url) => crate::artifacts::remote(url)?
                    .audit_checkpoint()
                    .with_context(|| format!("cannot fetch the audit checkpoint of {url}"))?,
                None => crate::artifacts::open()?.audit_checkpoint()?,
            };
            match out {
                None => println!("{}", String::from_utf8(cp.to_canonical())?),
                Some(path) => {
                    cp.write_to(&path)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    println!(
                        "wrote the checkpoint at entry {} (key {}) to {}",
                        cp.seq,
                        cp.key_id,
                        path.display()
                    );
                }
            }
        }
    }
    Ok(())
}
