//! What only the embedded store does, through its public API, on the real file system
//! (fsync included): reopening, group commit, the writer thread, torn and damaged
//! journals, the dedupe windows, the budget, and where it differs from Redis (times are
//! the callers' `now_ms`). What both backends do is the contract, in `contract/`.

#[allow(dead_code)]
#[path = "support/deliveries.rs"]
mod deliveries;

use bytes::Bytes;
use deliveries::{ids, new};
use hookrelay_store::{
    DeliveryId, EmbeddedOptions, EmbeddedStore, EnqueueOutcome, Store, StoreConfig, StoreError,
};
use std::time::Duration;
use tempfile::TempDir;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn dir() -> Result<TempDir, std::io::Error> {
    tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))
}

const HOUR: Duration = Duration::from_secs(3600);

/// A new delivery is due at the `now_ms` it was enqueued with (with Redis, at once).
#[tokio::test]
async fn a_new_delivery_is_due_from_its_enqueue_time() -> TestResult {
    let dir = dir()?;
    let store = EmbeddedStore::open(dir.path())?;
    store.enqueue(None, vec![new("crm", "a")], 1_000).await?;
    assert_eq!(store.next_due("crm")?, Some(1_000));
    assert!(store.lease("crm", 999, 10).await?.is_empty());
    assert_eq!(store.lease("crm", 1_000, 10).await?.len(), 1);
    Ok(())
}

/// With nothing due that is not leased, `next_due` is `None` (with Redis, the poll interval
/// away).
#[tokio::test]
async fn next_due_is_none_when_nothing_waits() -> TestResult {
    let dir = dir()?;
    let store = EmbeddedStore::open(dir.path())?;
    assert_eq!(store.next_due("crm")?, None, "nothing ever queued");
    store
        .enqueue(None, vec![new("crm", "a"), new("crm", "b")], 1_000)
        .await?;
    let leased = store.lease("crm", 1_000, 10).await?;
    assert_eq!(leased.len(), 2);
    store
        .reschedule(leased[0].id, 61_000, 1, Some("503".into()))
        .await?;
    assert_eq!(store.next_due("crm")?, Some(61_000));
    let a = store.lease("crm", 61_000, 10).await?;
    assert_eq!(a.len(), 1);
    assert_eq!(store.next_due("crm")?, None, "all leased");
    store.complete(a[0].id).await?;
    store.complete(leased[1].id).await?;
    assert_eq!(store.next_due("crm")?, None, "nothing queued");
    Ok(())
}

/// A replayed dead letter keeps its id and its queue time across a reopen and a second one.
#[tokio::test]
async fn a_replayed_dead_letter_is_kept_by_a_reopen_and_a_second_reopen() -> TestResult {
    let dir = dir()?;
    let a = {
        let store = EmbeddedStore::open(dir.path())?;
        store
            .enqueue(None, vec![new("crm", "a"), new("ops", "b")], 1_000)
            .await?;
        let a = store.lease("crm", 1_000, 1).await?.remove(0);
        store
            .dead_letter(a.id, "attempts exhausted", Some(500), None, 9_000)
            .await?;
        assert!(store.replay(a.id, 5_000).await?);
        // Leased when the process goes away.
        assert_eq!(store.lease("crm", 0, 10).await?.len(), 1);
        a.id
    };
    let store = EmbeddedStore::open_with(dir.path(), EmbeddedOptions::default())?;
    let again = store.lease("crm", 0, 10).await?;
    assert_eq!(
        (again[0].id, again[0].created_at_ms),
        (a, 5_000),
        "after reopen"
    );
    // A second reopen keeps it too.
    store.release(again[0].id).await?;
    for delivery in store.lease("ops", i64::MAX, 10).await? {
        store.complete(delivery.id).await?;
    }
    // Any commit checks whether to compact.
    store.enqueue(Some(("k".into(), HOUR)), vec![], 0).await?;
    drop(store);
    let store = EmbeddedStore::open(dir.path())?;
    let again = store.lease("crm", 0, 10).await?;
    assert_eq!(
        (again[0].id, again[0].created_at_ms),
        (a, 5_000),
        "after a second reopen"
    );
    Ok(())
}

