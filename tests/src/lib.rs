//! The harness of hookrelay's end-to-end tests: the real `hookrelay` binary on free ports,
//! real sink servers (and, in the replica tests, a real Redis started the way the store's
//! own tests start it).
//!
//! Nothing here sleeps to synchronise: every wait polls a condition until a deadline.
//!
//! The binary is the workspace's own build (`target/<profile>/hookrelay`, next to this
//! test's executable). `cargo test --workspace` builds it (the binary crate's CLI tests
//! need it); a binary older than any source file fails the tests loudly rather than
//! testing stale code. `HOOKRELAY_BIN=/path/to/hookrelay` runs the tests against another
//! build, as it is (to show what an older build gets wrong).

#![allow(missing_docs, unreachable_pub)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

/// How long any condition may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(30);

/// A port nothing listens on right now, for a process to bind later.
///
/// Taken below the kernel's ephemeral range (where sinks and clients get their ports from
/// the kernel, so they cannot take it in the meantime), never the same one twice in a
/// test process, and checked bindable.
pub fn free_port() -> u16 {
    // Spread test processes apart: each starts at its own offset.
    static NEXT: AtomicU16 = AtomicU16::new(0);
    const LOW: u16 = 20_000;
    const SPAN: u16 = 12_000; // 20000..32000, below the usual 32768
    let offset = u16::try_from(std::process::id() % u32::from(SPAN)).unwrap_or(0);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // A step prime to the span: every port of the span once before any repeats.
        let step = (u32::from(offset) + u32::from(n) * 7919) % u32::from(SPAN);
        let port = LOW + u16::try_from(step).unwrap_or(0);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free port in {LOW}..{}", LOW + SPAN)
}

/// Polls `f` until it returns `Some`, failing the test at the deadline.
pub async fn eventually<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = tokio::time::Instant::now();
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// One request a sink received.
#[derive(Debug, Clone)]
pub struct Received {
    pub at: std::time::Instant,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("JSON payload")
    }
    pub fn header(&self, name: &str) -> String {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

/// An HTTP server that records what it receives and answers a settable status.
pub struct Sink {
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    status: Arc<AtomicU16>,
    delay_ms: Arc<std::sync::atomic::AtomicU64>,
    requests: Arc<InFlight>,
    task: tokio::task::JoinHandle<()>,
}

/// The requests a sink is answering, and whether it holds them.
#[derive(Default)]
struct InFlight {
    now: std::sync::atomic::AtomicUsize,
    most: std::sync::atomic::AtomicUsize,
    /// While true, requests wait before they are answered.
    held: tokio::sync::watch::Sender<bool>,
}

impl InFlight {
    /// Counts a request in until its answer (or until the client goes away), waiting
    /// while the sink holds requests.
    async fn answer<T>(&self, answer: impl std::future::Future<Output = T>) -> T {
        let now = self.now.fetch_add(1, Ordering::SeqCst) + 1;
        self.most.fetch_max(now, Ordering::SeqCst);
        let _counted = Counted(&self.now);
        let mut held = self.held.subscribe();
        let _ = held.wait_for(|held| !held).await;
        answer.await
    }
}

/// Counts a request out when its answer is done or dropped.
struct Counted<'a>(&'a std::sync::atomic::AtomicUsize);

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

impl Sink {
    pub async fn start() -> Sink {
        Self::start_on("127.0.0.1:0").await
    }

