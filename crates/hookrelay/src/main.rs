//! The `hookrelay` command: the sidecar and its tools.
//!
//! Exit codes: 0 success; 2 a body that cannot be understood; 3 a signature check failed;
//! 64 a usage or configuration error.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// The data flow: a callback comes in (`ingest`), is delivered (`deliver`) over `net`;
// `reload` applies config changes, `admin` answers operators, `run` wires them together,
// `cli` holds the other commands.
mod admin;
mod cli;
mod clock;
mod deliver;
mod ingest;
mod logs;
mod metrics;
mod net;
mod reload;
mod run;
mod telemetry;
mod ui;

use cli::{dead_letters, deliveries, normalize, validate};

/// Verify, normalize and deliver provider callbacks.
#[derive(Debug, Parser)]
#[command(name = "hookrelay", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the sidecar.
    Run(run::Args),
    /// Normalize one recorded callback read from stdin and print its payloads, one JSON
    /// object per line.
    Normalize(normalize::Args),
    /// Check a configuration file: exit 0, or 64 with every error and its line.
    Validate(validate::Args),
    /// Print the JSON Schema of the configuration file (for editors).
    Schema,
    /// List or replay the dead letters of a running sidecar.
    #[command(subcommand_required = true)]
    DeadLetters(dead_letters::Args),
    /// Show where events went: the delivery history of a running sidecar.
    #[command(subcommand_required = true)]
    Deliveries(deliveries::Args),
}

// glibc's allocator spent a fifth of the sidecar's CPU under load (arena contention between
// Pingora's threads and the store's writer); mimalloc does not. Its v2 line (the crate's
// `v2` feature) takes about 4 % less CPU per callback than v3 here, measured side by side
// with scripts/load's harness; glibc about 15 % more. Built without transparent huge pages
// (`no_thp`): the same throughput, an idle RSS of 15 MiB instead of 41 and a lower p99,
// since freed memory is no longer faulted back in 2 MiB at a time.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for a usage or configuration error (EX_USAGE).
const EXIT_USAGE: u8 = 64;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_USAGE } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    match cli.command {
        Command::Run(args) => run::run(&args),
        Command::DeadLetters(args) => dead_letters::run(&args),
        Command::Deliveries(args) => deliveries::run(&args),
        Command::Normalize(args) => normalize::run(&args),
        Command::Validate(args) => validate::run(&args),
        Command::Schema => validate::schema(),
    }
}
