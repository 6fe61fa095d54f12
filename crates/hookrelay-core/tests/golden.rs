//! Golden tests: every recorded callback under `tests/golden/<provider>/` is normalized
//! and rendered, and compared with the hand-reviewed `<case>.expected.json` beside it.
//!
//! A case is `<case>.body` (the raw body bytes), an optional `<case>.meta.json`
//! (`method`, `content_type`, `url`, `headers`, `received_at_ms`) and the expected output
//! `{"control": <description or null>, "payloads": [<suprsend payload>, …]}`, plus
//! `"unparsed": [{"reason", "raw"}, …]` when the callback holds events that could not be
//! normalized.
//! `UPDATE_GOLDEN=1` writes missing or changed expected files (review them before
//! committing).

use std::fs;
use std::path::{Path, PathBuf};

use bytes::Bytes;
use hookrelay_core::CallbackRequest;
use hookrelay_core::Raw;
use hookrelay_core::payload::{CorrelationKeys, Format, PayloadOptions, render, to_bytes};

/// Payload options that exercise every branch of rendering.
fn option_sets() -> Vec<PayloadOptions> {
    let standard = PayloadOptions {
        format: Format::Standard,
        ..PayloadOptions::default()
    };
    let bare = PayloadOptions {
        include_raw: false,
        ..PayloadOptions::default()
    };
    // Correlation keys that pick other ids, including ones that collide with the
    // reference's own fields.
    let keys = PayloadOptions {
        correlation_keys: CorrelationKeys {
            distinct_id: vec![
                "user_id".into(),
                "idempotency_key".into(),
                "distinct_id".into(),
            ],
            workflow_name: vec!["vendor_ack_id".into()],
            template: vec!["tag".into(), "template".into()],
        },
        ..PayloadOptions::default()
    };
    vec![PayloadOptions::default(), standard, bare, keys]
}
use hookrelay_core::provider::{Context, Provider};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde_json::{Value, json};

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn request(body: Vec<u8>, meta: &Value) -> CallbackRequest {
    let method = meta["method"].as_str().unwrap_or("POST");
    let uri = meta["url"].as_str().unwrap_or("/");
    let mut headers = HeaderMap::new();
    if let Some(ct) = meta["content_type"].as_str() {
        headers.insert(
            "content-type",
            HeaderValue::from_str(ct).expect("content type"),
        );
    }
    if let Some(h) = meta["headers"].as_object() {
        for (k, v) in h {
            headers.insert(
                HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                HeaderValue::from_str(v.as_str().expect("header value")).expect("header value"),
            );
        }
    }
    CallbackRequest {
        method: Method::from_bytes(method.as_bytes()).expect("method"),
        uri: uri.parse::<Uri>().expect("url"),
        headers,
        body: Bytes::from(body),
    }
}

fn run_case(provider: &Provider, body_path: &Path) -> Result<(), String> {
    let stem = body_path.with_extension("");
    let meta_path = stem.with_extension("meta.json");
    let expected_path = stem.with_extension("expected.json");
    let meta: Value = match fs::read(&meta_path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| format!("{}: {e}", meta_path.display()))?,
        Err(_) => json!({}),
    };
    let body = fs::read(body_path).map_err(|e| e.to_string())?;
    let req = request(body, &meta);
    let ctx = Context {
        received_at_ms: meta["received_at_ms"].as_i64().unwrap_or(1_700_000_000_000),
    };
    let out = provider
        .normalize(&req, &ctx)
        .map_err(|e| format!("{}: normalize failed: {e}", body_path.display()))?;
    // The direct serializer writes what rendering and serializing the value does: the same
    // bytes when the provider's event is a value, the same JSON when it is kept as text.
    for event in &out.events {
        for opts in option_sets() {
            let direct = to_bytes(event, &opts);
            let rendered = render(event, &opts);
            let via_value = serde_json::to_vec(&rendered).map_err(|e| e.to_string())?;
            let same = match &event.raw {
                Raw::Value(_) => direct == via_value,
                Raw::Text(_) => {
                    serde_json::from_slice::<Value>(&direct).ok().as_ref() == Some(&rendered)
                        && !direct.contains(&b'\n')
                }
            };
            if !same {
                return Err(format!(
                    "{}: to_bytes differs from render with {opts:?}:\n{}\n{}",
                    body_path.display(),
                    String::from_utf8_lossy(&direct),
                    String::from_utf8_lossy(&via_value)
                ));
            }
        }
    }
    let payloads: Vec<Value> = out
        .events
        .iter()
        .map(|e| render(e, &PayloadOptions::default()))
        .collect();
    let mut actual = json!({
        "control": out.control.as_ref().map(|c| c.describe()),
        "payloads": payloads,
    });
    // Listed only when there are some: most cases have none.
    if !out.unparsed.is_empty() {
        actual["unparsed"] = out
            .unparsed
            .iter()
            .map(|u| json!({"reason": u.reason, "raw": u.raw}))
            .collect();
    }
    let expected: Option<Value> = fs::read(&expected_path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    if expected.as_ref() == Some(&actual) {
        return Ok(());
    }
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        let text = serde_json::to_string_pretty(&actual).map_err(|e| e.to_string())?;
        fs::write(&expected_path, text + "\n").map_err(|e| e.to_string())?;
        return Ok(());
    }
    Err(format!(
        "{}: output differs from {}\nactual:\n{}",
        body_path.display(),
        expected_path.display(),
        serde_json::to_string_pretty(&actual).unwrap_or_default()
    ))
}

#[test]
fn every_recorded_callback_normalizes_to_its_expected_payloads() {
    let mut failures = Vec::new();
    let mut cases = 0;
    let mut dirs: Vec<_> = fs::read_dir(golden_dir())
        .expect("tests/golden exists")
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .collect();
    dirs.sort_by_key(|e| e.path());
    for dir in dirs {
        let name = dir.file_name().to_string_lossy().into_owned();
        let provider = Provider::builtin(&name)
            .unwrap_or_else(|| panic!("tests/golden/{name}: not a built-in provider"));
        let mut bodies: Vec<_> = fs::read_dir(dir.path())
            .expect("readable")
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "body"))
            .collect();
        bodies.sort();
        for body in bodies {
            cases += 1;
            if let Err(e) = run_case(&provider, &body) {
                failures.push(e);
            }
        }
    }
    assert!(cases > 0, "no golden cases found");
    assert!(
        failures.is_empty(),
        "{} of {cases} golden cases failed:\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
