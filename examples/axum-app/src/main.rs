//! `axum-app CONFIG.json`: serves until Ctrl-C, reloading the file when it changes.

use std::path::PathBuf;
use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    let Some(path) = std::env::args_os().nth(1).map(PathBuf::from) else {
        eprintln!("usage: axum-app CONFIG.json");
        return ExitCode::from(64);
    };
    let running = match axum_app::start(path).await {
        Ok(running) => running,
        Err(err) => {
            eprintln!("{err}");
            return ExitCode::from(64);
        }
    };
    println!("listening on http://{}", running.addr());
    let _ = tokio::signal::ctrl_c().await;
    match running.shutdown().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("server failed: {err}");
            ExitCode::FAILURE
        }
    }
}
