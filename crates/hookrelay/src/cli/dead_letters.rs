//! `hookrelay dead-letters list|replay|delete`: the dead-letter store of a running
//! sidecar, through its admin API.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use crate::EXIT_USAGE;

/// Where a command finds a running sidecar's admin API: the options `dead-letters` and
/// `deliveries` share.
#[derive(Debug, clap::Args)]
pub(crate) struct AdminArgs {
    /// The sidecar's configuration file (its `admin` address is used).
    #[arg(short = 'c', long = "config", global = true)]
    config: Option<PathBuf>,
    /// The admin address, instead of reading it from the configuration (default: the
    /// configuration's, else 127.0.0.1:9090).
    #[arg(long, global = true)]
    admin: Option<SocketAddr>,
    /// The admin token (default: `HOOKRELAY_ADMIN_TOKEN`, else the configuration's
    /// `admin.token`).
    #[arg(long, global = true)]
    token: Option<String>,
}

impl AdminArgs {
    /// The admin address and token these options give ([`admin_target`]).
    pub(crate) fn target(&self) -> Result<(SocketAddr, Option<String>), String> {
        admin_target(self.config.as_ref(), self.admin, self.token.as_deref())
    }
}

/// Arguments of `hookrelay dead-letters`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    target: AdminArgs,
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
    /// Put a dead letter (by id), or every dead letter of an endpoint, back in its queue.
    /// One of `:unparsed` is run through its route's current normalizer and delivered, or
    /// refused with the reason while it still cannot be normalized.
    Replay {
        /// Dead letter id.
        id: Option<u64>,
        /// Replay every dead letter of this endpoint.
        #[arg(long, conflicts_with = "id")]
        endpoint: Option<String>,
    },
    /// Delete a dead letter by id, or an endpoint's, or those older than a duration.
    Delete {
        /// Dead letter id.
        id: Option<u64>,
        /// Every dead letter of this endpoint (with --older-than: only the old ones).
        #[arg(long, conflicts_with = "id")]
        endpoint: Option<String>,
        /// Only those that became dead letters longer ago than this (`7d`, `12h`).
        #[arg(long, conflicts_with = "id")]
        older_than: Option<String>,
    },
}

/// The admin API's default address, when neither `--admin` nor `-c` gives one.
const DEFAULT_ADMIN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9090);

/// Where the admin API is and its token: from the arguments, the environment, the
/// configuration file, or the defaults, in that order.
pub(crate) fn admin_target(
    config: Option<&PathBuf>,
    admin: Option<SocketAddr>,
    token: Option<&str>,
) -> Result<(SocketAddr, Option<String>), String> {
    let token = token
        .map(str::to_owned)
        .or_else(|| std::env::var("HOOKRELAY_ADMIN_TOKEN").ok());
    let snapshot = match config {
        Some(path) => Some(hookrelay_config::load(path).map_err(|e| e.to_string())?),
        None => None,
    };
    let addr = admin
        .or(snapshot.as_ref().map(|s| s.admin))
        .unwrap_or(DEFAULT_ADMIN);
    let token = token.or_else(|| {
        snapshot
            .as_ref()
            .and_then(|s| s.admin_token.as_ref())
            .map(|t| t.expose().to_owned())
    });
    Ok((addr, token))
}

/// Sends one request to the admin API: its status and body.
pub(crate) fn call(
    addr: SocketAddr,
    token: Option<&str>,
    method: http::Method,
    path: &str,
) -> Result<(http::StatusCode, Bytes), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    runtime.block_on(async {
        let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let mut req = http::Request::builder()
            .method(method)
            .uri(format!("http://{addr}{path}"));
        if let Some(token) = token {
            req = req.header(http::header::AUTHORIZATION, format!("Bearer {token}"));
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = client
            .request(req)
            .await
            .map_err(|e| format!("admin API at {addr}: {}", crate::logs::with_causes(&e)))?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| crate::logs::with_causes(&e))?
            .to_bytes();
        Ok((status, body))
    })
}

/// Runs the command.
pub(crate) fn run(args: &Args) -> ExitCode {
    let (addr, token) = match args.target.target() {
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
        Action::Delete { id: Some(id), .. } => {
            (http::Method::DELETE, format!("/dead-letters/{id}"))
        }
        Action::Delete {
            endpoint,
            older_than,
            ..
        } => {
            if endpoint.is_none() && older_than.is_none() {
                eprintln!("hookrelay dead-letters delete: give an id, --endpoint or --older-than");
                return ExitCode::from(EXIT_USAGE);
            }
            let mut q = form_urlencoded::Serializer::new(String::new());
            if let Some(e) = endpoint {
                q.append_pair("endpoint", e);
            }
            if let Some(o) = older_than {
                q.append_pair("older_than", o);
            }
            (
                http::Method::DELETE,
                format!("/dead-letters?{}", q.finish()),
            )
        }
    };
    let result = call(addr, token.as_deref(), method, &path);
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