/// A dead letter written as such, and its dedupe key, are kept by a reopen and a
/// second one, and it is never queued after either.
#[tokio::test]
async fn a_dead_letter_written_as_such_is_kept_by_a_reopen_and_a_second_reopen() -> TestResult {
    let dir = dir()?;
    let key = || Some(("meta_whatsapp:evt_u".to_owned(), HOUR));
    let id = {
        let store = EmbeddedStore::open(dir.path())?;
        let outcome = store
            .enqueue_dead_letter(key(), new(":unparsed", "u"), "unparsed: too deep", 2_000)
            .await?;
        ids(outcome).remove(0)
    };
    let store = EmbeddedStore::open_with(dir.path(), EmbeddedOptions::default())?;
    let found = store.find_dead_letter(id).await?.ok_or("after reopen")?;
    assert_eq!(found.reason, "unparsed: too deep");
    assert!(store.lease(":unparsed", i64::MAX, 10).await?.is_empty());
    assert_eq!(
        store
            .enqueue_dead_letter(key(), new(":unparsed", "u"), "unparsed: too deep", 3_000)
            .await?,
        EnqueueOutcome::Duplicate
    );
    // Deliveries done with: the log grows past four times what is live.
    let batch = (0..20).map(|i| new("crm", &format!("d{i}"))).collect();
    store.enqueue(None, batch, 3_000).await?;
    for delivery in store.lease("crm", 3_000, 20).await? {
        store.complete(delivery.id).await?;
    }
    // Any commit checks whether to compact.
    store
        .enqueue(Some(("k".into(), HOUR)), vec![], 3_000)
        .await?;
    drop(store);
    let store = EmbeddedStore::open(dir.path())?;
    let letters = store.dead_letters(Some(":unparsed"), 10).await?;
    assert_eq!(letters.len(), 1, "after a second reopen");
    assert_eq!(letters[0].delivery.id, id);
    assert_eq!(
        letters[0].delivery.body,
        Bytes::from_static(br#"{"id":"u"}"#)
    );
    assert!(store.lease(":unparsed", i64::MAX, 10).await?.is_empty());
    assert!(store.endpoints().is_empty());
    // The key is live until its window ends; ids go on past the letter's.
    assert_eq!(
        store
            .enqueue_dead_letter(key(), new(":unparsed", "u"), "unparsed: too deep", 4_000)
            .await?,
        EnqueueOutcome::Duplicate
    );
    let next = ids(store.enqueue(None, vec![new("crm", "a")], 4_000).await?);
    assert!(next[0] > id);
    Ok(())
}

/// A deleted dead letter stays deleted after a reopen and a second one; the others stay.
#[tokio::test]
async fn a_deleted_dead_letter_stays_deleted_after_a_reopen_and_a_second_reopen() -> TestResult {
    let dir = dir()?;
    let (gone, kept) = {
        let store = EmbeddedStore::open(dir.path())?;
        let gone = ids(store
            .enqueue_dead_letter(None, new(":unparsed", "g"), "unparsed: x", 1_000)
            .await?)[0];
        let kept = ids(store
            .enqueue_dead_letter(None, new(":unparsed", "k"), "unparsed: y", 1_000)
            .await?)[0];
        assert!(store.delete_dead_letter(gone).await?);
        (gone, kept)
    };
    let store = EmbeddedStore::open_with(dir.path(), EmbeddedOptions::default())?;
    assert_eq!(store.find_dead_letter(gone).await?, None, "after reopen");
    assert!(store.find_dead_letter(kept).await?.is_some());
    // Deliveries done with: the log grows past four times what is live, and compacts.
    let batch = (0..20).map(|i| new("crm", &format!("d{i}"))).collect();
    store.enqueue(None, batch, 2_000).await?;
    for delivery in store.lease("crm", 2_000, 20).await? {
        store.complete(delivery.id).await?;
    }
    store
        .enqueue(Some(("k".into(), HOUR)), vec![], 2_000)
        .await?;
    drop(store);
    let store = EmbeddedStore::open(dir.path())?;
    let left = store.dead_letters(None, 10).await?;
    assert_eq!(
        left.iter().map(|l| l.delivery.id).collect::<Vec<_>>(),
        [kept],
        "after a second reopen"
    );
    Ok(())
}

/// Retries made due by `retry_now` are due at the new time after a reopen, attempts kept.
#[tokio::test]
async fn retries_made_due_survive_a_reopen() -> TestResult {
    let dir = dir()?;
    let (a, b) = {
        let store = EmbeddedStore::open(dir.path())?;
        store
            .enqueue(None, vec![new("crm", "a"), new("crm", "b")], 1_000)
            .await?;
        let leased = store.lease("crm", 1_000, 10).await?;
        store
            .reschedule(leased[0].id, 900_000, 4, Some("timeout".into()))
            .await?;
        store.reschedule(leased[1].id, 900_000, 2, None).await?;
        assert_eq!(store.retry_now("crm", 5_000).await?, 2);
        (leased[0].id, leased[1].id)
    };
    let store = EmbeddedStore::open(dir.path())?;
    assert_eq!(store.next_due("crm")?, Some(5_000), "after reopen");
    assert!(store.lease("crm", 4_999, 10).await?.is_empty());
    let due = store.lease("crm", 5_000, 10).await?;
    let got: Vec<(DeliveryId, u32, i64, Option<&str>)> = due
        .iter()
        .map(|d| (d.id, d.attempts, d.not_before_ms, d.last_error.as_deref()))
        .collect();
    assert_eq!(got, [(a, 4, 5_000, Some("timeout")), (b, 2, 5_000, None)]);
    Ok(())
}

/// One-time tokens: by the caller's clock, kept by a reopen and a second one while live,
/// a forgotten one stays forgotten.
#[tokio::test]
async fn one_time_tokens_survive_a_reopen_and_a_second_reopen() -> TestResult {
    let dir = dir()?;
    let ttl = Duration::from_millis(100_000);
    {
        let store = EmbeddedStore::open(dir.path())?;
        assert!(store.first_use("tok", ttl, 0).await?);
        assert!(store.first_use("forgotten", ttl, 0).await?);
        store.forget_use("forgotten").await?;
        assert!(!store.first_use("tok", ttl, 99_999).await?);
        assert!(
            store
                .first_use("short", Duration::from_millis(10), 0)
                .await?
        );
    }
    let store = EmbeddedStore::open_with(dir.path(), EmbeddedOptions::default())?;
    assert!(!store.first_use("tok", ttl, 1_000).await?, "after reopen");
    assert!(store.first_use("short", ttl, 1_000).await?, "expired");
    // Any commit checks whether to compact.
    store
        .enqueue(Some(("k".into(), HOUR)), vec![], 1_000)
        .await?;
    drop(store);
    let store = EmbeddedStore::open(dir.path())?;
    assert!(
        !store.first_use("tok", ttl, 99_999).await?,
        "after a second reopen"
    );
    assert!(!store.first_use("short", ttl, 1_000).await?);
    assert!(store.first_use("forgotten", ttl, 1_000).await?);
    // At its expiry the token can be used again.
    assert!(store.first_use("tok", ttl, 100_000).await?);
    Ok(())
}

/// A dedupe window counts by the callers' `now_ms` (with Redis, by Redis's clock).
#[tokio::test]
async fn the_dedupe_window_counts_by_the_callers_clock() -> TestResult {
    let dir = dir()?;
    let store = EmbeddedStore::open(dir.path())?;
    let key = || Some(("sendgrid:evt1".to_owned(), Duration::from_secs(60)));
    let first = store.enqueue(key(), vec![new("crm", "a")], 10_000).await?;
    assert!(matches!(first, EnqueueOutcome::Enqueued(ref ids) if ids.len() == 1));
    assert_eq!(
        store.enqueue(key(), vec![new("crm", "a")], 69_999).await?,
        EnqueueOutcome::Duplicate
    );
    // At expiry it is accepted again, with a new window.
    let later = store.enqueue(key(), vec![new("crm", "a")], 70_000).await?;
    assert!(matches!(later, EnqueueOutcome::Enqueued(ref ids) if ids.len() == 1));
    assert_eq!(
        store.enqueue(key(), vec![], 129_999).await?,
        EnqueueOutcome::Duplicate
    );
    assert_eq!(store.queue_depth("crm"), 2);
    Ok(())
}

#[tokio::test]
async fn expired_dedupe_keys_are_purged_and_survive_reopen_until_then() -> TestResult {
    let dir = dir()?;
    {
        let store = EmbeddedStore::open(dir.path())?;
        for i in 0..10 {
            store
                .enqueue(
                    Some((format!("e{i}"), Duration::from_millis(100))),
                    vec![],
                    0,
                )
                .await?;
        }
    }
    let store = EmbeddedStore::open(dir.path())?;
    // The window is durable.
    assert_eq!(
        store.enqueue(Some(("e3".into(), HOUR)), vec![], 50).await?,
        EnqueueOutcome::Duplicate
    );
    // Expired keys are accepted again (and purged by later commits).
    for i in 0..10 {
        let outcome = store
            .enqueue(Some((format!("e{i}"), HOUR)), vec![], 1_000)
            .await?;
        assert_eq!(outcome, EnqueueOutcome::Enqueued(vec![]));
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_share_commits() -> TestResult {
    let dir = dir()?;
    let store = EmbeddedStore::open(dir.path())?;
    let before = store.commits();
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..200 {
        let store = store.clone();
        tasks.spawn(async move {
            let key = Some((format!("evt{i}"), HOUR));
            store
                .enqueue(key, vec![new("crm", &format!("w{i}"))], 1_000)
                .await
        });
    }
    let mut all = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        all.extend(ids(joined??));
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 200);
    assert_eq!(store.queue_depth("crm"), 200);
    let commits = store.commits() - before;
    eprintln!("{commits} commits for 200 concurrent enqueues");
    assert!(
        (1..50).contains(&commits),
        "{commits} commits for 200 enqueues"
    );
    Ok(())
}

type ThreadError = Box<dyn std::error::Error + Send + Sync>;

/// Callers on current-thread runtimes (as the listener's threads are) are answered through
/// their runtime's relay: every one of them, from several runtimes at once.
#[test]
fn callers_on_current_thread_runtimes_all_get_their_answers() -> TestResult {
    let dir = dir()?;
    let store = EmbeddedStore::open(dir.path())?;
    let threads: Vec<_> = (0..3)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || -> Result<Vec<DeliveryId>, ThreadError> {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(async {
                    let mut tasks = tokio::task::JoinSet::new();
                    for i in 0..100 {
                        let store = store.clone();
                        tasks.spawn(async move {
                            let id = format!("t{t}-{i}");
                            store
                                .enqueue(Some((id.clone(), HOUR)), vec![new("crm", &id)], 1_000)
                                .await
                        });
                    }
                    let mut all = Vec::new();
                    while let Some(joined) = tasks.join_next().await {
                        all.extend(ids(joined??));
                    }
                    Ok(all)
                })
            })
        })
        .collect();
    let mut all = Vec::new();
    for thread in threads {
        all.extend(
            thread
                .join()
                .map_err(|_| "a caller thread panicked")?
                .map_err(|e| e.to_string())?,
        );
    }
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 300);
    assert_eq!(store.queue_depth("crm"), 300);
    Ok(())
}

