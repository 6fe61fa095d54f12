//! `hookrelay validate` and `hookrelay schema`: the configuration file, checked or described.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use crate::EXIT_USAGE;

/// Arguments of `hookrelay validate`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The configuration file.
    #[arg(short = 'c', long = "config", value_name = "FILE")]
    config: PathBuf,
}

/// Checks the file: exit 0 (warnings on stderr), or 64 with every error, one a line, as
/// `FILE:LINE:COL: path: message`.
pub(crate) fn run(args: &Args) -> ExitCode {
    match hookrelay_config::load(&args.config) {
        Ok(snapshot) => {
            let file = args.config.display();
            for w in &snapshot.warnings {
                eprintln!("{file}:{w} (warning)");
            }
            println!(
                "{file}: ok ({} callback route(s), {} endpoint(s), sha256 {})",
                snapshot.routes.len(),
                snapshot.endpoints.len(),
                snapshot.hash
            );
            ExitCode::SUCCESS
        }
        Err(errors) => {
            eprintln!("{errors}");
            eprintln!(
                "hookrelay validate: {} error(s) in {}",
                errors.len(),
                args.config.display()
            );
            ExitCode::from(EXIT_USAGE)
        }
    }
}

/// Prints the JSON Schema of the configuration file.
pub(crate) fn schema() -> ExitCode {
    match serde_json::to_string_pretty(&hookrelay_config::json_schema()) {
        Ok(text) => {
            // A closed pipe (`| head`) is not an error worth a panic.
            let _ = writeln!(std::io::stdout().lock(), "{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("hookrelay schema: {e}");
            ExitCode::FAILURE
        }
    }
}
