//! `kill -9` in the middle of enqueueing: every acknowledged delivery is there after reopen.
//! And `kill -9` while a large backlog drains: nothing acknowledged is lost, and nothing
//! recorded done before the last sync the child saw is queued again. And `kill -9` right
//! after completions returned, before their lazy sync: they are not queued again (an
//! outcome is handed to the OS at once).
//!
//! The test binary runs itself as the child (`crash_child` and `backlog_child`, no-ops
//! unless their environment variable is set). The child prints `ACK <id>` after each
//! `enqueue` returned `Ok` (`TRY <id>` before completing a delivery, and `DONE <id>` once a
//! later durable write synced its completion, `WRITTEN <id>` once `complete` returned
//! without a sync);
//! the parent reads those lines, kills the child with SIGKILL after enough of them, reads
//! what was already printed, and checks the reopened store.

use bytes::Bytes;
use hookrelay_store::{EmbeddedStore, EnqueueOutcome, NewDelivery};
use std::collections::{BTreeSet, HashMap};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const CHILD_ENV: &str = "HOOKRELAY_STORE_CRASH_CHILD";
const BACKLOG_ENV: &str = "HOOKRELAY_STORE_BACKLOG_CHILD";
const WRITTEN_ENV: &str = "HOOKRELAY_STORE_WRITTEN_CHILD";
/// Deliveries the written child completes before it waits to be killed.
const WRITTEN: u64 = 300;
/// Deliveries queued before the backlog child starts draining.
const BACKLOG: u64 = 50_000;
/// The backlog child is killed after this many synced completions.
const KILL_AFTER_DONE: usize = 5_000;
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
                        trace: None,
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
        join_all(tasks).await
    })?;
    Ok(())
}

/// A delivery of the backlog child.
/// Waits for every task; the first error (or panic) of any.
async fn join_all(mut tasks: tokio::task::JoinSet<TestResult>) -> TestResult {
    while let Some(joined) = tasks.join_next().await {
        joined??;
    }
    Ok(())
}

fn delivery(webhook_id: String) -> NewDelivery {
    NewDelivery {
        endpoint: "crm".into(),
        webhook_id,
        body: Bytes::from(vec![b'x'; 512]),
        created_at_ms: 0,
        trace: None,
    }
}

/// Prints `tag id` lines, flushed at once.
fn print(tag: &str, ids: impl IntoIterator<Item = u64>) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    for id in ids {
        writeln!(out, "{tag} {id}")?;
    }
    out.flush()
}

#[test]
fn backlog_child() -> TestResult {
    let Some(dir) = std::env::var_os(BACKLOG_ENV) else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()?;
    runtime.block_on(async move {
        let store = EmbeddedStore::open(&dir)?;
        let deadline = Instant::now() + Duration::from_secs(60);
        for chunk in 0..BACKLOG / 500 {
            let batch = (0..500)
                .map(|i| delivery(format!("old-{}", chunk * 500 + i)))
                .collect();
            if let EnqueueOutcome::Enqueued(ids) = store.enqueue(None, batch, 0).await? {
                print("ACK", ids.into_iter().map(|id| id.0))?;
            }
        }
        let mut tasks = tokio::task::JoinSet::new();
        // New callbacks keep arriving while the backlog drains.
        let producer = store.clone();
        tasks.spawn(async move {
            for i in 0.. {
                if Instant::now() > deadline {
                    break;
                }
                let key = Some((format!("new-{i}"), Duration::from_secs(3600)));
                let outcome = producer
                    .enqueue(key, vec![delivery(format!("new-{i}"))], 0)
                    .await?;
                if let EnqueueOutcome::Enqueued(ids) = outcome {
                    print("ACK", ids.into_iter().map(|id| id.0))?;
                }
            }
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        });
        // Two workers: lease, complete, then a durable write (an enqueue of a dedupe key
        // alone), which syncs the completions before it: only then are they `DONE`.
        for worker in 0..2 {
            let store = store.clone();
            tasks.spawn(async move {
                for round in 0.. {
                    if Instant::now() > deadline {
                        break;
                    }
                    let leased = store.lease("crm", 0, 100).await?;
                    // Completed from here on, perhaps: present or not after the kill.
                    print("TRY", leased.iter().map(|d| d.id.0))?;
                    let mut done = Vec::with_capacity(leased.len());
                    for d in leased {
                        store.complete(d.id).await?;
                        done.push(d.id.0);
                    }
                    let key = Some((format!("sync-{worker}-{round}"), Duration::from_secs(3600)));
                    store.enqueue(key, Vec::new(), 0).await?;
                    print("DONE", done)?;
                }
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            });
        }
        join_all(tasks).await
    })?;
    Ok(())
}