/// The writer thread runs as much nicer as asked (Linux keeps nice values per thread),
/// also when the store is opened from a [`StoreConfig`].
#[test]
fn the_writer_runs_as_nice_as_asked() -> TestResult {
    fn writers_niceness() -> Result<Vec<i64>, Box<dyn std::error::Error>> {
        let mut found = Vec::new();
        for task in std::fs::read_dir("/proc/self/task")? {
            let path = task?.path();
            // Other tests' threads come and go meanwhile: one that is gone is skipped.
            let (Ok(comm), Ok(stat)) = (
                std::fs::read_to_string(path.join("comm")),
                std::fs::read_to_string(path.join("stat")),
            ) else {
                continue;
            };
            // The kernel keeps 15 bytes of a thread's name.
            if comm.trim() != "hookrelay-store" {
                continue;
            }
            let after_name = stat.rsplit_once(") ").ok_or("stat without a name")?.1;
            // Field 19 of stat; the 17th after the name.
            found.push(after_name.split(' ').nth(16).ok_or("short stat")?.parse()?);
        }
        Ok(found)
    }
    let base: i64 = {
        let stat = std::fs::read_to_string("/proc/thread-self/stat")?;
        let after_name = stat.rsplit_once(") ").ok_or("stat without a name")?.1;
        after_name.split(' ').nth(16).ok_or("short stat")?.parse()?
    };
    let dir = dir()?;
    // Through `Store::open`, as the sidecar opens it: the options reach the writer.
    let config =
        StoreConfig::embedded_with(dir.path(), EmbeddedOptions::default().writer_niceness(5));
    let rt = tokio::runtime::Builder::new_current_thread().build()?;
    let store = rt.block_on(Store::open(config))?;
    assert_eq!(store.kind(), "embedded");
    let expected = (base + 5).min(19);
    // The thread sets its own priority as it starts: wait for its first commit.
    rt.block_on(store.enqueue(None, vec![new("crm", "a")], 0))?;
    let after = writers_niceness()?;
    assert!(after.contains(&expected), "{after:?}, expected {expected}");
    Ok(())
}

