//! OpenTelemetry traces: a span per callback and per delivery attempt, sent over OTLP
//! (HTTP, protobuf) with the sidecar's own hyper client, and the trace carried on to the
//! endpoint in `traceparent`.
//!
//! Off unless an endpoint is configured (`telemetry.otlp_endpoint`, else the standard
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` / `OTEL_EXPORTER_OTLP_ENDPOINT`), and then free:
//! no span is made (every span here is [`Span::none`] when off) and no context is stored
//! with a delivery. `OTEL_SDK_DISABLED=true` turns it off whatever the file says.
//!
//! A callback's span is the parent of the attempts of every delivery it enqueued: its
//! context is stored with each delivery (`traceparent` text, on disk or in Redis), so an
//! attempt made after a restart, or by another replica, still joins the callback's trace.
//! The attempt's own context goes to the endpoint in the `traceparent` header.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::propagation::{Extractor, TextMapPropagator};
use opentelemetry::trace::TracerProvider as _;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};
use tracing::Span;
use tracing_opentelemetry::OpenTelemetrySpanExt;

/// The target of the spans made here: the only ones the OpenTelemetry layer sees, and ones
/// the log leaves out.
pub(crate) const TARGET: &str = "hookrelay::otel";

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether spans are made.
static ENABLED: AtomicBool = AtomicBool::new(false);

/// Whether traces are on.
pub(crate) fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The exporter's HTTP client: hyper over rustls (Mozilla's roots and the system's), run on
/// the exporter's own runtime (the SDK's batch thread has none).
#[derive(Debug, Clone)]
struct Hyper {
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
}

#[async_trait::async_trait]
impl HttpClient for Hyper {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, Full::new(body));
        let exchange = async move {
            let response = client.request(request).await?;
            let (parts, body) = response.into_parts();
            // A collector's answer is small; a huge one is refused, not buffered whole.
            let body = http_body_util::Limited::new(body, 1 << 20)
                .collect()
                .await?
                .to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        // The whole exchange, its body included, within the timeout.
        let bounded = async move {
            tokio::time::timeout(EXPORT_TIMEOUT, exchange)
                .await
                .map_err(|_| HttpError::from("OTLP export timed out"))?
        };
        self.runtime.spawn(bounded).await?
    }
}

/// Traces while it lives: the provider, flushed and shut down on drop, and the runtime its
/// exports run on.
pub(crate) struct Tracing {
    provider: SdkTracerProvider,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Tracing {
    fn drop(&mut self) {
        ENABLED.store(false, Ordering::Relaxed);
        // The exports run on the runtime: shut the provider down from a thread of its own
        // while the runtime still runs.
        let provider = self.provider.clone();
        let done = std::thread::Builder::new()
            .name("hookrelay-otel-stop".into())
            .spawn(move || provider.shutdown_with_timeout(Duration::from_secs(5)));
        if let Ok(done) = done
            && let Ok(Err(e)) = done.join()
        {
            tracing::debug!(error = %e, "traces not all exported at exit");
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(1));
        }
    }
}

/// The OpenTelemetry layer for the log's subscriber.
pub(crate) type Layer =
    tracing_opentelemetry::OpenTelemetryLayer<tracing_subscriber::Registry, SdkTracer>;

/// An environment variable, if set and not empty.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// Starts traces as `config` and the `OTEL_*` variables say: the layer to add to the
/// subscriber and what keeps it running, or `None` when traces are off.
pub(crate) fn start(
    config: &hookrelay_config::Telemetry,
) -> Result<Option<(Layer, Tracing)>, String> {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
        return Ok(None);
    }
    let configured = config.otlp_endpoint.is_some()
        || env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT").is_some()
        || env("OTEL_EXPORTER_OTLP_ENDPOINT").is_some();
    if !configured {
        return Ok(None);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("hookrelay-otel")
        .enable_all()
        .build()
        .map_err(|e| format!("telemetry: cannot start its runtime: {e}"))?;
    let (roots, _) = crate::net::tls::roots(crate::net::tls::system_certs(), &[])
        .map_err(|e| format!("telemetry: TLS roots: {e}"))?;
    let tls = crate::net::tls::client_config(roots).map_err(|e| format!("telemetry: TLS: {e}"))?;
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .build();
    let client = Hyper {
        client: Client::builder(TokioExecutor::new()).build(connector),
        runtime: runtime.handle().clone(),
    };
    let mut exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_timeout(EXPORT_TIMEOUT);
    // Without one here, the exporter reads the OTEL_EXPORTER_OTLP_* variables itself.
    if let Some(endpoint) = &config.otlp_endpoint {
        exporter = exporter.with_endpoint(endpoint.clone());
    }
    let exporter = exporter
        .build()
        .map_err(|e| format!("telemetry: cannot build the OTLP exporter: {e}"))?;
    let service = config
        .service_name
        .clone()
        .or_else(|| env("OTEL_SERVICE_NAME"))
        .unwrap_or_else(|| "hookrelay".to_owned());
    let mut provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(Resource::builder().with_service_name(service).build());
    // Without a ratio here, the SDK reads OTEL_TRACES_SAMPLER(_ARG) (default: always on).
    if let Some(ratio) = config.sample_ratio {
        provider = provider.with_sampler(Sampler::ParentBased(Box::new(
            Sampler::TraceIdRatioBased(ratio),
        )));
    }
    let provider = provider.build();
    let layer = tracing_opentelemetry::layer().with_tracer(provider.tracer("hookrelay"));
    ENABLED.store(true, Ordering::Relaxed);
    Ok(Some((
        layer,
        Tracing {
            provider,
            runtime: Some(runtime),
        },
    )))
}

/// The span of a callback on `route` for `provider` (none when traces are off); the
/// caller records `events`, `deliveries` and `outcome`.
pub(crate) fn callback_span(route: &str, provider: &str) -> Span {
    if !enabled() {
        return Span::none();
    }
    tracing::info_span!(
        target: TARGET,
        "callback",
        otel.kind = "server",
        route,
        provider,
        events = tracing::field::Empty,
        deliveries = tracing::field::Empty,
        outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// The W3C `traceparent` of `span`, to store with the deliveries it enqueues (none when
/// traces are off; a span not sampled gives one with its flags `00`, so its attempts are
/// not sampled either).
pub(crate) fn traceparent(span: &Span) -> Option<String> {
    if span.is_none() {
        return None;
    }
    let mut carrier = std::collections::HashMap::new();
    TraceContextPropagator::new().inject_context(&span.context(), &mut carrier);
    carrier.remove("traceparent")
}

/// One stored `traceparent`, read as a propagator carrier.
struct Stored<'a>(&'a str);

impl Extractor for Stored<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        (key == "traceparent").then_some(self.0)
    }

    fn keys(&self) -> Vec<&str> {
        vec!["traceparent"]
    }
}

/// The span of one attempt of a delivery to `endpoint` (none when traces are off), a child
/// of the callback whose context `parent` holds; the caller records `status` and
/// `outcome`.
pub(crate) fn attempt_span(
    endpoint: &str,
    webhook_id: &str,
    attempt: u32,
    parent: Option<&str>,
) -> Span {
    if !enabled() {
        return Span::none();
    }
    let span = tracing::info_span!(
        target: TARGET,
        "delivery attempt",
        otel.kind = "client",
        endpoint,
        webhook_id,
        attempt,
        http.response.status_code = tracing::field::Empty,
        outcome = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    );
    if let Some(parent) = parent {
        let cx = TraceContextPropagator::new().extract(&Stored(parent));
        // Before the span starts (it has not been entered yet); fails only when traces are
        // off, which was checked.
        let _ = span.set_parent(cx);
    }
    span
}

/// Adds `span`'s `traceparent` to `headers`, so the endpoint's trace continues it.
pub(crate) fn inject(span: &Span, headers: &mut http::HeaderMap) {
    if span.is_none() {
        return;
    }
    TraceContextPropagator::new().inject_context(
        &span.context(),
        &mut opentelemetry_http::HeaderInjector(headers),
    );
}