#[test]
fn a_kill_9_while_a_large_backlog_drains_loses_nothing_and_repeats_nothing_synced_done()
-> TestResult {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let mut seen = run_child("backlog_child", BACKLOG_ENV, dir.path(), |seen| {
        seen.get("DONE")
            .is_some_and(|done| done.len() >= KILL_AFTER_DONE)
    })?;
    let acked = seen.remove("ACK").unwrap_or_default();
    let tried = seen.remove("TRY").unwrap_or_default();
    let done = seen.remove("DONE").unwrap_or_default();
    assert!(acked.len() as u64 > BACKLOG, "the backlog was queued");

    let store = EmbeddedStore::open(dir.path())?;
    let present = lease_all(&store)?;
    eprintln!(
        "{} acknowledged, {} synced done before the kill; {} queued after reopen",
        acked.len(),
        done.len(),
        present.len()
    );
    let lost: Vec<&u64> = acked
        .iter()
        .filter(|id| !tried.contains(id) && !present.contains(id))
        .collect();
    assert!(
        lost.is_empty(),
        "acknowledged, never completed, but lost: {lost:?}"
    );
    let repeated: Vec<&u64> = done.intersection(&present).collect();
    assert!(
        repeated.is_empty(),
        "synced done but queued again: {repeated:?}"
    );
    assert_eq!(
        store.queue_depth("crm"),
        present.len() as u64,
        "the depth counter agrees"
    );
    Ok(())
}

/// Runs test `child` of this binary as a child process with `env` set to `dir`, reads
/// the `TAG id` lines it prints (whole lines only: a line cut by the kill counts for
/// nothing), kills it with SIGKILL once `enough` says so, and returns the ids by tag.
fn run_child(
    child: &str,
    env: &str,
    dir: &std::path::Path,
    enough: impl Fn(&HashMap<String, BTreeSet<u64>>) -> bool,
) -> Result<HashMap<String, BTreeSet<u64>>, Box<dyn std::error::Error + Send + Sync>> {
    let mut process = Command::new(std::env::current_exe()?)
        .args(["--exact", child, "--nocapture", "--test-threads=1"])
        .env(env, dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let stdout = process.stdout.take().ok_or("child has no stdout")?;
    let mut lines = BufReader::new(stdout);
    let mut seen: HashMap<String, BTreeSet<u64>> = HashMap::new();
    let mut killed = false;
    let mut line = String::new();
    loop {
        line.clear();
        // EOF once the child is dead and everything it wrote has been read.
        if lines.read_line(&mut line)? == 0 {
            break;
        }
        // The test harness prints lines of its own: only `TAG id` lines count.
        let Some((tag, id)) = line
            .strip_suffix('\n')
            .and_then(|l| l.split_once(' '))
            .filter(|(tag, _)| !tag.is_empty() && tag.bytes().all(|b| b.is_ascii_uppercase()))
        else {
            continue;
        };
        seen.entry(tag.to_owned()).or_default().insert(id.parse()?);
        if !killed && enough(&seen) {
            process.kill()?; // SIGKILL
            killed = true;
        }
    }
    let status = process.wait()?;
    assert!(killed, "the child ended on its own ({status})");
    Ok(seen)
}

#[test]
fn written_child() -> TestResult {
    let Some(dir) = std::env::var_os(WRITTEN_ENV) else {
        return Ok(());
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    runtime.block_on(async move {
        let store = EmbeddedStore::open(&dir)?;
        let batch = (0..WRITTEN).map(|i| delivery(format!("w-{i}"))).collect();
        store.enqueue(None, batch, 0).await?;
        let leased = store.lease("crm", 0, WRITTEN as usize).await?;
        let mut written = Vec::with_capacity(leased.len());
        for d in leased {
            store.complete(d.id).await?;
            written.push(d.id.0);
        }
        // A line of its own: the harness's `test written_child ... ` has no newline.
        println!();
        print("WRITTEN", written)?;
        // The parent kills it now, well within the 100 ms before the lazy sync; bounded
        // if it never does.
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
    })
}

#[test]
fn completions_returned_before_a_kill_9_are_not_queued_again() -> TestResult {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let mut seen = run_child("written_child", WRITTEN_ENV, dir.path(), |seen| {
        seen.get("WRITTEN")
            .is_some_and(|written| written.len() as u64 >= WRITTEN)
    })?;
    let written = seen.remove("WRITTEN").unwrap_or_default();
    let store = EmbeddedStore::open(dir.path())?;
    let present = lease_all(&store)?;
    let repeated: Vec<&u64> = written.intersection(&present).collect();
    assert!(
        repeated.is_empty(),
        "{} of {} completions queued again after the kill: {repeated:?}",
        repeated.len(),
        written.len()
    );
    assert_eq!(store.queue_depth("crm"), 0);
    Ok(())
}

#[test]
fn acknowledged_deliveries_survive_kill_9() -> TestResult {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let mut seen = run_child("crash_child", CHILD_ENV, dir.path(), |seen| {
        seen.get("ACK")
            .is_some_and(|acked| acked.len() >= KILL_AFTER_ACKS)
    })?;
    let acked = seen.remove("ACK").unwrap_or_default();

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
