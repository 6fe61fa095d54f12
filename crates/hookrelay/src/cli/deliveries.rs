//! `hookrelay deliveries list|show|event`: the delivery history of a running sidecar,
//! through its admin API.

use std::process::ExitCode;

use super::dead_letters::{AdminArgs, call};
use crate::EXIT_USAGE;

/// Arguments of `hookrelay deliveries`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    #[command(flatten)]
    target: AdminArgs,
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// List deliveries, newest first, as JSON, one a line (without payloads).
    List {
        /// Only this endpoint's.
        #[arg(long)]
        endpoint: Option<String>,
        /// Only those in this state: queued, in_flight, delivered, dead, replayed.
        #[arg(long)]
        state: Option<String>,
        /// Only those received since: a duration ago (`15m`, `2h`), an RFC 3339 time or
        /// epoch milliseconds.
        #[arg(long)]
        since: Option<String>,
        /// Only those older than this delivery id (the `next` a list printed).
        #[arg(long)]
        before: Option<u64>,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show the deliveries with this `webhook-id` (one per endpoint): payload, state and
    /// every attempt, as JSON, one a line.
    Show {
        /// The `webhook-id` header the endpoint got (the event's idempotency key).
        webhook_id: String,
        /// Only the delivery to this endpoint.
        #[arg(long)]
        endpoint: Option<String>,
    },
    /// Show every delivery of one provider event, across endpoints, as JSON, one a line.
    Event {
        /// The payload's `idempotency_key`.
        key: String,
    },
}

/// `text` as one path segment.
fn segment(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// Runs the command.
pub(crate) fn run(args: &Args) -> ExitCode {
    let (addr, token) = match args.target.target() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("hookrelay deliveries: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let path = match &args.action {
        Action::List {
            endpoint,
            state,
            since,
            before,
            limit,
        } => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            for (name, value) in [
                ("endpoint", endpoint.clone()),
                ("state", state.clone()),
                ("since", since.clone()),
                ("before", before.map(|b| b.to_string())),
                ("limit", Some(limit.to_string())),
            ] {
                if let Some(value) = value {
                    q.append_pair(name, &value);
                }
            }
            format!("/deliveries?{}", q.finish())
        }
        Action::Show {
            webhook_id,
            endpoint,
        } => {
            let mut path = format!("/deliveries/{}", segment(webhook_id));
            if let Some(e) = endpoint {
                let q = form_urlencoded::Serializer::new(String::new())
                    .append_pair("endpoint", e)
                    .finish();
                path = format!("{path}?{q}");
            }
            path
        }
        Action::Event { key } => format!("/events/{}", segment(key)),
    };
    match call(addr, token.as_deref(), http::Method::GET, &path) {
        Ok((status, body)) if status.is_success() => {
            let value: serde_json::Value = match serde_json::from_slice(&body) {
                Ok(v) => v,
                Err(e) => {
                    eprintln!(
                        "hookrelay deliveries: the admin API answered something else than JSON: {e}"
                    );
                    return ExitCode::from(1);
                }
            };
            if let Some(items) = value.get("deliveries").and_then(|d| d.as_array()) {
                for item in items {
                    println!("{item}");
                }
            }
            if let Some(next) = value.get("next").and_then(serde_json::Value::as_u64) {
                eprintln!("more: add --before {next}");
            }
            ExitCode::SUCCESS
        }
        Ok((status, body)) => {
            eprintln!(
                "hookrelay deliveries: {status}: {}",
                String::from_utf8_lossy(&body).trim_end()
            );
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("hookrelay deliveries: {e}");
            ExitCode::from(1)
        }
    }
}