#[tokio::test]
async fn one_commit_per_op_without_group_commit() -> TestResult {
    let dir = dir()?;
    let store = EmbeddedStore::open_with(dir.path(), EmbeddedOptions::default().max_batch(1))?;
    let before = store.commits();
    let (a, b, c) = tokio::join!(
        store.enqueue(None, vec![new("crm", "a")], 0),
        store.enqueue(None, vec![new("crm", "b")], 0),
        store.enqueue(None, vec![new("crm", "c")], 0),
    );
    a?;
    b?;
    c?;
    assert_eq!(store.commits() - before, 3);
    Ok(())
}

#[tokio::test]
async fn everything_survives_reopen_and_leases_do_not() -> TestResult {
    let dir = dir()?;
    let (queued, dead) = {
        let store = EmbeddedStore::open(dir.path())?;
        let queued = ids(store
            .enqueue(
                None,
                vec![new("crm", "a"), new("crm", "b"), new("ops", "c")],
                1_000,
            )
            .await?);
        let b = store.lease("crm", 1_000, 10).await?.remove(1);
        store.reschedule(b.id, 5_000, 2, Some("429".into())).await?;
        let c = store.lease("ops", 1_000, 1).await?.remove(0);
        store
            .dead_letter(c.id, "gone", Some(410), None, 2_000)
            .await?;
        // "a" stays leased when the process goes away.
        (queued, c.id)
    };
    let store = EmbeddedStore::open(dir.path())?;
    store.health().await?;
    assert_eq!(store.queue_depth("crm"), 2);
    assert_eq!(store.endpoints(), vec!["crm".to_owned()]);
    let leased = store.lease("crm", 1_000, 10).await?;
    assert_eq!(leased.len(), 1, "the lease was not kept");
    assert_eq!(leased[0].id, queued[0]);
    let b = store.lease("crm", 5_000, 10).await?.remove(0);
    assert_eq!((b.attempts, b.last_error.as_deref()), (2, Some("429")));
    let letters = store.dead_letters(None, 10).await?;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].delivery.id, letters[0].status),
        (dead, Some(410))
    );
    // Ids keep increasing across reopen.
    let next = ids(store.enqueue(None, vec![new("crm", "d")], 1_000).await?);
    assert!(next[0] > queued[2]);
    Ok(())
}

