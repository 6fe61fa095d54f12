//! The edges of the network: an upstream on an IPv6 literal or a host name that does not
//! resolve (both used to panic the proxy), and https deliveries to an endpoint behind a
//! private CA (`tls.ca_file`). Real processes, real sockets, a real TLS server.

use std::sync::Arc;

use bytes::Bytes;
use hookrelay_tests::{Sidecar, Sink, eventually};
use http_body_util::{BodyExt, Full};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

const SECRET: &str = "meta-app-secret";

fn config(upstream: &str, endpoint_url: &str, extra: &str) -> String {
    format!(
        r#"
listen: "{{LISTEN}}"
admin: "{{ADMIN}}"
upstream: "{upstream}"
store: {{ kind: embedded, path: "{{DATA}}" }}
{extra}
callbacks:
  - path: /wa
    provider: meta_whatsapp
    verify: {{ app_secret: {SECRET} }}
endpoints:
  - name: crm
    url: {endpoint_url}
    retry: {{ max_attempts: 3, backoff: [100ms] }}
"#
    )
}

fn status_body(id: &str) -> String {
    format!(
        r#"{{"object":"whatsapp_business_account","entry":[{{"id":"1","changes":[{{"field":"messages","value":{{"statuses":[{{"id":"{id}","status":"delivered","timestamp":"1700000000","recipient_id":"15551234567"}}]}}}}]}}]}}"#
    )
}

async fn post_status(s: &Sidecar, id: &str) -> u16 {
    s.post_meta_signed("/wa", SECRET, status_body(id))
        .await
        .0
        .as_u16()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ipv6_literal_upstream_is_proxied_to() {
    let upstream = Sink::start_on("[::1]:0").await;
    let sink = Sink::start().await;
    let s = Sidecar::start(&config(
        &format!("http://[::1]:{}", upstream.addr.port()),
        &sink.url("/hooks"),
        "",
    ))
    .await;
    for i in 0..3 {
        let (status, _) = s.post(&format!("/api/{i}"), &[], "x").await;
        assert_eq!(status, 200, "proxied to [::1]");
    }
    assert_eq!(upstream.wait_for(3).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_that_does_not_resolve_gets_502_with_the_reason_and_callbacks_still_work() {
    let sink = Sink::start().await;
    let s = Sidecar::start(&config(
        "http://upstream.invalid:3000",
        &sink.url("/hooks"),
        "",
    ))
    .await;
    for _ in 0..3 {
        let (status, body) = s.post("/api/x", &[], "x").await;
        assert_eq!(status, 502);
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("upstream.invalid"), "{text}");
    }
    // The listener is alive and callbacks are handled as ever.
    assert_eq!(post_status(&s, "wamid.dns").await, 200);
    assert_eq!(sink.wait_for(1).await.len(), 1);
    assert!(!s.log().contains("panicked"), "{}", s.log());
}

/// An https server for `localhost`/`127.0.0.1` with the test CA's certificate, counting
/// the requests it answers 200.
async fn tls_sink() -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls");
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(dir.join("server.pem"))
        .expect("server.pem")
        .collect::<Result<_, _>>()
        .expect("certificates");
    let key = PrivateKeyDer::from_pem_file(dir.join("server.key")).expect("server.key");
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("versions")
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .expect("server config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let count = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let served = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            let served = served.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(stream).await else {
                    return;
                };
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let served = served.clone();
                        async move {
                            let _ = req.into_body().collect().await;
                            served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                            Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(
                                Bytes::new(),
                            )))
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    (addr, count)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_to_a_private_ca_needs_its_ca_file_and_works_with_it() {
    let (addr, served) = tls_sink().await;
    let url = format!("https://localhost:{}/hooks", addr.port());
    let ca = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/tls/ca.pem");

    // Without the CA the endpoint's certificate is not trusted: retried, then a dead letter.
    let upstream = Sink::start().await;
    let without = Sidecar::start(&config(&upstream.url(""), &url, "")).await;
    assert_eq!(post_status(&without, "wamid.untrusted").await, 200);
    let dead = eventually("a dead letter", || async {
        let (_, list) = without.admin("GET", "/dead-letters").await;
        list.as_array().filter(|l| !l.is_empty()).cloned()
    })
    .await;
    let reason = dead[0]["reason"].as_str().unwrap_or_default().to_owned();
    assert!(reason.contains("certificate"), "{reason}");
    assert_eq!(served.load(std::sync::atomic::Ordering::SeqCst), 0);

    // With `tls.ca_file` it is delivered.
    let with = Sidecar::start(&config(
        &upstream.url(""),
        &url,
        &format!("tls: {{ ca_file: \"{}\" }}", ca.display()),
    ))
    .await;
    assert_eq!(post_status(&with, "wamid.trusted").await, 200);
    eventually("an https delivery", || async {
        (served.load(std::sync::atomic::Ordering::SeqCst) == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_cookies_are_not_proxied_to_the_upstream() {
    // A browser sends the admin page's cookies to every port of the host, the public
    // listener's too: the upstream gets the request without them, and with its own.
    let upstream = Sink::start().await;
    let sink = Sink::start().await;
    let s = Sidecar::start(&config(&upstream.url(""), &sink.url("/hooks"), "")).await;
    for (sent, expected) in [
        (
            "app=1; hookrelay_session=1765000000000.abcd; hookrelay_notice=ok%3Ax; theme=dark",
            Some("app=1; theme=dark"),
        ),
        ("hookrelay_session=1765000000000.abcd", None),
        ("app=1", Some("app=1")),
    ] {
        let before = upstream.received().len();
        let (status, _) = s.post("/api/orders", &[("cookie", sent)], "x").await;
        assert_eq!(status, 200);
        let got = upstream.wait_for(before + 1).await;
        let cookie = got[before].header("cookie");
        assert_eq!(
            (!cookie.is_empty()).then_some(cookie.as_str()),
            expected,
            "sent {sent}"
        );
    }
}
