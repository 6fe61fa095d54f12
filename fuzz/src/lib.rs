//! Shared driver of the fuzz targets: one provider, arbitrary requests.
//!
//! The first input byte picks the method and content type, the rest is the body (and, for
//! GET, also the query string), so each target explores both the parsers and the
//! signature checks of its provider.

use bytes::Bytes;
use hookrelay_core::provider::{Context, Provider, Verifier, VerifyOptions, VerifySettings};
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
        "ses" => s.with("cert_pem", include_str!("sns_cert.pem")),
        "postmark" => s.with("basic_auth", "user:pass"),
        "twilio" | "plivo" => s
            .with("auth_token", "token")
            .with("public_url", "https://example.com/cb"),
        "vonage" => s.with("signature_secret", "secret"),
        "meta_whatsapp" => s.with("app_secret", "secret").with("verify_token", "vt"),
        "gupshup" => s.with("token", "token"),
        _ => s,
    }
}

/// Feeds one fuzz input to `provider`'s normalizer and verifier. Must never panic.
pub fn run(provider: &str, data: &[u8]) {
    let Some(p) = Provider::builtin(provider) else {
        return;
    };
    let (sel, body) = data.split_first().unwrap_or((&0, &[]));
    let method = if sel & 0x80 != 0 { Method::GET } else { Method::POST };
    let mut headers = HeaderMap::new();
    let ct = CONTENT_TYPES[usize::from(sel & 3)];
    if !ct.is_empty() {
        headers.insert("content-type", HeaderValue::from_static(ct));
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
    let req = CallbackRequest {
        method,
        uri,
        headers,
        body: Bytes::copy_from_slice(body),
    };
    let _ = p.normalize(&req, &Context { received_at_ms: 1_700_000_000_000 });
    if let Ok(v) = Verifier::new(&p, &settings(provider)) {
        let _ = v.verify(&req, &VerifyOptions { now_secs: Some(1_700_000_000), tolerance_secs: None });
    }
}
