//! `hookrelay normalize`: one recorded callback in, its payloads out.

use std::io::{Read, Write};
use std::process::ExitCode;
use std::sync::Arc;

use bytes::Bytes;
use hookrelay_core::CallbackRequest;
use hookrelay_core::payload::{Format, PayloadOptions, render};
use hookrelay_core::provider::{Context, Provider, Verifier, VerifyOptions, VerifySettings};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};

use crate::EXIT_USAGE;
use crate::clock::now_ms;

/// Exit code for a body that cannot be understood.
const EXIT_BAD_BODY: u8 = 2;
/// Exit code for a failed signature check.
const EXIT_BAD_SIGNATURE: u8 = 3;
/// Largest body read from stdin.
const MAX_BODY: u64 = 64 * 1024 * 1024;

/// Arguments of `hookrelay normalize`.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Provider id: sendgrid, mailgun, ses, postmark, twilio, vonage, plivo,
    /// meta_whatsapp, gupshup, infobip, sinch, telnyx, messagebird, sparkpost, mandrill,
    /// mailjet, brevo, resend, or generic (with --mapping).
    #[arg(long)]
    provider: String,
    /// Content type of the body, as the provider sent it (default: the provider's own).
    #[arg(long)]
    content_type: Option<String>,
    /// HTTP method of the callback.
    #[arg(long, default_value = "POST", value_parser = ["GET", "POST"])]
    method: String,
    /// The public URL the provider called, with its query string.
    #[arg(long)]
    url: Option<String>,
    /// A request header, `Name: value` (repeatable).
    #[arg(long = "header", value_name = "NAME: VALUE")]
    headers: Vec<String>,
    /// A verification setting `key=value` (repeatable); when given, the signature is checked.
    #[arg(long = "verify", value_name = "KEY=VALUE")]
    verify: Vec<String>,
    /// Payload format.
    #[arg(long, default_value = "suprsend", value_parser = ["suprsend", "standard"])]
    format: String,
    /// Field mapping of a generic provider (a JSON file), for `--provider generic`.
    #[arg(long)]
    mapping: Option<std::path::PathBuf>,
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    eprintln!("hookrelay normalize: {msg}");
    ExitCode::from(EXIT_USAGE)
}

fn provider(args: &Args) -> Result<Provider, String> {
    if args.provider == "generic" {
        let path = args
            .mapping
            .as_ref()
            .ok_or("--provider generic needs --mapping FILE")?;
        let text = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let spec: hookrelay_core::provider::generic::Spec =
            serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        return Ok(Provider::Generic(Arc::new(spec)));
    }
    Provider::builtin(&args.provider).ok_or_else(|| {
        format!(
            "unknown provider {:?} (known: {}, generic)",
            args.provider,
            Provider::BUILTIN.join(", ")
        )
    })
}

fn request(args: &Args, body: Vec<u8>) -> Result<CallbackRequest, String> {
    let method = Method::from_bytes(args.method.as_bytes()).map_err(|e| e.to_string())?;
    let uri: Uri = match &args.url {
        Some(u) => u.parse().map_err(|e| format!("--url {u:?}: {e}"))?,
        None => Uri::from_static("/"),
    };
    let mut headers = HeaderMap::new();
    for h in &args.headers {
        let (name, value) = h
            .split_once(':')
            .ok_or_else(|| format!("--header {h:?}: expected \"Name: value\""))?;
        let name = HeaderName::from_bytes(name.trim().as_bytes())
            .map_err(|_| format!("--header {h:?}: invalid header name"))?;
        let value = HeaderValue::from_str(value.trim())
            .map_err(|_| format!("--header {h:?}: invalid header value"))?;
        headers.append(name, value);
    }
    if let Some(ct) = &args.content_type {
        let v = HeaderValue::from_str(ct).map_err(|_| format!("--content-type {ct:?}: invalid"))?;
        headers.insert(http::header::CONTENT_TYPE, v);
    }
    Ok(CallbackRequest {
        method,
        uri,
        headers,
        body: Bytes::from(body),
    })
}

fn settings(args: &Args) -> Result<VerifySettings, String> {
    let mut s = VerifySettings::new();
    for kv in &args.verify {
        let (k, v) = kv
            .split_once('=')
            .ok_or_else(|| format!("--verify {kv:?}: expected key=value"))?;
        if k == "cert_file" {
            // The signing certificate is supplied offline; the core takes its PEM text.
            let pem =
                std::fs::read_to_string(v).map_err(|e| format!("--verify cert_file={v}: {e}"))?;
            s.insert("cert_pem", pem);
        } else {
            s.insert(k, v);
        }
    }
    Ok(s)
}

/// Runs the command.
pub(crate) fn run(args: &Args) -> ExitCode {
    let provider = match provider(args) {
        Ok(p) => p,
        Err(e) => return usage(e),
    };
    let format: Format = match args.format.parse() {
        Ok(f) => f,
        Err(e) => return usage(e),
    };
    let verifier = if args.verify.is_empty() {
        None
    } else {
        match settings(args).and_then(|s| Verifier::new(&provider, &s).map_err(|e| e.to_string())) {
            Ok(v) => Some(v),
            Err(e) => return usage(e),
        }
    };
    let mut body = Vec::new();
    if let Err(e) = std::io::stdin().take(MAX_BODY + 1).read_to_end(&mut body) {
        eprintln!("hookrelay normalize: cannot read stdin: {e}");
        return ExitCode::from(EXIT_BAD_BODY);
    }
    if body.len() as u64 > MAX_BODY {
        eprintln!("hookrelay normalize: body larger than {MAX_BODY} bytes");
        return ExitCode::from(EXIT_BAD_BODY);
    }
    let req = match request(args, body) {
        Ok(r) => r,
        Err(e) => return usage(e),
    };
    if let Some(v) = &verifier {
        // Recorded requests: no clock-based checks.
        if let Err(e) = v.verify(&req, &VerifyOptions::default()) {
            eprintln!(
                "hookrelay normalize: {} signature check failed: {e}",
                provider.id()
            );
            return ExitCode::from(EXIT_BAD_SIGNATURE);
        }
    }
    let out = match provider.normalize(
        &req,
        &Context {
            received_at_ms: now_ms(),
        },
    ) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("hookrelay normalize: {}: {e}", provider.id());
            return ExitCode::from(EXIT_BAD_BODY);
        }
    };
    if let Some(c) = &out.control {
        eprintln!("hookrelay normalize: control message: {}", c.describe());
    }
    // The sidecar keeps these as dead letters of `:unparsed`; here they are reported.
    for u in &out.unparsed {
        eprintln!("hookrelay normalize: unparsed: {}", u.reason);
    }
    let opts = PayloadOptions {
        format,
        ..PayloadOptions::default()
    };
    let stdout = std::io::stdout();
    let mut lock = stdout.lock();
    for event in &out.events {
        let line = render(event, &opts).to_string();
        if writeln!(lock, "{line}").is_err() {
            return ExitCode::from(1);
        }
    }
    ExitCode::SUCCESS
}
