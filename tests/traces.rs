//! OpenTelemetry traces, received by a real OTLP receiver: the OTLP/HTTP protobuf messages
//! a collector takes, decoded with the protocol's own definitions.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use hookrelay_tests::{Sidecar, Sink, eventually, meta_status};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message;

const META_SECRET: &str = "meta-app-secret";

/// A span as received, with the `service.name` of its resource.
#[derive(Clone, Debug)]
struct Received {
    service: String,
    span: Span,
}

impl Received {
    fn attribute(&self, key: &str) -> Option<String> {
        self.span
            .attributes
            .iter()
            .find(|a| a.key == key)
            .and_then(|a| a.value.as_ref()?.value.clone())
            .map(|v| match v {
                Value::StringValue(s) => s,
                Value::IntValue(i) => i.to_string(),
                Value::BoolValue(b) => b.to_string(),
                Value::DoubleValue(d) => d.to_string(),
                other => format!("{other:?}"),
            })
    }
}

/// An OTLP/HTTP receiver on a free port: `POST /v1/traces` with a protobuf
/// `ExportTraceServiceRequest`, answered 200 once decoded (400 when it does not decode).
struct Receiver {
    url: String,
    spans: Arc<Mutex<Vec<Received>>>,
    content_types: Arc<Mutex<Vec<String>>>,
}

