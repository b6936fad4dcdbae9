//! `tensorlet promote <model-ref> --to <alias>` and
//! `tensorlet rollback <ns/name> --alias <alias>`.

use anyhow::{Context, Result};
use tensorlet_runtime::registry::oci::{self, OciReference};
use tensorlet_runtime::registry::{AliasMove, Reference};

/// Point an alias (`staging`, `production`, …) at a model version, after
/// verifying it.
#[derive(Debug, clap::Args)]
pub struct PromoteArgs {
    /// The version to promote: `ns/name@1.2.0`, `ns/name@alias`,
    /// `ns/name@sha256:…` (a bare `ns/name` means its latest version); or a
    /// version in an OCI registry, `oci://host[/prefix]/ns/name:1.2.0`,
    /// whose alias tag then moves there.
    pub reference: String,
    /// The alias to move, e.g. `staging` or `production`.
    #[arg(long)]
    pub to: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// Move an alias back to the version it pointed at before its latest move.
#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// `ns/name`.
    pub name: String,
    /// The alias to move back.
    #[arg(long)]
    pub alias: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

fn report(m: &AliasMove, json: bool, verb: &str) -> Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(m)?);
        return Ok(());
    }
    match &m.from {
        Some(from) if from == &m.to => {
            println!("{}@{} already points at {}", m.name, m.alias, m.to)
        }
        Some(from) => println!(
            "{verb} {}@{}: {from} -> {} ({})",
            m.name, m.alias, m.to, m.digest
        ),
        None => println!(
            "{verb} {}@{}: (unset) -> {} ({})",
            m.name, m.alias, m.to, m.digest
        ),
    }
    Ok(())
}

pub fn promote(args: PromoteArgs) -> Result<()> {
    let reg = crate::artifacts::open()?;
    if args.reference.starts_with("oci://") {
        let r = OciReference::parse(&args.reference)?;
        let Some(selector) = &r.selector else {
            anyhow::bail!(
                "`{}` names no version; promote a version tag, e.g. `{r}:1.2.0`",
                args.reference
            );
        };
        let m = oci::promote(&reg, &r.remote, &r.name, selector, &args.to)
            .with_context(|| format!("cannot promote {}", args.reference))?;
        return report(&m, args.json, &format!("promoted at {}", r.remote.url()));
    }
    // Only what verifies against this node's trust policy is promoted: the
    // registry verifies the version in the transaction that moves the alias.
    let m = Reference::parse(&args.reference)
        .and_then(|r| reg.promote(&r, &args.to))
        .with_context(|| format!("cannot promote {}", args.reference))?;
    report(&m, args.json, "promoted")
}

pub fn rollback(args: RollbackArgs) -> Result<()> {
    if args.name.starts_with("oci://") {
        anyhow::bail!(
            "an OCI registry keeps no history of a tag, so there is nothing to roll back to; \
             promote the earlier version instead: `tensorlet promote {}:<version> --to {}` \
             (the audit log's `oci.promote` entries say what the tag pointed at)",
            args.name.trim_end_matches('/'),
            args.alias
        );
    }
    let reg = crate::artifacts::open()?;
    let m = reg.rollback(&args.name, &args.alias)?;
    report(&m, args.json, "rolled back")
}
