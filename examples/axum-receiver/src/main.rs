//! `axum-receiver SETTINGS.json`: receives signed Twilio and Meta WhatsApp callbacks and
//! prints each normalized event as a JSON line; SIGHUP reloads the settings.

use std::process::ExitCode;

use axum_receiver::{Receiver, Settings};
use hookrelay_core::payload::{self, PayloadOptions};

fn read(path: &str) -> Result<Settings, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| format!("{path}: {e}"))
}

#[tokio::main]
async fn main() -> ExitCode {
    let Some(path) = std::env::args().nth(1) else {
        eprintln!("usage: axum-receiver SETTINGS.json");
        return ExitCode::from(64);
    };
    let settings = match read(&path) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(64);
        }
    };
    let receiver = match Receiver::new(&settings) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{path}: {e}");
            return ExitCode::from(64);
        }
    };
    let (tx, mut events) = tokio::sync::mpsc::unbounded_channel();
    let listener = match tokio::net::TcpListener::bind(&settings.listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {}: {e}", settings.listen);
            return ExitCode::from(1);
        }
    };
    tokio::spawn(async move {
        while let Some(event) = events.recv().await {
            // The payload the sidecar would deliver for it.
            let payload = payload::to_bytes(&event, &PayloadOptions::default());
            println!("{}", String::from_utf8_lossy(&payload));
        }
    });
    let reloader = receiver.clone();
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            match read(&path).map(|s| reloader.reload(&s)) {
                Ok(Ok(())) => eprintln!("settings reloaded"),
                Ok(Err(e)) => eprintln!("settings refused, the old ones stay: {e}"),
                Err(e) => eprintln!("settings refused, the old ones stay: {e}"),
            }
        }
    });
    eprintln!("listening on {}", settings.listen);
    match axum::serve(listener, receiver.router(tx)).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::from(1)
        }
    }
}
