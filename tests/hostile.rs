//! What an attacker can make the sidecar do without one valid signature. Refused
//! callbacks and connections dropped mid-request are logged at most a burst and then a
//! steady trickle per call site (every refusal is still counted); unsigned bodies cannot
//! hold more memory than `limits.unverified_bytes`; a dribbled body is cut off at
//! `limits.body_timeout`; an idle keep-alive connection is closed at
//! `limits.keepalive_timeout`; headers must arrive within `limits.header_timeout`; a
//! connection over `limits.max_connections` is answered 503 and closed.

use std::time::{Duration, Instant};

use hookrelay_tests::{Sidecar, Sink, eventually, meta_status};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const CONFIG: &str = r#"
listen: "{LISTEN}"
admin: "{ADMIN}"
upstream: http://127.0.0.1:9
store: { kind: embedded, path: "{DATA}" }
callbacks:
  - path: /wa
    provider: meta_whatsapp
    verify: { app_secret: the-real-secret }
endpoints:
  - name: crm
    url: SINK
LIMITS
"#;

fn config(sink: &Sink, limits: &str) -> String {
    CONFIG
        .replace("SINK", &sink.url("/hook"))
        .replace("LIMITS", limits)
}

/// Opens a connection and sends `head` (and no more).
async fn start_request(s: &Sidecar, head: &str) -> TcpStream {
    let mut c = TcpStream::connect(s.listen).await.expect("connect");
    c.write_all(head.as_bytes()).await.expect("write");
    c
}

/// The status of the response on `c`, waiting at most 10 s.
async fn status_of(c: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    let read = async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            match c.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("a response within 10 s");
    let text = String::from_utf8_lossy(&buf);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {text:?}"))
}

fn head(len: usize) -> String {
    format!(
        "POST /wa HTTP/1.1\r\nHost: x\r\ncontent-type: application/json\r\nx-hub-signature-256: sha256=00\r\ncontent-length: {len}\r\n\r\n"
    )
}

