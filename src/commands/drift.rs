//! `tensorlet drift <model-ref> --server <url>`

use anyhow::{Context, Result, bail};
use tensorlet_runtime::report::{drift_scores, drift_verdict};
use tensorlet_runtime::serve::registry::served_name;

/// Show how far a served model's inputs have drifted from its training data.
///
/// The score is the mean over features of |mean of served inputs − training
/// mean| / training standard deviation: 0 when served inputs look like the
/// training data, about 1 when features are off by a standard deviation.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model (`ns/name@alias` or its served name).
    pub model: String,
    /// The server's base URL (`http://…`, or `https://…` behind a TLS proxy).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub server: String,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn execute(args: Args) -> Result<()> {
    let url = format!("{}/metrics", args.server.trim_end_matches('/'));
    let text = crate::common::http_client()?
        .get(&url)
        .and_then(|r| r.error_for_status())
        .context("cannot read the server's metrics")?
        .text();
    let name = served_name(&args.model);
    let scores = drift_scores(&text, &name);
    if scores.is_empty() {
        bail!(
            "{} reports no drift score for `{name}`: it is not served there, has answered no \
             request yet, or its model carries no training statistics",
            args.server
        );
    }
    for (version, score) in scores {
        if args.json {
            println!(
                "{}",
                serde_json::json!({ "model": name, "version": version, "drift": score })
            );
        } else {
            let verdict = drift_verdict(score);
            println!("{name} {version}: drift {score:.3} ({verdict})");
        }
    }
    Ok(())
}
