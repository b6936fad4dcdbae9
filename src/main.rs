#![recursion_limit = "256"]
//! The `tensorlet` command line: thin commands over `tensorlet-runtime`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// First, so that its `println!` and `print!` replace std's in every module.
#[macro_use]
mod output;

mod artifacts;
mod bundled;
mod commands;
mod common;

/// mimalloc (see `tensorlet_runtime::alloc`).
#[global_allocator]
static ALLOCATOR: tensorlet_runtime::alloc::Allocator = tensorlet_runtime::alloc::Allocator;

/// Run machine-learning pipelines made of WebAssembly components.
#[derive(Parser)]
#[command(name = "tensorlet", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the bundled pipelines, then predict a few rows.
    Demo(commands::demo::Args),
    /// Train a pipeline as a recorded run; sign and publish the model (or save it as a directory).
    Train(commands::train::Args),
    /// Predict with a model from the registry (or a model directory).
    Predict(commands::predict::Args),
    /// Evaluate a model on labelled data: the task's metrics and a confusion matrix.
    Eval(commands::eval::Args),
    /// Create a signing key.
    Keygen(commands::keygen::Args),
    /// Export or list signing keys.
    Key(commands::key::Args),
    /// Manage the trust policy (which keys may publish in which namespaces).
    Trust(commands::trust::Args),
    /// Sign and publish a plugin component or a pipeline.
    Publish(commands::publish::Args),
    /// List artifacts in the registry.
    List(commands::list::Args),
    /// Show an artifact's manifest.
    Show(commands::show::Args),
    /// Verify an artifact: digests, signatures, trust.
    Verify(commands::verify::Args),
    /// Yank a version.
    Yank(commands::yank::Args),
    /// Point aliases (production, staging, …) at versions.
    Alias(commands::alias::Args),
    /// Verify a model version and point an alias (staging, production, …) at it.
    Promote(commands::promote::PromoteArgs),
    /// Move an alias back to the version it pointed at before.
    Rollback(commands::promote::RollbackArgs),
    /// Inspect, compare and plot training runs.
    Runs(commands::runs::Args),
    /// Register datasets by digest.
    Dataset(commands::dataset::Args),
    /// Read and verify the audit log.
    Audit(commands::audit::Args),
    /// Serve the registry over HTTP.
    Registry(commands::registry::Args),
    /// Push an artifact (and what it pins) to an OCI registry.
    Push(commands::push::Args),
    /// Pull an artifact from an OCI registry (or a tensorlet registry) and verify it.
    Pull(commands::pull::Args),
    /// Cache what aliases point at in a central registry, for serving offline.
    Sync(commands::sync::Args),
    /// List the GPU adapters and which one `--device auto` picks.
    Devices(commands::devices::Args),
    /// Measure the tensor backends (matmul GFLOP/s, training epoch time).
    Bench(commands::bench::Args),
    /// Serve models over HTTP (Open Inference Protocol V2).
    Serve(commands::serve::Args),
    /// Export a model as one standard wasi:http component for other Wasm hosts.
    Export(commands::export::Args),
    /// Serve a wasi:http component (e.g. an export) with wasmtime-wasi-http.
    ServeWasiHttp(commands::serve_wasi_http::Args),
    /// Show how far a served model's inputs drifted from its training data.
    Drift(commands::drift::Args),
    /// Serve the web console: artifacts, lineage, runs, datasets, audit log, serving.
    Ui(commands::ui::Args),
}

fn main() -> ExitCode {
    // SAFETY: the first thing `main` does; no other thread exists yet.
    unsafe { tensorlet_gpu::listing::quiet_driver_probe() };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
                // The TLS verifier logs each failure itself; tensorlet's
                // error already says what failed and what to do.
                tracing_subscriber::EnvFilter::new("warn,rustls_platform_verifier=off")
            }),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => commands::demo::execute(args),
        Command::Train(args) => commands::train::execute(args),
        Command::Predict(args) => commands::predict::execute(args),
        Command::Eval(args) => commands::eval::execute(args),
        Command::Keygen(args) => commands::keygen::execute(args),
        Command::Key(args) => commands::key::execute(args),
        Command::Trust(args) => commands::trust::execute(args),
        Command::Publish(args) => commands::publish::execute(args),
        Command::List(args) => commands::list::execute(args),
        Command::Show(args) => commands::show::execute(args),
        Command::Verify(args) => commands::verify::execute(args),
        Command::Yank(args) => commands::yank::execute(args),
        Command::Alias(args) => commands::alias::execute(args),
        Command::Promote(args) => commands::promote::promote(args),
        Command::Rollback(args) => commands::promote::rollback(args),
        Command::Runs(args) => commands::runs::execute(args),
        Command::Dataset(args) => commands::dataset::execute(args),
        Command::Audit(args) => commands::audit::execute(args),
        Command::Registry(args) => commands::registry::execute(args),
        Command::Push(args) => commands::push::execute(args),
        Command::Pull(args) => commands::pull::execute(args),
        Command::Sync(args) => commands::sync::execute(args),
        Command::Devices(args) => commands::devices::execute(args),
        Command::Bench(args) => commands::bench::execute(args),
        Command::Serve(args) => commands::serve::execute(args),
        Command::Export(args) => commands::export::execute(args),
        Command::ServeWasiHttp(args) => commands::serve_wasi_http::execute(args),
        Command::Drift(args) => commands::drift::execute(args),
        Command::Ui(args) => commands::ui::execute(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}
