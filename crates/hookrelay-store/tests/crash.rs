//! `kill -9` in the middle of enqueueing: every acknowledged delivery is there after reopen.
//!
//! The test binary runs itself as the child (`crash_child`, a no-op unless the environment
//! variable is set). The child prints `ACK <id>` after each `enqueue` returned `Ok`; the
//! parent reads those lines, kills the child with SIGKILL after enough of them, reads what
//! was already printed, and checks the reopened store.

use bytes::Bytes;
use hookrelay_store::{EmbeddedStore, EnqueueOutcome, NewDelivery};
use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "HOOKRELAY_STORE_CRASH_CHILD";
const KILL_AFTER_ACKS: usize = 2_000;

type TestResult = Result<(), Box<dyn std::error::Error + Send + Sync>>;

#[test]
fn crash_child() -> TestResult {
    let Some(dir) = std::env::var_os(CHILD_ENV) else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()?;
    runtime.block_on(async move {
        let store = EmbeddedStore::open(&dir)?;
        // Bounded: it stops by itself if the parent never kills it.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut tasks = tokio::task::JoinSet::new();
        for task in 0..8 {
            let store = store.clone();
            tasks.spawn(async move {
                for i in 0..100_000 {
                    if Instant::now() > deadline {
                        break;
                    }
                    let key = Some((format!("evt-{task}-{i}"), Duration::from_secs(3600)));
                    let delivery = NewDelivery {
                        endpoint: "crm".into(),
                        webhook_id: format!("msg-{task}-{i}"),
                        body: Bytes::from(vec![b'x'; 512]),
                        created_at_ms: 0,
                    };
                    let outcome = store.enqueue(key, vec![delivery], 0).await?;
                    if let EnqueueOutcome::Enqueued(ids) = outcome {
                        let mut out = std::io::stdout().lock();
                        for id in ids {
                            writeln!(out, "ACK {id}")?;
                        }
                        out.flush()?;
                    }
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            });
        }
        while let Some(joined) = tasks.join_next().await {
            joined??;
        }
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })?;
    Ok(())
}

#[test]
fn acknowledged_deliveries_survive_kill_9() -> TestResult {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let mut child = Command::new(std::env::current_exe()?)
        .args(["--exact", "crash_child", "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = child.stdout.take().ok_or("child has no stdout")?;
    let mut lines = BufReader::new(stdout);
    let mut acked = BTreeSet::new();
    let mut killed = false;
    let mut line = String::new();
    loop {
        line.clear();
        // EOF once the child is dead and everything it wrote has been read.
        if lines.read_line(&mut line)? == 0 {
            break;
        }
        // Only complete lines count: a line cut by the kill acknowledges nothing.
        if let Some(id) = line.strip_prefix("ACK ").and_then(|l| l.strip_suffix('\n')) {
            acked.insert(id.parse::<u64>()?);
        }
        if !killed && acked.len() >= KILL_AFTER_ACKS {
            child.kill()?; // SIGKILL
            killed = true;
        }
    }
    let status = child.wait()?;
    assert!(
        killed,
        "the child ended on its own ({status}) after {} acks",
        acked.len()
    );

    let store = EmbeddedStore::open(dir.path())?;
    let present: BTreeSet<u64> = lease_all(&store)?;
    eprintln!(
        "{} acknowledged before the kill, {} present after reopen",
        acked.len(),
        present.len()
    );
    let missing: Vec<&u64> = acked.difference(&present).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
    assert!(present.len() >= acked.len());
    Ok(())
}

fn lease_all(
    store: &EmbeddedStore,
) -> Result<BTreeSet<u64>, Box<dyn std::error::Error + Send + Sync>> {
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let leased = runtime.block_on(async {
        store.health().await?;
        store.lease("crm", i64::MAX, usize::MAX).await
    })?;
    Ok(leased.into_iter().map(|d| d.id.0).collect())
}