#[tokio::test]
async fn second_open_of_the_same_directory_fails_cleanly() -> TestResult {
    let dir = dir()?;
    let _store = EmbeddedStore::open(dir.path())?;
    let second = EmbeddedStore::open(dir.path());
    assert!(matches!(second, Err(StoreError::Open { .. })), "{second:?}");
    Ok(())
}

/// The webhook ids queued for `crm` when the store in `dir` is opened again, in order.
async fn queued_after_reopen(
    dir: &std::path::Path,
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let store = EmbeddedStore::open(dir)?;
    let leased = store.lease("crm", 1_000, 10).await?;
    Ok(leased.into_iter().map(|d| d.webhook_id).collect())
}

#[tokio::test]
async fn outcomes_are_written_at_once_and_synced_with_the_next_durable_write() -> TestResult {
    let dir = dir()?;
    let (a, b) = {
        // No timer sync during the test, however slow the machine.
        let options = EmbeddedOptions::default().outcome_sync_within(Duration::from_secs(3600));
        let store = EmbeddedStore::open_with(dir.path(), options)?;
        let ids = ids(store
            .enqueue(None, vec![new("crm", "a"), new("crm", "b")], 0)
            .await?);
        let before = store.commits();
        for d in store.lease("crm", 0, 10).await? {
            if d.id == ids[0] {
                store.complete(d.id).await?;
            } else {
                store.reschedule(d.id, 50, 1, Some("503".into())).await?;
            }
        }
        assert_eq!(store.commits(), before, "outcomes wait for a sync");
        store.enqueue(Some(("e".into(), HOUR)), vec![], 0).await?;
        assert_eq!(store.commits(), before + 1, "one sync covers them all");
        (ids[0], ids[1])
    };
    let store = EmbeddedStore::open(dir.path())?;
    let left = store.lease("crm", 50, 10).await?;
    assert_eq!(left.len(), 1);
    assert_ne!(left[0].id, a);
    assert_eq!((left[0].id, left[0].attempts), (b, 1));
    Ok(())
}

#[tokio::test]
async fn an_outcome_alone_is_synced_within_its_bound() -> TestResult {
    let dir = dir()?;
    let options = EmbeddedOptions::default().outcome_sync_within(Duration::from_millis(20));
    let store = EmbeddedStore::open_with(dir.path(), options)?;
    store.enqueue(None, vec![new("crm", "a")], 0).await?;
    let before = store.commits();
    let d = store.lease("crm", 0, 1).await?.remove(0);
    store.complete(d.id).await?;
    // The writer syncs it by itself (20 ms after it was written); wait for that, up to
    // 10 s, checking the counter.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while store.commits() == before {
        assert!(std::time::Instant::now() < deadline, "never synced");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(store.commits(), before + 1);
    Ok(())
}