    pub async fn start_on(addr: &str) -> Sink {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("bind sink");
        let addr = listener.local_addr().expect("addr");
        let received = Arc::new(Mutex::new(Vec::new()));
        let status = Arc::new(AtomicU16::new(200));
        let delay_ms = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let requests = Arc::new(InFlight::default());
        let (r, s, d, q) = (
            received.clone(),
            status.clone(),
            delay_ms.clone(),
            requests.clone(),
        );
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let (r, s, d, q) = (r.clone(), s.clone(), d.clone(), q.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: Request<Incoming>| {
                        let (r, s, d, q) = (r.clone(), s.clone(), d.clone(), q.clone());
                        async move {
                            q.answer(async move {
                                let path = req.uri().to_string();
                                let headers = req.headers().clone();
                                let body = req
                                    .into_body()
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                let delay = d.load(Ordering::SeqCst);
                                if delay > 0 {
                                    tokio::time::sleep(Duration::from_millis(delay)).await;
                                }
                                let status = s.load(Ordering::SeqCst);
                                if status == 200 {
                                    r.lock().expect("lock").push(Received {
                                        at: std::time::Instant::now(),
                                        path,
                                        headers,
                                        body,
                                    });
                                }
                                Ok::<_, std::convert::Infallible>(
                                    Response::builder()
                                        .status(status)
                                        .body(Full::new(Bytes::from_static(b"sink says no")))
                                        .expect("response"),
                                )
                            })
                            .await
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Sink {
            addr,
            received,
            status,
            delay_ms,
            requests,
            task,
        }
    }

    /// Holds every request (read, not answered) until [`Sink::release`].
    pub fn hold(&self) {
        self.requests.held.send_replace(true);
    }

    /// Answers the held requests, and the next ones at once.
    pub fn release(&self) {
        self.requests.held.send_replace(false);
    }

    /// Requests being answered (or held) now.
    pub fn in_flight(&self) -> usize {
        self.requests.now.load(Ordering::SeqCst)
    }

    /// The most requests that were being answered at once.
    pub fn most_in_flight(&self) -> usize {
        self.requests.most.load(Ordering::SeqCst)
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Answer every request with `status` (only 200s are recorded).
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::SeqCst);
    }

    /// Delay every answer by `ms` milliseconds.
    pub fn set_delay_ms(&self, ms: u64) {
        self.delay_ms.store(ms, Ordering::SeqCst);
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// The requests recorded after the first `from` (cheap to poll on a long run).
    pub fn received_since(&self, from: usize) -> Vec<Received> {
        let all = self.received.lock().expect("lock");
        all.get(from..)
            .map(<[Received]>::to_vec)
            .unwrap_or_default()
    }

    /// The last request recorded, if any.
    pub fn last(&self) -> Option<Received> {
        self.received.lock().expect("lock").last().cloned()
    }

    /// Waits until at least `n` requests were recorded.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        eventually(&format!("{n} deliveries at {}", self.addr), || async {
            let r = self.received();
            (r.len() >= n).then_some(r)
        })
        .await
    }

    pub fn stop(self) {
        self.task.abort();
    }
}

/// Plain HTTP client for tests.
pub fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build_http()
}

/// Sends a request and returns status, headers and body.
pub async fn send(req: Request<Full<Bytes>>) -> (StatusCode, HeaderMap, Bytes) {
    let resp = client().request(req).await.expect("request");
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    (status, headers, body)
}

/// A running `hookrelay run`.
pub struct Sidecar {
    pub child: Option<Child>,
    pub dir: tempfile::TempDir,
    pub listen: SocketAddr,
    pub admin: SocketAddr,
    pub config: PathBuf,
    /// A command the sidecar is started under (`prlimit …`), if any.
    pub wrapper: Vec<String>,
    /// Arguments after `run -c FILE` (`--log-format json`, …).
    pub args: Vec<String>,
}

impl Sidecar {
    /// Writes `yaml` (with `{LISTEN}`, `{ADMIN}` and `{DATA}` filled in) and starts the sidecar.
    pub async fn start(yaml: &str) -> Sidecar {
        Self::start_under(&[], yaml).await
    }

    /// [`Sidecar::start`], the process started under `wrapper` (e.g. `prlimit --nofile=…`).
    pub async fn start_under(wrapper: &[&str], yaml: &str) -> Sidecar {
        Self::start_with(wrapper, &[], yaml).await
    }

    /// [`Sidecar::start_under`], with `args` after `run -c FILE`.
    pub async fn start_with(wrapper: &[&str], args: &[&str], yaml: &str) -> Sidecar {
        let dir = tempfile::tempdir().expect("tempdir");
        let listen: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().expect("addr");
        let data = dir.path().join("data");
        let text = yaml
            .replace("{LISTEN}", &listen.to_string())
            .replace("{ADMIN}", &admin.to_string())
            .replace("{DATA}", &data.display().to_string());
        let config = dir.path().join("hookrelay.yaml");
        std::fs::write(&config, text).expect("write config");
        let mut s = Sidecar {
            child: None,
            dir,
            listen,
            admin,
            config,
            wrapper: wrapper.iter().map(|w| (*w).to_owned()).collect(),
            args: args.iter().map(|a| (*a).to_owned()).collect(),
        };
        s.spawn().await;
        s
    }

