//! `tensorlet promote <model-ref> --to <alias>` and
//! `tensorlet rollback <ns/name> --alias <alias>`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use tensorlet_registry::oci::{self, OciReference};
use tensorlet_registry::{AliasMove, Reference, Registry};
use tensorlet_runtime::eval::{self, Gate};
use tensorlet_runtime::metrics::Requirement;

use crate::artifacts::RegistryArgs;
use crate::common::{self, DeviceArgs};

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
    /// Promote only a version that meets this (repeatable): `r2>=0.45`,
    /// `accuracy>0.9`, `rmse<60`. Checked against the validation metrics
    /// recorded with the version (its kept epoch), or with `--data` against
    /// a fresh evaluation; a refusal is recorded in the audit log.
    #[arg(long = "require", value_name = "METRIC>=VALUE")]
    pub require: Vec<Requirement>,
    /// Labelled rows to evaluate the version on for `--require` (as `tensorlet
    /// eval`).
    #[arg(long, requires = "require")]
    pub data: Option<PathBuf>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: DeviceArgs,
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
    } else {
        println!("{}", m.describe(verb));
    }
    Ok(())
}

/// Checks `--require` before promoting: refused (and audited) when any
/// requirement is missed.
fn gate(reg: &Registry, args: &PromoteArgs) -> Result<()> {
    if args.require.is_empty() {
        return Ok(());
    }
    if args.reference.starts_with("oci://") {
        bail!(
            "--require checks a version in this registry; pull `{}` first and promote it here",
            args.reference
        );
    }
    let rt = common::runtime(args.device.open()?)?;
    let model = RegistryArgs::default()
        .sources()?
        .model(&rt, reg, &args.reference)?;
    let (metrics, source) = eval::metrics_for(&rt, &model, args.data.as_deref())?;
    let gate = Gate {
        reference: &args.reference,
        alias: &args.to,
        require: &args.require,
    };
    Ok(gate.enforce(reg, &metrics, &source)?)
}

pub fn promote(args: PromoteArgs) -> Result<()> {
    let reg = crate::artifacts::open()?;
    gate(&reg, &args)?;
    if args.reference.starts_with("oci://") {
        let r = OciReference::parse(&args.reference)?;
        let selector = r.selected("promote")?;
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
