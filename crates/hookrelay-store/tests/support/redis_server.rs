//! A real `redis-server` for tests and benchmarks: a free port, a temporary directory,
//! append-only file fsynced on every write, killed on drop.

use std::error::Error;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// How long `redis-server` may take to answer `PING` after a start.
const READY_WITHIN: Duration = Duration::from_secs(20);

/// A port for `redis-server` to bind: below the kernel's ephemeral range (so no client or
/// kernel-assigned listener takes it before the server binds it) and apart from the ports
/// the sidecar tests hand out (20000 and up), never the same one twice in a process.
fn free_port() -> Result<u16, Box<dyn Error>> {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(0);
    const LOW: u16 = 10_000;
    const SPAN: u16 = 10_000;
    let offset = u16::try_from(std::process::id() % u32::from(SPAN)).unwrap_or(0);
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        // A step prime to the span: every port of the span once before any repeats.
        let step = (u32::from(offset) + u32::from(n) * 7919) % u32::from(SPAN);
        let port = LOW + u16::try_from(step).unwrap_or(0);
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
    Err(format!("no free port in {LOW}..{}", LOW + SPAN).into())
}

/// A `redis-server` child process.
pub(crate) struct RedisServer {
    child: Option<Child>,
    port: u16,
    dir: TempDir,
}

impl RedisServer {
    /// Starts `redis-server` on a free port with `--appendonly yes --appendfsync always` in a
    /// new temporary directory, and waits until it answers `PING`. Fails (never skips) when
    /// `redis-server` is not installed.
    pub(crate) fn start() -> Result<Self, Box<dyn Error>> {
        let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
        let port = free_port()?;
        let mut server = RedisServer {
            child: None,
            port,
            dir,
        };
        server.spawn()?;
        Ok(server)
    }

    /// `redis://127.0.0.1:<port>`.
    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Kills the server with SIGKILL (no shutdown save; the AOF is what survives).
    pub(crate) fn kill(&mut self) -> Result<(), Box<dyn Error>> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// Starts the server again on the same port with the same directory (and AOF).
    pub(crate) fn restart(&mut self) -> Result<(), Box<dyn Error>> {
        self.kill()?;
        self.spawn()
    }

    fn spawn(&mut self) -> Result<(), Box<dyn Error>> {
        let dir = self.dir.path();
        let log = dir.join("redis.log");
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args([
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
            ])
            .arg("--dir")
            .arg(dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| {
                format!(
                    "cannot start redis-server ({e}): these tests need a real Redis 7 \
                     (`redis-server` on PATH, e.g. `apt-get install redis-server`)"
                )
            })?;
        self.child = Some(child);
        self.wait_ready(&log)
    }

    /// Polls `PING` until `+PONG` (not `-LOADING`), with a deadline.
    fn wait_ready(&mut self, log: &Path) -> Result<(), Box<dyn Error>> {
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if ping(addr).unwrap_or(false) {
                return Ok(());
            }
            let exited = match &mut self.child {
                Some(child) => child.try_wait()?,
                None => None,
            };
            if exited.is_some() || Instant::now() > deadline {
                let log = std::fs::read_to_string(log).unwrap_or_default();
                return Err(format!(
                    "redis-server on port {} not ready (exited: {exited:?}); its log:\n{log}",
                    self.port
                )
                .into());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

fn ping(addr: SocketAddr) -> std::io::Result<bool> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(200))?;
    stream.set_read_timeout(Some(Duration::from_millis(500)))?;
    stream.write_all(b"PING\r\n")?;
    let mut reply = [0_u8; 16];
    let n = stream.read(&mut reply)?;
    Ok(reply[..n].starts_with(b"+PONG"))
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