    /// Starts the process (again) on the same config and data.
    pub async fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("hookrelay.log"))
            .expect("log");
        let mut command = match self.wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        let child = command
            .args(["run", "-c"])
            .arg(&self.config)
            .args(&self.args)
            .env("RUST_LOG", "info,pingora=warn,fjall=warn,lsm_tree=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn hookrelay");
        self.child = Some(child);
        let admin = self.admin;
        let listen = self.listen;
        eventually("the sidecar to be ready", || async move {
            let req = Request::get(format!("http://{admin}/readyz"))
                .body(Full::new(Bytes::new()))
                .ok()?;
            let resp = client().request(req).await.ok()?;
            let listening = tokio::net::TcpStream::connect(listen).await.is_ok();
            (resp.status() == 200 && listening).then_some(())
        })
        .await;
        // Ready, and still running: a sidecar that could not bind its ports exits, and
        // another process answering on them must not pass for it.
        if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
            panic!("hookrelay exited during start ({status}):\n{}", self.log());
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("hookrelay.log")).unwrap_or_default()
    }

    /// SIGTERM, then waits for the process to exit; returns its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let mut c = self.child.take().expect("running");
        let pid = c.id().to_string();
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        c.wait().expect("wait")
    }

    /// `kill -9`.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Rewrites the config file (atomically, by rename).
    pub fn rewrite(&self, yaml: &str) {
        let text = yaml
            .replace("{LISTEN}", &self.listen.to_string())
            .replace("{ADMIN}", &self.admin.to_string())
            .replace(
                "{DATA}",
                &self.dir.path().join("data").display().to_string(),
            );
        let tmp = self.dir.path().join(".hookrelay.yaml.tmp");
        std::fs::write(&tmp, text).expect("write");
        std::fs::rename(&tmp, &self.config).expect("rename");
    }

    pub async fn post(
        &self,
        path: &str,
        headers: &[(&str, &str)],
        body: impl Into<Bytes>,
    ) -> (StatusCode, Bytes) {
        let mut req = Request::post(format!("http://{}{path}", self.listen));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let (s, _, b) = send(req.body(Full::new(body.into())).expect("request")).await;
        (s, b)
    }

    /// POSTs `body` to `path` as Meta would, signed with `app_secret`.
    pub async fn post_meta_signed(
        &self,
        path: &str,
        app_secret: &str,
        body: String,
    ) -> (StatusCode, Bytes) {
        let sig = meta_signature(app_secret, body.as_bytes());
        self.post(
            path,
            &[
                ("content-type", "application/json"),
                ("x-hub-signature-256", &sig),
            ],
            body,
        )
        .await
    }

    pub async fn admin(&self, method: &str, path: &str) -> (StatusCode, serde_json::Value) {
        let req = Request::builder()
            .method(method)
            .uri(format!("http://{}{path}", self.admin))
            .body(Full::new(Bytes::new()))
            .expect("request");
        let (s, _, b) = send(req).await;
        (
            s,
            serde_json::from_slice(&b).unwrap_or(serde_json::Value::String(
                String::from_utf8_lossy(&b).into_owned(),
            )),
        )
    }

    pub async fn metrics(&self) -> String {
        let req = Request::get(format!("http://{}/metrics", self.admin))
            .body(Full::new(Bytes::new()))
            .expect("req");
        String::from_utf8_lossy(&send(req).await.2).into_owned()
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Whether `r` carries a valid Standard Webhooks signature by `secret` (`whsec_…`).
pub fn signed_with(r: &Received, secret: &str) -> bool {
    use hookrelay_core::signing::{SigningSecret, verify};
    let Ok(secret) = secret.parse::<SigningSecret>() else {
        return false;
    };
    verify(
        &[secret],
        &r.header("webhook-id"),
        &r.header("webhook-timestamp"),
        &r.header("webhook-signature"),
        &r.body,
        None,
    )
    .is_ok()
}

/// `sha256=<hex HMAC-SHA256>` as Meta signs.
pub fn meta_signature(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let mut mac = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(secret.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Twilio's `X-Twilio-Signature` of a form POST to `url`.
pub fn twilio_signature(token: &str, url: &str, params: &[(&str, &str)]) -> String {
    use base64::Engine;
    use hmac::{Hmac, KeyInit, Mac};
    let mut sorted: Vec<_> = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (k, v) in sorted {
        data.push_str(k);
        data.push_str(v);
    }
    let mut mac = <Hmac<sha1::Sha1> as KeyInit>::new_from_slice(token.as_bytes()).expect("key");
    mac.update(data.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// A form body from pairs.
pub fn form(params: &[(&str, &str)]) -> String {
    let mut s = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        s.append_pair(k, v);
    }
    s.finish()
}

/// A Mailgun `delivered` event `event_id` signed with `signing_key` over now and `token`.
pub fn mailgun_event(signing_key: &str, token: &str, event_id: &str) -> String {
    use hmac::{Hmac, KeyInit, Mac};
    let ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
        .to_string();
    let mut mac =
        <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(signing_key.as_bytes()).expect("key");
    mac.update(ts.as_bytes());
    mac.update(token.as_bytes());
    let signature = hex::encode(mac.finalize().into_bytes());
    serde_json::json!({
        "signature": {"timestamp": ts, "token": token, "signature": signature},
        "event-data": {"event": "delivered", "id": event_id, "timestamp": 1_700_000_000.5,
                       "recipient": "m@example.com", "message": {"headers": {"message-id": "x@mg"}}}
    })
    .to_string()
}

/// A Meta WhatsApp status callback for message `wamid` with `status`.
pub fn meta_status(wamid: &str, status: &str, recipient: &str) -> String {
    serde_json::json!({
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {
            "messaging_product": "whatsapp",
            "metadata": {"display_phone_number": "15550001111", "phone_number_id": "42"},
            "statuses": [{"id": wamid, "status": status, "timestamp": "1700000000", "recipient_id": recipient}]
        }}]}]
    })
    .to_string()
}

