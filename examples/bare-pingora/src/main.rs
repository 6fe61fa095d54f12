//! `bare-pingora PORT [THREADS]`: the baseline of `scripts/load`.
//!
//! A Pingora server on `127.0.0.1:PORT` whose `request_filter` reads the whole request
//! body and answers `200` with an empty body: the same listener, HTTP parser and runtime
//! as hookrelay's public listener, without verification, normalization or the store.
//! It counts the requests it answered; `GET /count` returns that number, so the same
//! binary also serves as the delivery sink of the load run.
//!
//! It is a measuring stick, not an example to copy: it proxies nothing.

use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::proxy::{ProxyHttp, Session, http_proxy_service};
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};

/// Answers 200 to every request after reading its body.
struct Bare {
    /// Requests answered (`GET /count` excluded).
    answered: AtomicU64,
}

async fn respond(session: &mut Session, status: u16, body: Bytes) -> Result<()> {
    let mut resp = ResponseHeader::build(status, Some(2))?;
    resp.insert_header("content-length", body.len().to_string())?;
    resp.insert_header("content-type", "text/plain")?;
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

#[async_trait]
impl ProxyHttp for Bare {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn request_filter(&self, session: &mut Session, _ctx: &mut ()) -> Result<bool> {
        if session.req_header().uri.path() == "/count" {
            let n = self.answered.load(Ordering::Relaxed);
            respond(session, 200, Bytes::from(format!("{n}\n"))).await?;
            return Ok(true);
        }
        let mut len = 0usize;
        while let Some(chunk) = session.read_request_body().await? {
            len += chunk.len();
        }
        std::hint::black_box(len);
        self.answered.fetch_add(1, Ordering::Relaxed);
        respond(session, 200, Bytes::new()).await?;
        Ok(true)
    }

    async fn upstream_peer(&self, _session: &mut Session, _ctx: &mut ()) -> Result<Box<HttpPeer>> {
        // request_filter answers every request: nothing is ever proxied.
        Error::e_explain(ErrorType::InternalError, "bare-pingora proxies nothing")
    }
}

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let port = args.next().and_then(|p| p.parse::<u16>().ok());
    let threads = args.next().map_or(Some(2), |t| t.parse::<usize>().ok());
    let (Some(port), Some(threads)) = (port, threads) else {
        eprintln!("usage: bare-pingora PORT [THREADS]   (threads default 2, as hookrelay)");
        return ExitCode::from(64);
    };
    let conf = ServerConf {
        threads,
        // As hookrelay's listener: one runtime per thread.
        work_stealing: false,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(0),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = http_proxy_service(
        &server.configuration,
        Bare {
            answered: AtomicU64::new(0),
        },
    );
    service.add_tcp(&format!("127.0.0.1:{port}"));
    server.add_service(service);
    server.run(RunArgs::default());
    ExitCode::SUCCESS
}
