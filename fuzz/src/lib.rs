//! Shared driver of the fuzz targets: one provider, arbitrary requests.
//!
//! The first input byte picks the method and content type, the rest is the body (and, for
//! GET, also the query string), so each target explores both the parsers and the
//! signature checks of its provider:
//!
//! - bit 7 (`0x80`): `GET`, with the body's visible characters as the query string (how
//!   Gupshup's SMS reports, Vonage's and Plivo's callbacks arrive), else `POST`;
//! - bit 6 (`0x40`): `multipart/form-data` with a boundary taken from the body, so that
//!   mutations of a well-formed form stay well-framed long enough to reach the provider
//!   (Mailgun's Routes forwards with attachments): the characters after a leading `--` up
//!   to the first line break, at most 70 (none: `fuzz`);
//! - bits 0 and 1, without bit 6: one of four other content types.

use bytes::Bytes;
use hookrelay_core::limits::{JsonLimits, LimitExceeded};
use hookrelay_core::provider::{generic, Context, Provider, Verifier, VerifyOptions, VerifySettings};
use hookrelay_core::CallbackRequest;
use http::{HeaderMap, HeaderValue, Method, Uri};

const CONTENT_TYPES: [&str; 4] = [
    "application/json",
    "application/x-www-form-urlencoded",
    "text/plain; charset=UTF-8",
    "",
];