/// The `hookrelay` binary under test; panics when it is missing or older than the sources.
pub fn binary() -> PathBuf {
    static BINARY: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    BINARY.get_or_init(find_binary).clone()
}

fn find_binary() -> PathBuf {
    // An explicit binary (another build, to compare) is taken as it is.
    if let Some(p) = std::env::var_os("HOOKRELAY_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("the test executable's path");
    // target/<profile>/deps/<test> → target/<profile>/hookrelay
    let path = exe
        .parent()
        .and_then(|deps| deps.parent())
        .map(|profile| profile.join("hookrelay"))
        .expect("target directory");
    let built = std::fs::metadata(&path)
        .and_then(|m| m.modified())
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e}: build the binary first (`cargo build -p hookrelay`, or run the whole \
                 suite with `cargo test --workspace`)",
                path.display()
            )
        });
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let mut newest = None;
    newest_source(&root.join("crates"), &mut newest);
    for file in ["Cargo.lock", "Cargo.toml"] {
        consider(&root.join(file), &mut newest);
    }
    if let Some((source, at)) = newest
        && at > built
    {
        panic!(
            "{} is older than {}: rebuild it (`cargo build -p hookrelay`) so the tests do not \
             run stale code",
            path.display(),
            source.display()
        );
    }
    path
}

fn consider(path: &std::path::Path, newest: &mut Option<(PathBuf, std::time::SystemTime)>) {
    if let Ok(at) = std::fs::metadata(path).and_then(|m| m.modified())
        && newest.as_ref().is_none_or(|(_, n)| at > *n)
    {
        *newest = Some((path.to_owned(), at));
    }
}

/// The newest `.rs`, `.toml` or `.lua` file under each crate's `src/` and manifest.
fn newest_source(crates: &std::path::Path, newest: &mut Option<(PathBuf, std::time::SystemTime)>) {
    fn walk(dir: &std::path::Path, newest: &mut Option<(PathBuf, std::time::SystemTime)>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(&path, newest);
            } else if path
                .extension()
                .is_some_and(|e| e == "rs" || e == "lua" || e == "toml")
            {
                consider(&path, newest);
            }
        }
    }
    let Ok(entries) = std::fs::read_dir(crates) else {
        return;
    };
    for entry in entries.flatten() {
        consider(&entry.path().join("Cargo.toml"), newest);
        walk(&entry.path().join("src"), newest);
    }
}