async fn received(s: &Sidecar) -> u64 {
    s.metrics()
        .await
        .lines()
        .find_map(|l| {
            l.strip_prefix(r#"hookrelay_callbacks_received_total{provider="meta_whatsapp"} "#)
        })
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsigned_bodies_cannot_hold_more_than_the_budget_and_signed_callbacks_still_pass() {
    let sink = Sink::start().await;
    // Large bodies may hold half of it: 1 MiB.
    let s = Sidecar::start(&config(&sink, "limits: { unverified_bytes: 2MiB }")).await;
    // An attacker declares 700 kB and sends 10 bytes of it: 700 kB of the budget is held.
    let mut held = start_request(&s, &(head(700_000) + "0123456789")).await;
    eventually("the first body to be claimed", || async {
        (received(&s).await == 1).then_some(())
    })
    .await;
    // A second one would pass the budget: 503 at once, before its body is read.
    let mut refused = start_request(&s, &head(700_000)).await;
    assert_eq!(status_of(&mut refused).await, 503);
    // A genuine callback fits in what is left.
    let body = meta_status("wamid.budget", "delivered", "15551234567");
    let (status, _) = s.post_meta_signed("/wa", "the-real-secret", body).await;
    assert_eq!(status, 200);
    assert!(
        s.metrics()
            .await
            .contains(r#"reason="unverified_budget"} 1"#),
        "the budget's refusal is counted"
    );
    // The attacker goes away: the budget is free again.
    held.shutdown().await.ok();
    drop(held);
    eventually("the budget to be given back", || async {
        let mut again = start_request(&s, &(head(10) + "0123456789")).await;
        (status_of(&mut again).await == 401).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dribbled_body_is_cut_off_at_the_body_timeout() {
    let sink = Sink::start().await;
    let s = Sidecar::start(&config(&sink, "limits: { body_timeout: 1s }")).await;
    let started = Instant::now();
    let mut c = start_request(&s, &(head(100) + "0123456789")).await;
    assert_eq!(status_of(&mut c).await, 408);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert!(s.metrics().await.contains(r#"reason="body_timeout"} 1"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_keep_alive_connection_is_closed() {
    let sink = Sink::start().await;
    let s = Sidecar::start(&config(&sink, "limits: { keepalive_timeout: 1s }")).await;
    let mut c = start_request(&s, &(head(2) + "{}")).await;
    assert_eq!(status_of(&mut c).await, 401);
    // Idle now: the server closes it (a read returns end of stream).
    let started = Instant::now();
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), c.read_to_end(&mut rest)).await;
    assert!(
        closed.is_ok(),
        "the idle connection is still open after 10 s"
    );
    assert!(
        started.elapsed() >= Duration::from_millis(500),
        "closed only once idle"
    );
}

/// The default limit of `hookrelay run`: 20 lines at once, then 1 a second, per call site.
fn allowed(elapsed_secs: f64) -> usize {
    20 + elapsed_secs.ceil() as usize + 1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_callbacks_and_dropped_connections_do_not_flood_the_log() {
    let sink = Sink::start().await;
    let s = Sidecar::start(&config(&sink, "")).await;
    let started = Instant::now();

    let body = r#"{"object":"whatsapp_business_account","entry":[]}"#;
    for _ in 0..300 {
        let (status, _) = s
            .post(
                "/wa",
                &[
                    ("content-type", "application/json"),
                    ("x-hub-signature-256", "sha256=00"),
                ],
                body,
            )
            .await;
        assert_eq!(status, 401);
    }
    // Connections that send half a request and go away.
    for _ in 0..300 {
        let mut c = tokio::net::TcpStream::connect(s.listen)
            .await
            .expect("connect");
        c.write_all(b"POST /wa HTTP/1.1\r\nHost: x\r\nContent-Le")
            .await
            .expect("write");
        drop(c);
    }
    // Every refusal is counted, whatever the log shows.
    let metrics = eventually("the refusals counted", || async {
        let m = s.metrics().await;
        m.contains(r#"hookrelay_callbacks_rejected_total{provider="meta_whatsapp",reason="bad_signature"} 300"#)
            .then_some(m)
    })
    .await;
    let elapsed = started.elapsed().as_secs_f64();
    let log = s.log();
    let refused = log.matches("callback refused").count();
    assert!(
        (1..=allowed(elapsed)).contains(&refused),
        "{refused} refusal lines in {elapsed:.1} s"
    );
    let dropped = log.lines().filter(|l| l.contains("Fail to proxy")).count();
    assert!(
        dropped <= allowed(elapsed),
        "{dropped} lines for dropped connections"
    );
    let suppressed: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("hookrelay_log_lines_suppressed_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("the suppressed-lines counter");
    assert!(
        suppressed as usize >= 300 - allowed(elapsed),
        "{suppressed} lines suppressed"
    );
}

/// Reads `c` until the server closes it, for at most `within`; whether it did.
async fn closed_within(c: &mut TcpStream, within: Duration) -> bool {
    let mut rest = Vec::new();
    tokio::time::timeout(within, c.read_to_end(&mut rest))
        .await
        .is_ok()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dribbled_headers_are_cut_off_at_the_header_timeout() {
    let sink = Sink::start().await;
    let s = Sidecar::start(&config(&sink, "limits: { header_timeout: 1s }")).await;
    let started = Instant::now();
    // One byte every 200 ms: each read is quick, the headers never end.
    let c = TcpStream::connect(s.listen).await.expect("connect");
    let (mut rd, mut wr) = c.into_split();
    let dribble = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        for b in head(2).bytes().cycle().take(10_000) {
            tick.tick().await;
            if wr.write_all(&[b]).await.is_err() {
                break;
            }
        }
    });
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut rest)).await;
    dribble.abort();
    assert!(closed.is_ok(), "dribbled headers still read after 10 s");
    assert!(started.elapsed() >= Duration::from_millis(900));
    // A connection that sends nothing at all is closed the same way.
    let mut silent = TcpStream::connect(s.listen).await.expect("connect");
    assert!(closed_within(&mut silent, Duration::from_secs(10)).await);
    eventually("both counted", || async {
        s.metrics()
            .await
            .contains(r#"hookrelay_connections_dropped_total{limit="header_timeout"} 2"#)
            .then_some(())
    })
    .await;
    // Headers that arrive in time are answered as usual, also on a kept-alive connection
    // whose next request comes after longer than the header timeout (idle time between
    // requests is the keep-alive timeout's).
    let mut c = start_request(&s, &(head(2) + "{}")).await;
    assert_eq!(whole_response(&mut c).await, 401);
    tokio::time::sleep(Duration::from_millis(1500)).await; // idle, as a client may be
    c.write_all((head(2) + "{}").as_bytes())
        .await
        .expect("write");
    assert_eq!(whole_response(&mut c).await, 401);
}

/// Reads one whole response (headers and a `content-length` body) from `c`; its status.
async fn whole_response(c: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
                let len: usize = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length:"))
                    .and_then(|v| v.trim().parse().ok())
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len {
                    return head;
                }
            }
            match c.read(&mut chunk).await {
                Ok(0) | Err(_) => return String::from_utf8_lossy(&buf).into_owned(),
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let head = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .expect("a response within 10 s");
    head.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {head:?}"))
}

/// Dribbles `bytes` on `c`, one every 200 ms, until the server closes it; whether it did
/// within 10 s, and the first line it answered.
async fn dribble_until_closed(c: TcpStream, bytes: &'static [u8]) -> (bool, String) {
    let (mut rd, mut wr) = c.into_split();
    let dribble = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(200));
        for b in bytes.iter().cycle().take(10_000) {
            tick.tick().await;
            if wr.write_all(&[*b]).await.is_err() {
                break;
            }
        }
    });
    let mut rest = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut rest))
        .await
        .is_ok();
    dribble.abort();
    let first = String::from_utf8_lossy(&rest)
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned();
    (closed, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_of_a_connection_has_the_header_deadline() {
    let sink = Sink::start().await;
    let s = Sidecar::start(&config(&sink, "limits: { header_timeout: 1s }")).await;
    // The second request on a kept-alive connection dribbles its head.
    let mut c = start_request(&s, &(head(2) + "{}")).await;
    assert_eq!(whole_response(&mut c).await, 401);
    let (closed, first) = dribble_until_closed(c, b"POST /wa HTTP/1.1\r\nx: ").await;
    assert!(closed, "a second head dribbled is still read after 10 s");
    assert!(first.contains("408"), "{first:?}");
    // Empty lines before the request line do not end the head.
    let c = TcpStream::connect(s.listen).await.expect("connect");
    let (closed, first) = dribble_until_closed(c, b"\r\n\r\nPOST /wa HTTP/1.1\r\nx: ").await;
    assert!(closed, "a head after empty lines is still read after 10 s");
    assert!(first.contains("408"), "{first:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_503_and_genuine_callbacks_pass_once_freed() {
    let sink = Sink::start().await;
    // A header deadline longer than the test, so the held connections stay held.
    let s = Sidecar::start(&config(
        &sink,
        "limits: { max_connections: 16, header_timeout: 60s }",
    ))
    .await;
    // An attacker holds every connection the cap allows, each with half a request.
    let mut held = Vec::new();
    for _ in 0..16 {
        held.push(start_request(&s, "POST /wa HTTP/1.1\r\nHost: x\r\n").await);
    }
    eventually("16 connections open", || async {
        s.metrics()
            .await
            .contains("hookrelay_connections_open 16")
            .then_some(())
    })
    .await;
    let mut over = start_request(&s, &(head(2) + "{}")).await;
    assert_eq!(status_of(&mut over).await, 503);
    let m = s.metrics().await;
    assert!(
        m.contains(r#"hookrelay_connections_dropped_total{limit="max_connections"} 1"#),
        "{m}"
    );
    assert!(m.contains("hookrelay_connections_max 16"), "{m}");
    // The attacker leaves: a genuine callback is answered.
    drop(held);
    eventually("the slots given back", || async {
        s.metrics()
            .await
            .contains("hookrelay_connections_open 0")
            .then_some(())
    })
    .await;
    let body = meta_status("wamid.cap", "delivered", "15551234567");
    let (status, _) = s.post_meta_signed("/wa", "the-real-secret", body).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn headers_over_header_bytes_get_431() {
    let sink = Sink::start().await;
    let s = Sidecar::start(&config(&sink, "limits: { header_bytes: 4KiB }")).await;
    let big = format!(
        "POST /wa HTTP/1.1\r\nHost: x\r\nx-filler: {}\r\n",
        "a".repeat(8 * 1024)
    );
    let mut c = start_request(&s, &big).await;
    assert_eq!(status_of(&mut c).await, 431);
    assert!(
        s.metrics()
            .await
            .contains(r#"hookrelay_connections_dropped_total{limit="header_bytes"} 1"#)
    );
    // Headers within the limit are read whole, even across several reads.
    let mut c = start_request(
        &s,
        &format!("POST /wa HTTP/1.1\r\nx-filler: {}\r\n", "b".repeat(3000)),
    )
    .await;
    c.write_all((head(2)["POST /wa HTTP/1.1\r\n".len()..].to_owned() + "{}").as_bytes())
        .await
        .expect("write");
    assert_eq!(status_of(&mut c).await, 401);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_open_file_limit_is_raised_and_the_connection_cap_follows_it() {
    let sink = Sink::start().await;
    // Started with a soft limit of 256 open files (a hard limit of 2048).
    let s = Sidecar::start_under(&["prlimit", "--nofile=256:2048", "--"], &config(&sink, "")).await;
    let m = s.metrics().await;
    assert!(
        m.contains("hookrelay_connections_max 1024"),
        "max_connections: auto is half the raised limit: {m}"
    );
    // 300 connections, more than the soft limit it started with, all held open.
    let mut held = Vec::new();
    for _ in 0..300 {
        held.push(start_request(&s, "POST /wa HTTP/1.1\r\nHost: x\r\n").await);
    }
    eventually("300 connections open", || async {
        s.metrics()
            .await
            .contains("hookrelay_connections_open 300")
            .then_some(())
    })
    .await;
    let body = meta_status("wamid.nofile", "delivered", "15551234567");
    let (status, _) = s.post_meta_signed("/wa", "the-real-secret", body).await;
    assert_eq!(status, 200);
}