/// The journal file of the closed store in `dir` that holds data, and where its data
/// ends (the rest of the file is zeros set aside).
fn journal(
    dir: &std::path::Path,
) -> Result<(std::path::PathBuf, usize), Box<dyn std::error::Error>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir.join("data"))? {
        let path = entry?.path();
        if path.extension().is_some_and(|e| e == "jnl") {
            let bytes = std::fs::read(&path)?;
            if let Some(end) = bytes.iter().rposition(|&b| b != 0) {
                found.push((path, end + 1));
            }
        }
    }
    assert_eq!(found.len(), 1, "one journal with data: {found:?}");
    Ok(found.remove(0))
}

/// A batch a killed process left half-written (its end cut off) is dropped at the next
/// open, what came before it is kept, and writes continue after it.
#[tokio::test]
async fn a_torn_journal_tail_is_cut_off_and_writes_continue_after_it() -> TestResult {
    let dir = dir()?;
    {
        let store = EmbeddedStore::open(dir.path())?;
        store.enqueue(None, vec![new("crm", "a")], 1_000).await?;
        store.enqueue(None, vec![new("crm", "b")], 1_000).await?;
    }
    let (path, end) = journal(dir.path())?;
    let mut bytes = std::fs::read(&path)?;
    // The last batch's end marker and some of its items, as a write cut short leaves it.
    bytes[end - 24..end].fill(0);
    std::fs::write(&path, &bytes)?;
    assert_eq!(queued_after_reopen(dir.path()).await?, ["a"]);
    {
        let store = EmbeddedStore::open(dir.path())?;
        store.enqueue(None, vec![new("crm", "c")], 1_000).await?;
    }
    assert_eq!(queued_after_reopen(dir.path()).await?, ["a", "c"]);
    Ok(())
}

