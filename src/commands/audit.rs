//! `tensorlet audit log [--json]`, `tensorlet audit verify`

use anyhow::Result;

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
    /// Verify the hash chain, the node signatures and the signed checkpoint;
    /// exits non-zero naming the first bad entry.
    Verify,
}

pub fn execute(args: Args) -> Result<()> {
    let reg = crate::artifacts::open()?;
    match args.command {
        AuditCommand::Log { json } => {
            let log = reg.audit_log()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&log)?);
            } else {
                for e in log {
                    println!(
                        "{:>5} {} {:<16} {} {}",
                        e.seq, e.time, e.action, e.subject, e.detail
                    );
                }
            }
        }
        AuditCommand::Verify => {
            let r = reg.audit_verify()?;
            println!(
                "OK {} entries; hash chain, node signatures and the checkpoint at entry {} verify",
                r.entries, r.checkpoint
            );
        }
    }
    Ok(())
}