fn settings(provider: &str) -> VerifySettings {
    let s = VerifySettings::new();
    match provider {
        "sendgrid" => s.with(
            "public_key",
            "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEEDr2LjtURuePQzplybdC+u4CwrqDqBaWjcMMsTbhdbcwHBcepxo7yAQGhHPTnlvFYPAZFceEu/1FwCM/QmGUhA==",
        ),
        "mailgun" => s.with("signing_key", "key-fuzz"),
        "ses" => s
            .with("cert_pem", include_str!("sns_cert.pem"))
            .with("topic_arn", "arn:aws:sns:us-east-1:123456789012:fuzz"),
        "postmark" => s.with("basic_auth", "user:pass"),
        "twilio" | "plivo" => s
            .with("auth_token", "token")
            .with("public_url", "https://example.com/cb"),
        "vonage" => s.with("signature_secret", "secret"),
        "meta_whatsapp" => s.with("app_secret", "secret").with("verify_token", "vt"),
        "gupshup" => s.with("token", "token"),
        "infobip" | "mailjet" | "sparkpost" | "brevo" => s.with("basic_auth", "user:pass"),
        "sinch" => s.with("secret", "secret").with("basic_auth", "user:pass"),
        // RFC 8032's first test key.
        "telnyx" => s.with("public_key", "11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo="),
        "messagebird" => s
            .with("signing_key", "secret")
            .with("public_url", "https://example.com/cb"),
        "mandrill" => s
            .with("webhook_key", "secret")
            .with("public_url", "https://example.com/cb"),
        "resend" => s.with("signing_secret", "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
        "generic" => s.with("secret", "secret"),
        _ => s,
    }
}

/// The generic provider exercised by the `generic` target: a batch with every field mapped.
fn generic() -> Provider {
    static SPEC: std::sync::OnceLock<std::sync::Arc<generic::Spec>> = std::sync::OnceLock::new();
    let spec = SPEC.get_or_init(|| {
        let v = serde_json::json!({
            "name": "acme",
            "channel": {"pointer": "/channel", "map": {"WA": "whatsapp"}, "default": "sms"},
            "event_type": {"pointer": "/kind", "map": {"mo": "inbound_message"}, "default": "status"},
            "events": "/results",
            "fields": {
                "channel_value": "/to", "status": "/status", "vendor_ack_id": "/id",
                "event_id": "/event_id", "timestamp": "/ts", "error_code": "/error/code",
                "error_message": "/error/text", "from": "/from", "to": "/to", "text": "/text",
                "message_type": "/type", "correlation": {"distinct_id": "/meta/user"}
            },
            "status_map": {"DELIVRD": "delivered", "UNDELIV": "failed"},
            "informational": ["ENROUTE"],
            "signature": {"header": "x-acme-signature", "algorithm": "sha256", "encoding": "hex",
                          "prefix": "sha256=", "signed": "timestamp.body",
                          "timestamp_header": "x-acme-timestamp"}
        });
        std::sync::Arc::new(serde_json::from_value(v).expect("valid generic spec"))
    });
    Provider::Generic(spec.clone())
}

/// Feeds one fuzz input to `provider`'s normalizer and verifier. Must never panic.
pub fn run(provider: &str, data: &[u8]) {
    let p = if provider == "generic" {
        generic()
    } else {
        match Provider::builtin(provider) {
            Some(p) => p,
            None => return,
        }
    };
    let req = request(data);
    let _ = p.normalize(&req, &Context { received_at_ms: 1_700_000_000_000 });
    if let Ok(v) = Verifier::new(&p, &settings(provider)) {
        let _ = v.verify(&req, &VerifyOptions { now_secs: Some(1_700_000_000), tolerance_secs: None });
    }
}

/// The request a fuzz input stands for (see the crate docs for the first byte).
pub fn request(data: &[u8]) -> CallbackRequest {
    let (sel, body) = data.split_first().unwrap_or((&0, &[]));
    let method = if sel & 0x80 != 0 { Method::GET } else { Method::POST };
    let mut headers = HeaderMap::new();
    if sel & 0x40 != 0 {
        let ct = format!("multipart/form-data; boundary=\"{}\"", boundary_of(body));
        if let Ok(v) = HeaderValue::from_str(&ct) {
            headers.insert("content-type", v);
        }
    } else {
        let ct = CONTENT_TYPES[usize::from(sel & 3)];
        if !ct.is_empty() {
            headers.insert("content-type", HeaderValue::from_static(ct));
        }
    }
    let uri = if method == Method::GET {
        let q: String = String::from_utf8_lossy(body)
            .chars()
            .filter(|c| c.is_ascii_graphic() && *c != '#')
            .collect();
        format!("https://example.com/cb?{q}").parse::<Uri>().unwrap_or_else(|_| Uri::from_static("/"))
    } else {
        Uri::from_static("/cb")
    };
    CallbackRequest {
        method,
        uri,
        headers,
        body: Bytes::copy_from_slice(body),
    }
}

/// The boundary a multipart input declares: what follows a leading `--` up to the first
/// line break (at most 70 bytes, quotes and control characters dropped), or `fuzz`. It may
/// still be one the parser refuses, which is part of what is fuzzed.
fn boundary_of(body: &[u8]) -> String {
    let b: String = body
        .strip_prefix(b"--")
        .unwrap_or_default()
        .iter()
        .take_while(|&&c| c != b'\r' && c != b'\n')
        .take(70)
        .filter(|c| c.is_ascii_graphic() || **c == b' ')
        .filter(|&&c| c != b'"' && c != b'\\')
        .map(|&c| char::from(c))
        .collect();
    if b.is_empty() { "fuzz".to_owned() } else { b }
}

/// Feeds one fuzz input to the JSON limits scanner. Must never panic; whenever the input is
/// JSON, the scan and the parsed value agree about depth (small limits, so that both sides
/// of them are reached).
pub fn limits(data: &[u8]) {
    let limits = JsonLimits::default().max_depth(8).max_number_len(12);
    let scanned = limits.check(data);
    if let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) {
        let too_deep = limits.check_value(&value).is_err();
        let depth_only = limits.max_number_len(usize::MAX).check(data);
        assert_eq!(too_deep, depth_only.is_err(), "{scanned:?}");
        if let Err(LimitExceeded::Depth { .. }) = scanned {
            assert!(too_deep);
        }
    }
}

#[cfg(test)]
mod tests {
    use hookrelay_core::provider::{Context, Provider};

    /// Every hand-written seed runs through its target's driver (`cargo test` in `fuzz/`,
    /// without cargo-fuzz), and those of built-in providers (multipart forms, GET queries)
    /// are requests their provider accepts: the corpus starts inside the formats.
    #[test]
    fn seeds_run() {
        let seeds = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds");
        let mut ran = 0;
        for dir in std::fs::read_dir(seeds).expect("seeds").flatten() {
            let target = dir.file_name().to_string_lossy().into_owned();
            for seed in std::fs::read_dir(dir.path()).expect("seed dir").flatten() {
                let data = std::fs::read(seed.path()).expect("seed");
                super::run(&target, &data);
                if let Some(p) = Provider::builtin(&target) {
                    let out = p.normalize(&super::request(&data), &Context { received_at_ms: 0 });
                    assert!(out.is_ok_and(|o| !o.events.is_empty()), "{}", seed.path().display());
                }
                ran += 1;
            }
        }
        assert!(ran >= 5, "{ran} seeds");
    }
}