/// A batch damaged in the middle of the journal (bits flipped on the disk) makes the open
/// fail with the reason, rather than read past it and lose what follows.
#[tokio::test]
async fn a_damaged_journal_is_refused_not_read_past() -> TestResult {
    let dir = dir()?;
    {
        let store = EmbeddedStore::open(dir.path())?;
        for name in ["a", "b", "c"] {
            store.enqueue(None, vec![new("crm", name)], 1_000).await?;
        }
    }
    let (path, end) = journal(dir.path())?;
    let mut bytes = std::fs::read(&path)?;
    let body = bytes[..end]
        .windows(10)
        .position(|w| w == br#"{"id":"b"}"#)
        .ok_or("no body in the journal")?;
    bytes[body] ^= 1;
    std::fs::write(&path, &bytes)?;
    let opened = EmbeddedStore::open(dir.path());
    let Err(error) = opened else {
        return Err("a damaged journal was opened".into());
    };
    let mut chain = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(e) = source {
        chain.push_str(&format!(": {e}"));
        source = e.source();
    }
    assert!(chain.contains("ChecksumMismatch"), "{chain}");
    Ok(())
}

/// Dedupe keys live in windows of expiry times, each deleted whole (its directory gone)
/// once every key in it has expired; the keys held are counted, across a reopen too.
#[tokio::test]
async fn expired_dedupe_windows_are_deleted_whole() -> TestResult {
    let dir = dir()?;
    let windows = |dir: &std::path::Path| -> Result<usize, std::io::Error> {
        Ok(std::fs::read_dir(dir.join("data/keyspaces"))?.count())
    };
    let store = EmbeddedStore::open(dir.path())?;
    let before = windows(dir.path())?;
    for i in 0..100 {
        store
            .enqueue(Some((format!("e{i}"), HOUR)), vec![], i * 1_000)
            .await?;
    }
    assert_eq!(store.stats().keys, 100);
    let during = windows(dir.path())?;
    assert!(during > before, "{before} -> {during}");
    drop(store);
    let store = EmbeddedStore::open(dir.path())?;
    assert_eq!(store.stats().keys, 100, "counted again at open");
    assert_eq!(
        store
            .enqueue(Some(("e99".into(), HOUR)), vec![], 100_000)
            .await?,
        EnqueueOutcome::Duplicate
    );
    // Three hours after the last: every window has ended, and is gone but the new key's.
    store
        .enqueue(Some(("late".into(), HOUR)), vec![], 99_000 + 3 * 3_600_000)
        .await?;
    assert_eq!(store.stats().keys, 1);
    // A deleted keyspace's directory goes once its last handle is dropped.
    drop(store);
    assert_eq!(windows(dir.path())?, before + 1);
    Ok(())
}

/// The budget: once the records and keys reach `max_bytes`, enqueues fail with `Full`
/// (counted), duplicates are still answered and outcomes still written; once deliveries
/// drain below it, enqueues are taken again. What is held is counted across a reopen.
#[tokio::test]
async fn a_full_budget_refuses_enqueues_until_deliveries_drain() -> TestResult {
    let dir = dir()?;
    let options = EmbeddedOptions::default().max_bytes(64 * 1024);
    let store = EmbeddedStore::open_with(dir.path(), options.clone())?;
    let body = Bytes::from(vec![b'x'; 1024]);
    let delivery = |n: usize| hookrelay_store::NewDelivery {
        endpoint: "crm".into(),
        webhook_id: format!("msg_{n}"),
        body: body.clone(),
        created_at_ms: 0,
        trace: None,
    };
    let mut accepted = 0;
    let refusal = loop {
        match store
            .enqueue(
                Some((format!("k{accepted}"), HOUR)),
                vec![delivery(accepted)],
                0,
            )
            .await
        {
            Ok(_) => accepted += 1,
            Err(e) => break e,
        }
        assert!(accepted < 1_000, "the budget never bit");
    };
    assert!(
        matches!(refusal, StoreError::Full { max: 65_536, .. }),
        "{refusal:?}"
    );
    assert!(
        (55..=64).contains(&accepted),
        "{accepted} deliveries of 1 KiB in 64 KiB"
    );
    let stats = store.stats();
    assert_eq!((stats.full, stats.max_bytes), (1, 65_536));
    assert!(
        stats.used_bytes > 60_000 && stats.used_bytes <= 65_536,
        "{stats:?}"
    );
    assert_eq!(
        store
            .enqueue(Some(("k0".into(), HOUR)), vec![delivery(0)], 0)
            .await?,
        EnqueueOutcome::Duplicate,
        "a duplicate is answered, full or not"
    );
    // Deliveries drain: the budget has room again.
    for d in store.lease("crm", 0, 10).await? {
        store.complete(d.id).await?;
    }
    store
        .enqueue(Some(("after".into(), HOUR)), vec![delivery(9_999)], 0)
        .await?;
    let used = store.stats().used_bytes;
    drop(store);
    let store = EmbeddedStore::open_with(dir.path(), options)?;
    assert_eq!(store.stats().used_bytes, used, "counted across a reopen");
    assert!(matches!(
        store.enqueue(None, vec![delivery(10_000); 20], 0).await,
        Err(StoreError::Full { .. })
    ));
    // Lifted at run time.
    store.set_max_bytes(0);
    store.enqueue(None, vec![delivery(10_000); 20], 0).await?;
    Ok(())
}

/// Counters, cursors and ids come back from a reopen without the backlog being read:
/// the depth of each endpoint, the dead letters, and the queue order after thousands of
/// deliveries were taken from its head.
#[tokio::test]
async fn a_reopen_reads_counters_not_the_backlog() -> TestResult {
    let dir = dir()?;
    {
        let store = EmbeddedStore::open(dir.path())?;
        for chunk in 0..10 {
            let batch = (0..500)
                .flat_map(|i| {
                    let n = chunk * 500 + i;
                    [
                        new("crm", &format!("c{n:05}")),
                        new("erp", &format!("e{n:05}")),
                    ]
                })
                .collect();
            store.enqueue(None, batch, 1_000).await?;
        }
        // The head of crm's queue goes: 3,000 delivered, 10 dead-lettered.
        let mut left = 3_010;
        while left > 0 {
            for d in store.lease("crm", 1_000, left.min(1_000)).await? {
                if left <= 10 {
                    store
                        .dead_letter(d.id, "gone", Some(410), None, 1_000)
                        .await?;
                } else {
                    store.complete(d.id).await?;
                }
                left -= 1;
            }
        }
        assert_eq!(store.queue_depth("crm"), 1_990);
    }
    let store = EmbeddedStore::open(dir.path())?;
    assert_eq!(store.queue_depth("crm"), 1_990);
    assert_eq!(store.queue_depth("erp"), 5_000);
    assert_eq!(store.endpoints(), ["crm", "erp"]);
    assert_eq!(store.dead_letters(Some("crm"), 100).await?.len(), 10);
    let next = store.lease("crm", 1_000, 2).await?;
    let names: Vec<&str> = next.iter().map(|d| d.webhook_id.as_str()).collect();
    assert_eq!(
        names,
        ["c03010", "c03011"],
        "the queue resumes where it was"
    );
    Ok(())
}

/// The `webhook-id`s of `leased`, in order.
fn webhook_ids(leased: &[hookrelay_store::Delivery]) -> Vec<&str> {
    leased.iter().map(|d| d.webhook_id.as_str()).collect()
}

/// A lease scans ahead of what it takes, so that the next leases need no scan. What is
/// queued before the deliveries read ahead, released, or taken out of the queue meanwhile
/// is still leased in due order: nothing twice, nothing that left the queue, nothing
/// skipped.
#[tokio::test]
async fn leases_that_read_ahead_keep_due_order_and_lose_nothing() -> TestResult {
    let dir = dir()?;
    let store = EmbeddedStore::open(dir.path())?;
    let batch = (0..8).map(|i| new("crm", &format!("w{i}"))).collect();
    let queued = ids(store.enqueue(None, batch, 1_000).await?);
    let w0 = store.lease("crm", 2_000, 1).await?;
    assert_eq!(webhook_ids(&w0), ["w0"]);
    assert_eq!(webhook_ids(&store.lease("crm", 2_000, 1).await?), ["w1"]);

    // Queued due before what was read ahead: leased first.
    store.enqueue(None, vec![new("crm", "early")], 500).await?;
    let early = store.lease("crm", 2_000, 1).await?;
    assert_eq!(webhook_ids(&early), ["early"]);

    // A released lease is offered again before the rest.
    store.release(w0[0].id).await?;
    assert_eq!(webhook_ids(&store.lease("crm", 2_000, 1).await?), ["w0"]);

    // Rescheduled due at once: before the rest again.
    store.reschedule(w0[0].id, 0, 1, Some("503".into())).await?;
    assert_eq!(webhook_ids(&store.lease("crm", 2_000, 1).await?), ["w0"]);

    // Taken out of the queue without a lease (w3 completed): never leased.
    store.complete(queued[3]).await?;
    let leased = store.lease("crm", 2_000, 2).await?;
    assert_eq!(webhook_ids(&leased), ["w2", "w4"]);

    // What is leased is done; the rest dead-lettered at once, then replayed: leased
    // once each.
    for id in [early[0].id, w0[0].id, queued[1], queued[2], queued[4]] {
        store.complete(id).await?;
    }
    store.dead_letter_endpoint("crm", "removed", 2_000).await?;
    assert!(store.lease("crm", 2_000, 10).await?.is_empty());
    store.replay_endpoint("crm", 3_000).await?;
    let mut all = Vec::new();
    loop {
        let leased = store.lease("crm", 3_000, 2).await?;
        if leased.is_empty() {
            break;
        }
        all.extend(leased.into_iter().map(|d| d.webhook_id));
    }
    assert_eq!(all, ["w5", "w6", "w7"]);
    Ok(())
}

/// More due deliveries than a scan reads ahead, leased a few at a time while more are
/// queued behind them: each is leased once, in due order, across the scans.
#[tokio::test]
async fn a_long_queue_is_leased_once_each_in_due_order_across_read_ahead_scans() -> TestResult {
    let dir = dir()?;
    let store = EmbeddedStore::open(dir.path())?;
    let first = (0..700).map(|i| new("crm", &format!("a{i:04}"))).collect();
    store.enqueue(None, first, 1_000).await?;
    let mut expected: Vec<String> = (0..700).map(|i| format!("a{i:04}")).collect();
    let mut leased = Vec::new();
    let mut later = 0;
    for round in 0.. {
        let got = store.lease("crm", 100_000, 1 + round % 3).await?;
        if got.is_empty() {
            break;
        }
        for d in got {
            store.complete(d.id).await?;
            leased.push(d.webhook_id);
        }
        if round % 40 == 0 {
            // Due after everything queued so far: behind what was read ahead.
            store
                .enqueue(
                    None,
                    vec![new("crm", &format!("b{later:02}"))],
                    2_000 + later,
                )
                .await?;
            expected.push(format!("b{later:02}"));
            later += 1;
        }
    }
    assert_eq!(leased, expected);
    assert_eq!(store.queue_depth("crm"), 0);
    Ok(())
}
