//! The `tensorlet` command line: thin commands over `tensorlet-runtime`.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bundled;
mod commands;
mod common;

/// Run machine-learning pipelines made of WebAssembly components.
#[derive(Parser)]
#[command(name = "tensorlet", version, about, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train the bundled iris and digits pipelines, then predict a few rows.
    Demo(commands::demo::Args),
    /// Train a pipeline on a CSV file and save the model.
    Train(commands::train::Args),
    /// Predict with a saved model.
    Predict(commands::predict::Args),
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => commands::demo::execute(args),
        Command::Train(args) => commands::train::execute(args),
        Command::Predict(args) => commands::predict::execute(args),
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
