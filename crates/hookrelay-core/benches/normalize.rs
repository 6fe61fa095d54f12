//! Normalize throughput per provider (events/s) and Standard Webhooks sign/verify cost.
//!
//! Inputs are the golden cases under `tests/golden/<provider>/`: each provider's cases are
//! normalized and rendered as payloads, as the sidecar does for every callback.

// criterion's macros generate undocumented items.
#![allow(missing_docs)]

use std::fs;
use std::hint::black_box;
use std::path::Path;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use hookrelay_core::CallbackRequest;
use hookrelay_core::payload::{PayloadOptions, to_bytes};
use hookrelay_core::provider::{Context, Provider, Verifier, VerifyOptions, VerifySettings};
use hookrelay_core::signing::{Signer, SigningSecret, verify};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde_json::Value;

fn cases(provider: &str) -> Vec<CallbackRequest> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(provider);
    let mut out = Vec::new();
    let Ok(entries) = fs::read_dir(&dir) else {
        return out;
    };
    let mut paths: Vec<_> = entries.filter_map(Result::ok).map(|e| e.path()).collect();
    paths.sort();
    for p in paths
        .iter()
        .filter(|p| p.extension().is_some_and(|x| x == "body"))
    {
        let meta: Value = fs::read(p.with_extension("meta.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null);
        let mut headers = HeaderMap::new();
        if let Some(ct) = meta["content_type"].as_str() {
            headers.insert("content-type", HeaderValue::from_str(ct).expect("ct"));
        }
        if let Some(h) = meta["headers"].as_object() {
            for (k, v) in h {
                headers.insert(
                    HeaderName::from_bytes(k.as_bytes()).expect("name"),
                    HeaderValue::from_str(v.as_str().unwrap_or_default()).expect("value"),
                );
            }
        }
        out.push(CallbackRequest {
            method: Method::from_bytes(meta["method"].as_str().unwrap_or("POST").as_bytes())
                .expect("method"),
            uri: meta["url"]
                .as_str()
                .unwrap_or("/")
                .parse::<Uri>()
                .expect("url"),
            headers,
            body: Bytes::from(fs::read(p).expect("body")),
        });
    }
    out
}

fn normalize(c: &mut Criterion) {
    let ctx = Context {
        received_at_ms: 1_700_000_000_000,
    };
    let opts = PayloadOptions::default();
    let mut group = c.benchmark_group("normalize");
    for id in Provider::BUILTIN {
        let provider = Provider::builtin(id).expect("built-in");
        let reqs: Vec<_> = cases(id)
            .into_iter()
            .filter(|r| {
                provider
                    .normalize(r, &ctx)
                    .is_ok_and(|o| !o.events.is_empty())
            })
            .collect();
        let events: usize = reqs
            .iter()
            .map(|r| {
                provider
                    .normalize(r, &ctx)
                    .map(|o| o.events.len())
                    .unwrap_or(0)
            })
            .sum();
        if events == 0 {
            continue;
        }
        group.throughput(Throughput::Elements(events as u64));
        group.bench_function(*id, |b| {
            b.iter(|| {
                for r in &reqs {
                    if let Ok(out) = provider.normalize(black_box(r), &ctx) {
                        for e in &out.events {
                            black_box(to_bytes(e, &opts));
                        }
                    }
                }
            });
        });
    }
    group.finish();
}

fn signing(c: &mut Criterion) {
    let secret: SigningSecret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
        .parse()
        .expect("secret");
    let signer = Signer::new(vec![secret.clone()]);
    let body = vec![b'x'; 1024];
    let sig = signer.signature("msg_1", 1_700_000_000, &body);
    let mut group = c.benchmark_group("standard_webhooks_1KiB");
    group.throughput(Throughput::Elements(1));
    group.bench_function("sign", |b| {
        b.iter(|| black_box(signer.signature("msg_1", 1_700_000_000, black_box(&body))));
    });
    group.bench_function("verify", |b| {
        b.iter(|| {
            verify(
                std::slice::from_ref(&secret),
                "msg_1",
                "1700000000",
                &sig,
                black_box(&body),
                Some(1_700_000_000),
            )
        });
    });
    group.finish();
}

/// The request of `scripts/load`: one signed Meta status callback, verified, normalized
/// and rendered, as the sidecar's listener does for each of them.
fn load_callback(c: &mut Criterion) {
    use hmac::{Hmac, KeyInit, Mac};
    let body = r#"{"object":"whatsapp_business_account","entry":[{"id":"102290129340398","changes":[{"field":"messages","value":{"messaging_product":"whatsapp","metadata":{"display_phone_number":"15550783881","phone_number_id":"106540352242922"},"statuses":[{"id":"wamid.HBgLMTY1MDM4Nzk0MzkVAgARGBJBMDAwMDAwMDAwMDAwMDAw0000000000","status":"delivered","timestamp":"1739321024","recipient_id":"16505551234","conversation":{"id":"6ceb9d929c4ef36a6d3e3b1e8e3c6f3a","origin":{"type":"utility"}},"pricing":{"billable":true,"pricing_model":"CBP","category":"utility"}}]}}]}]}"#;
    let secret = "load-test-app-secret";
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let mut headers = HeaderMap::new();
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    headers.insert(
        "x-hub-signature-256",
        HeaderValue::from_str(&format!("sha256={sig}")).expect("signature"),
    );
    let req = CallbackRequest {
        method: Method::POST,
        uri: Uri::from_static("/callbacks/whatsapp"),
        headers,
        body: Bytes::from_static(body.as_bytes()),
    };
    let verifier = Verifier::new(
        &Provider::MetaWhatsapp,
        &VerifySettings::new().with("app_secret", secret),
    )
    .expect("verifier");
    let ctx = Context {
        received_at_ms: 1_700_000_000_000,
    };
    let opts = PayloadOptions::default();
    let mut group = c.benchmark_group("load_callback");
    group.throughput(Throughput::Elements(1));
    group.bench_function("verify", |b| {
        b.iter(|| verifier.verify(black_box(&req), &VerifyOptions::default()))
    });
    group.bench_function("normalize", |b| {
        b.iter(|| Provider::MetaWhatsapp.normalize(black_box(&req), &ctx))
    });
    group.bench_function("verify_normalize_render", |b| {
        b.iter(|| {
            verifier
                .verify(black_box(&req), &VerifyOptions::default())
                .expect("valid");
            let out = Provider::MetaWhatsapp
                .normalize(black_box(&req), &ctx)
                .expect("normalized");
            for e in &out.events {
                black_box(to_bytes(e, &opts));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, normalize, signing, load_callback);
criterion_main!(benches);
