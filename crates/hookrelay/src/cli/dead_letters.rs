//! `hookrelay dead-letters list|replay`: the dead-letter store of a running sidecar,
//! through its admin API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::EXIT_USAGE;

/// Arguments of `hookrelay dead-letters`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// The sidecar's configuration file (its `admin` address is used).
    #[arg(short = 'c', long = "config", global = true)]
    config: Option<PathBuf>,
    /// The admin address, instead of reading it from the configuration.
    #[arg(long, global = true)]
    admin: Option<SocketAddr>,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List dead letters as JSON, one a line.
    List {
        /// Only this endpoint's (`:unparsed`: the provider events that could not be
        /// normalized).
        #[arg(long)]
        endpoint: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Put a dead letter (by id), or every dead letter of an endpoint, back in its queue
    /// (refused for `:unparsed`: no endpoint takes an event that could not be normalized).
    Replay {
        /// Dead letter id.
        id: Option<u64>,
        /// Replay every dead letter of this endpoint.
        #[arg(long, conflicts_with = "id")]
        endpoint: Option<String>,
    },
}

fn admin_addr(args: &Args) -> Result<SocketAddr, String> {
    if let Some(a) = args.admin {
        return Ok(a);
    }
    let path = args.config.as_ref().ok_or("give -c FILE or --admin ADDR")?;
    let snapshot = hookrelay_config::load(path).map_err(|e| e.to_string())?;
    Ok(snapshot.admin)
}

/// Runs the command.
pub(crate) fn run(args: &Args) -> ExitCode {
    let addr = match admin_addr(args) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hookrelay dead-letters: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let (method, path) = match &args.action {
        Action::List { endpoint, limit } => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            if let Some(e) = endpoint {
                q.append_pair("endpoint", e);
            }
            q.append_pair("limit", &limit.to_string());
            (http::Method::GET, format!("/dead-letters?{}", q.finish()))
        }
        Action::Replay { id: Some(id), .. } => {
            (http::Method::POST, format!("/dead-letters/{id}/replay"))
        }
        Action::Replay {
            endpoint: Some(e), ..
        } => {
            let q = form_urlencoded::Serializer::new(String::new())
                .append_pair("endpoint", e)
                .finish();
            (http::Method::POST, format!("/dead-letters/replay?{q}"))
        }
        Action::Replay { .. } => {
            eprintln!("hookrelay dead-letters replay: give an id or --endpoint");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("hookrelay dead-letters: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let req = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"))
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("admin {addr}: {e}"))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        Ok::<_, String>((status, body))
    });
    match result {
        Ok((status, body)) => {
            let text = String::from_utf8_lossy(&body);
            if status.is_success() {
                match serde_json::from_slice::<serde_json::Value>(&body) {
                    Ok(serde_json::Value::Array(items)) => {
                        for item in items {
                            println!("{item}");
                        }
                    }
                    _ => println!("{}", text.trim_end()),
                }
                ExitCode::SUCCESS
            } else {
                eprintln!("hookrelay dead-letters: {status}: {}", text.trim_end());
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("hookrelay dead-letters: {e}");
            ExitCode::from(1)
        }
    }
}