impl Receiver {
    async fn start() -> Receiver {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the receiver");
        let addr = listener.local_addr().expect("addr");
        let spans = Arc::new(Mutex::new(Vec::new()));
        let content_types = Arc::new(Mutex::new(Vec::new()));
        let (s, c) = (spans.clone(), content_types.clone());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (s, c) = (s.clone(), c.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (s, c) = (s.clone(), c.clone());
                        async move {
                            let path = req.uri().path().to_owned();
                            let content_type = req
                                .headers()
                                .get("content-type")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or_default()
                                .to_owned();
                            let body = req
                                .into_body()
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            let status = match ExportTraceServiceRequest::decode(body) {
                                Ok(export) if path == "/v1/traces" => {
                                    c.lock().expect("lock").push(content_type);
                                    let mut spans = s.lock().expect("lock");
                                    for resource in export.resource_spans {
                                        let service = resource
                                            .resource
                                            .iter()
                                            .flat_map(|r| &r.attributes)
                                            .find(|a| a.key == "service.name")
                                            .and_then(|a| a.value.as_ref()?.value.clone())
                                            .map(|v| match v {
                                                Value::StringValue(s) => s,
                                                other => format!("{other:?}"),
                                            })
                                            .unwrap_or_default();
                                        for scope in resource.scope_spans {
                                            for span in scope.spans {
                                                spans.push(Received {
                                                    service: service.clone(),
                                                    span,
                                                });
                                            }
                                        }
                                    }
                                    200
                                }
                                _ => 400,
                            };
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .status(status)
                                    .body(Full::new(Bytes::new()))
                                    .expect("response"),
                            )
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Receiver {
            url: format!("http://{addr}/v1/traces"),
            spans,
            content_types,
        }
    }

    fn named(&self, name: &str) -> Vec<Received> {
        self.spans
            .lock()
            .expect("lock")
            .iter()
            .filter(|r| r.span.name == name)
            .cloned()
            .collect()
    }
}

#[tokio::test]
async fn a_callback_and_its_delivery_attempts_make_one_trace_that_the_endpoint_continues() {
    let receiver = Receiver::start().await;
    let sink = Sink::start().await;
    let yaml = format!(
        r#"
listen: "{{LISTEN}}"
admin: "{{ADMIN}}"
upstream: http://127.0.0.1:9
store: {{ kind: embedded, path: "{{DATA}}" }}
telemetry:
  otlp_endpoint: {}
  service_name: hookrelay-under-test
  sample_ratio: 1
callbacks:
  - path: /cb/meta
    provider: meta_whatsapp
    verify: {{ app_secret: {META_SECRET}, verify_token: vt }}
endpoints:
  - name: crm
    url: {}
    retry: {{ max_attempts: 5, backoff: [100ms] }}
"#,
        receiver.url,
        sink.url("/crm")
    );
    // Spans are sent in batches; a short delay keeps the test quick.
    let sidecar = Sidecar::start_with(&["env", "OTEL_BSP_SCHEDULE_DELAY=200"], &[], &yaml).await;

    // The first attempt fails (503), the second delivers.
    sink.set_status(503);
    let (status, _) = sidecar
        .post_meta_signed(
            "/cb/meta",
            META_SECRET,
            meta_status("wamid.TRACE1", "delivered", "15550001111"),
        )
        .await;
    assert_eq!(status, 200);
    let attempts = eventually("a failed attempt traced", || async {
        let attempts = receiver.named("delivery attempt");
        (!attempts.is_empty()).then_some(attempts)
    })
    .await;
    assert_eq!(
        attempts[0]
            .attribute("http.response.status_code")
            .as_deref(),
        Some("503")
    );
    sink.set_status(200);
    let delivered = sink.wait_for(1).await;
    let traceparent = delivered[0].header("traceparent");

    // Spans come in batches: wait for the delivering attempt's.
    let (callback, attempts) = eventually("the callback and the delivering attempt", || async {
        let callbacks = receiver.named("callback");
        let attempts = receiver.named("delivery attempt");
        let delivered = attempts
            .iter()
            .any(|a| a.attribute("http.response.status_code").as_deref() == Some("200"));
        (callbacks.len() == 1 && delivered).then(|| (callbacks[0].clone(), attempts))
    })
    .await;
    assert_eq!(callback.service, "hookrelay-under-test");
    assert_eq!(callback.attribute("route").as_deref(), Some("/cb/meta"));
    assert_eq!(
        callback.attribute("provider").as_deref(),
        Some("meta_whatsapp")
    );
    assert_eq!(callback.attribute("events").as_deref(), Some("1"));
    assert_eq!(callback.attribute("deliveries").as_deref(), Some("1"));
    assert_eq!(callback.attribute("outcome").as_deref(), Some("accepted"));
    assert!(callback.span.parent_span_id.is_empty(), "a root span");

    // Each attempt is a child of the callback, in its trace.
    for attempt in &attempts {
        assert_eq!(attempt.span.trace_id, callback.span.trace_id);
        assert_eq!(attempt.span.parent_span_id, callback.span.span_id);
        assert_eq!(attempt.attribute("endpoint").as_deref(), Some("crm"));
    }
    let numbers: Vec<Option<String>> = attempts.iter().map(|a| a.attribute("attempt")).collect();
    assert!(
        numbers.contains(&Some("1".into())) && numbers.contains(&Some("2".into())),
        "{numbers:?}"
    );
    let last = attempts
        .iter()
        .find(|a| a.attribute("http.response.status_code").as_deref() == Some("200"))
        .expect("the delivering attempt");
    assert_eq!(last.attribute("outcome").as_deref(), Some("delivered"));

    // The endpoint got the delivering attempt's context: its own trace continues ours.
    assert_eq!(
        traceparent,
        format!(
            "00-{}-{}-01",
            hex::encode(&callback.span.trace_id),
            hex::encode(&last.span.span_id)
        )
    );
    assert!(
        receiver
            .content_types
            .lock()
            .expect("lock")
            .iter()
            .all(|c| c == "application/x-protobuf")
    );
}

#[tokio::test]
async fn without_an_endpoint_traces_are_off_and_nothing_is_sent() {
    let sink = Sink::start().await;
    let yaml = format!(
        r#"
listen: "{{LISTEN}}"
admin: "{{ADMIN}}"
upstream: http://127.0.0.1:9
store: {{ kind: embedded, path: "{{DATA}}" }}
callbacks:
  - path: /cb/meta
    provider: meta_whatsapp
    verify: {{ app_secret: {META_SECRET}, verify_token: vt }}
endpoints:
  - name: crm
    url: {}
"#,
        sink.url("/crm")
    );
    let sidecar = Sidecar::start_with(
        &[
            "env",
            "-u",
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "-u",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
        ],
        &[],
        &yaml,
    )
    .await;
    let (status, _) = sidecar
        .post_meta_signed(
            "/cb/meta",
            META_SECRET,
            meta_status("wamid.TRACE2", "delivered", "15550001111"),
        )
        .await;
    assert_eq!(status, 200);
    let delivered = sink.wait_for(1).await;
    assert_eq!(
        delivered[0].header("traceparent"),
        "",
        "no trace context sent"
    );
    assert!(
        !sidecar.log().contains("traces sent over OTLP"),
        "{}",
        sidecar.log()
    );
}
