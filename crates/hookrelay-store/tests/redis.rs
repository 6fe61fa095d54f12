//! What only the Redis store does, through its public API, against a real `redis-server`
//! started per test (append-only file, fsync always): several `RedisStore` instances on one
//! server play the sidecar replicas (a shared dedupe window, leases taken over, replays),
//! Redis going away, and where it differs from the embedded store (Redis's clock, the poll
//! interval). What both backends do is the contract, in `contract/`.

mod support {
    pub(crate) mod deliveries;
    pub(crate) mod redis_server;
}

use hookrelay_store::{
    Attempt, AttemptOutcome, DeliveryId, DeliveryState, EnqueueOutcome, MAX_ATTEMPTS_KEPT,
    RedisOptions, RedisStore, Store, StoreConfig, StoreError,
};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use support::deliveries::{ids, new, now_ms};
use support::redis_server::RedisServer;

type TestResult = Result<(), Box<dyn std::error::Error>>;

const HOUR: Duration = Duration::from_secs(3600);
/// Deadline of every wait on a condition.
const WITHIN: Duration = Duration::from_secs(15);

fn options() -> RedisOptions {
    RedisOptions::default()
        .connect_timeout(Duration::from_secs(2))
        .op_timeout(Duration::from_secs(2))
}

async fn open(server: &RedisServer, options: RedisOptions) -> Result<RedisStore, StoreError> {
    RedisStore::open_with(&server.url(), options).await
}

/// A new delivery is due as soon as it is enqueued, whatever `now_ms` a lease gives (the
/// embedded store counts from the enqueue's `now_ms`).
#[tokio::test]
async fn a_new_delivery_is_due_at_once() -> TestResult {
    let server = RedisServer::start()?;
    let store = open(&server, options()).await?;
    store.enqueue(None, vec![new("crm", "a")], 1_000).await?;
    let leased = store.lease("crm", 0, 10).await?;
    assert_eq!(leased.len(), 1);
    assert_eq!(leased[0].not_before_ms, 1_000);
    Ok(())
}

/// `next_due` is never `None`: with nothing due here it is the poll interval away, so an idle
/// worker sees what other replicas enqueue.
#[tokio::test]
async fn next_due_is_at_most_the_poll_interval_away() -> TestResult {
    let server = RedisServer::start()?;
    let store = open(&server, options().poll_interval(HOUR)).await?;
    let hour = i64::try_from(HOUR.as_millis())?;
    let idle = |at: Option<i64>, before: i64| {
        at.is_some_and(|at| (before + hour..=now_ms() + hour).contains(&at))
    };
    let before = now_ms();
    let next = store.next_due("crm").await?;
    assert!(idle(next, before), "nothing ever queued: {next:?}");
    store.enqueue(None, vec![new("crm", "a")], 1_000).await?;
    let a = store.lease("crm", now_ms(), 10).await?.remove(0);
    let before = now_ms();
    let next = store.next_due("crm").await?;
    assert!(idle(next, before), "all leased here: {next:?}");
    store.complete(a.id).await?;
    let before = now_ms();
    let next = store.next_due("crm").await?;
    assert!(idle(next, before), "nothing queued: {next:?}");
    Ok(())
}

#[tokio::test]
async fn a_dead_letter_is_replayed_by_another_replica() -> TestResult {
    let server = RedisServer::start()?;
    let store = open(&server, options()).await?;
    store.enqueue(None, vec![new("crm", "a")], 1_000).await?;
    let a = store.lease("crm", 1_000, 1).await?.remove(0);
    store
        .dead_letter(a.id, "attempts exhausted", Some(500), None, 9_000)
        .await?;

    // Same id, same webhook id, attempts reset.
    let other = open(&server, options()).await?;
    assert_eq!(other.dead_letters(None, 10).await?.len(), 1);
    assert!(other.replay(a.id, 5_000).await?);
    assert!(!other.replay(a.id, 5_000).await?, "already replayed");
    assert!(store.dead_letters(None, 10).await?.is_empty());
    let again = store.lease("crm", 0, 10).await?;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, a.id);
    assert_eq!(again[0].webhook_id, "a");
    assert_eq!(again[0].body, a.body);
    assert_eq!(
        (again[0].attempts, again[0].last_error.as_deref()),
        (0, None)
    );
    // Queued as of the replay: a retry's max_age counts from it.
    assert_eq!(again[0].created_at_ms, 5_000);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dedupe_window_is_shared_by_replicas() -> TestResult {
    let server = RedisServer::start()?;
    let (a, b) = (
        open(&server, options()).await?,
        open(&server, options()).await?,
    );
    let key = || Some(("sendgrid:evt1".to_owned(), HOUR));
    let first = a.enqueue(key(), vec![new("crm", "a")], 0).await?;
    assert!(matches!(first, EnqueueOutcome::Enqueued(ref ids) if ids.len() == 1));
    // The provider retried to the other replica: nothing written.
    let dup = b
        .enqueue(key(), vec![new("crm", "a"), new("ops", "a")], 0)
        .await?;
    assert_eq!(dup, EnqueueOutcome::Duplicate);
    assert_eq!(a.queue_depth("crm").await?, 1);
    assert_eq!(a.queue_depth("ops").await?, 0);

    // An empty batch still records the key (an event no endpoint wanted).
    let nobody = || Some(("sendgrid:evt2".to_owned(), HOUR));
    assert_eq!(
        a.enqueue(nobody(), vec![], 0).await?,
        EnqueueOutcome::Enqueued(vec![])
    );
    assert_eq!(
        b.enqueue(nobody(), vec![new("crm", "x")], 0).await?,
        EnqueueOutcome::Duplicate
    );

    // The same event at both replicas at once: exactly one enqueues.
    for round in 0..20 {
        let key = || Some((format!("race{round}"), HOUR));
        let (x, y) = tokio::join!(
            a.enqueue(key(), vec![new("crm", "1")], 0),
            b.enqueue(key(), vec![new("crm", "2")], 0),
        );
        let outcomes = [x?, y?];
        let duplicates = outcomes
            .iter()
            .filter(|o| **o == EnqueueOutcome::Duplicate)
            .count();
        assert_eq!(duplicates, 1, "round {round}: {outcomes:?}");
    }

    // The window expires (by Redis's clock): accepted again.
    let short = || Some(("short".to_owned(), Duration::from_millis(200)));
    assert!(matches!(
        a.enqueue(short(), vec![], 0).await?,
        EnqueueOutcome::Enqueued(_)
    ));
    assert_eq!(
        b.enqueue(short(), vec![], 0).await?,
        EnqueueOutcome::Duplicate
    );
    let deadline = Instant::now() + WITHIN;
    while b.enqueue(short(), vec![], 0).await? == EnqueueOutcome::Duplicate {
        assert!(Instant::now() < deadline, "the window never expired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_never_lease_the_same_delivery() -> TestResult {
    let server = RedisServer::start()?;
    let (a, b) = (
        open(&server, options()).await?,
        open(&server, options()).await?,
    );
    let batch = (0..300).map(|i| new("crm", &format!("w{i}"))).collect();
    let all: BTreeSet<DeliveryId> = ids(a.enqueue(None, batch, 0).await?).into_iter().collect();
    assert_eq!(all.len(), 300);

    async fn drain(store: RedisStore) -> Result<Vec<DeliveryId>, StoreError> {
        let mut got = Vec::new();
        loop {
            let batch = store.lease("crm", now_ms(), 7).await?;
            if batch.is_empty() {
                return Ok(got);
            }
            got.extend(batch.iter().map(|d| d.id));
            tokio::task::yield_now().await;
        }
    }
    let (got_a, got_b) = tokio::join!(tokio::spawn(drain(a.clone())), tokio::spawn(drain(b)));
    let (got_a, got_b) = (got_a??, got_b??);
    eprintln!("replica a leased {}, b leased {}", got_a.len(), got_b.len());
    let set_a: BTreeSet<DeliveryId> = got_a.iter().copied().collect();
    let set_b: BTreeSet<DeliveryId> = got_b.iter().copied().collect();
    assert_eq!(set_a.len(), got_a.len(), "a got a delivery twice");
    assert_eq!(set_b.len(), got_b.len(), "b got a delivery twice");
    assert!(
        set_a.is_disjoint(&set_b),
        "both replicas leased the same delivery"
    );
    let union: BTreeSet<DeliveryId> = set_a.union(&set_b).copied().collect();
    assert_eq!(union, all);
    assert_eq!(a.queue_depth("crm").await?, 300, "leased ones still count");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_replicas_delivery_is_claimed_after_the_visibility_timeout() -> TestResult {
    let server = RedisServer::start()?;
    let visibility = Duration::from_millis(500);
    let opts = || options().visibility_timeout(visibility);
    let (a, b) = (open(&server, opts()).await?, open(&server, opts()).await?);
    assert_ne!(a.consumer(), b.consumer());
    a.enqueue(None, vec![new("crm", "x"), new("crm", "y")], 0)
        .await?;
    let x = a.lease("crm", now_ms(), 1).await?.remove(0);
    assert_eq!(x.webhook_id, "x");

    // A released lease is free for the other replica at once.
    let y = a.lease("crm", now_ms(), 1).await?.remove(0);
    a.release(y.id).await?;
    let y_at_b = b.lease("crm", now_ms(), 10).await?;
    assert_eq!(y_at_b.len(), 1);
    assert_eq!(y_at_b[0].id, y.id);
    b.complete(y.id).await?;

    // A live replica keeps renewing its lease, however long the attempt takes.
    tokio::time::sleep(visibility * 4).await;
    assert!(
        b.lease("crm", now_ms(), 10).await?.is_empty(),
        "taken from a live replica"
    );
    let due = b.next_due("crm").await?.unwrap_or(i64::MAX);
    assert!(due > now_ms(), "a live lease is not due elsewhere");

    // The replica dies without completing: after the timeout the other one takes over.
    drop(a);
    let died = Instant::now();
    let deadline = died + WITHIN;
    let taken = loop {
        let leased = b.lease("crm", now_ms(), 10).await?;
        if !leased.is_empty() {
            break leased;
        }
        assert!(Instant::now() < deadline, "never claimed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let waited = died.elapsed();
    assert!(waited >= visibility / 2, "claimed after {waited:?}");
    assert_eq!(taken.len(), 1);
    assert_eq!((taken[0].id, taken[0].webhook_id.as_str()), (x.id, "x"));
    assert_eq!(taken[0].body, x.body);
    b.complete(x.id).await?;
    assert_eq!(b.queue_depth("crm").await?, 0);
    Ok(())
}

/// A replica that stopped renewing its lease (here: one whose renewals come far apart, as
/// when it lost Redis for a while) has the delivery taken over; the outcome it records
/// later, of its own attempt, must not overwrite the new holder's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_taken_over_lease_records_no_outcome() -> TestResult {
    let server = RedisServer::start()?;
    // `a` renews every 20 s: within this test, never. `b` takes over after 200 ms.
    let a = open(
        &server,
        options().visibility_timeout(Duration::from_secs(60)),
    )
    .await?;
    let b = open(
        &server,
        options().visibility_timeout(Duration::from_millis(200)),
    )
    .await?;
    a.enqueue(
        None,
        vec![new("crm", "x"), new("crm", "y"), new("crm", "z")],
        0,
    )
    .await?;
    let leased = a.lease("crm", now_ms(), 3).await?;
    assert_eq!(leased.len(), 3);
    let deadline = Instant::now() + WITHIN;
    let mut taken = Vec::new();
    while taken.len() < 3 {
        taken.extend(b.lease("crm", now_ms(), 3).await?);
        assert!(Instant::now() < deadline, "never taken over: {taken:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let [x, y, z] = [leased[0].id, leased[1].id, leased[2].id];

    // Each of `a`'s late outcomes is refused: the delivery stays `b`'s, as it was.
    let refused = |r: Result<(), StoreError>| matches!(r, Err(StoreError::UnknownDelivery { .. }));
    assert!(refused(a.complete(x).await), "a completed x");
    assert!(refused(
        a.reschedule(y, now_ms() + 60_000, 4, Some("HTTP 503".into()))
            .await
    ));
    assert!(refused(
        a.dead_letter(z, "HTTP 400", Some(400), None, now_ms())
            .await
    ));
    assert_eq!(
        b.dead_letters(None, 10).await?.len(),
        0,
        "nothing buried by a"
    );
    for id in [x, y, z] {
        let history = b.history(id).await?.ok_or("kept")?;
        assert_eq!(history.state, DeliveryState::InFlight, "{id:?}");
        assert_eq!(history.delivery.attempts, 0, "{id:?}");
    }

    // `b`, which holds them now, records its outcomes.
    b.complete(x).await?;
    b.reschedule(y, now_ms() + 60_000, 1, Some("HTTP 503".into()))
        .await?;
    b.dead_letter(z, "HTTP 400", Some(400), None, now_ms())
        .await?;
    assert_eq!(
        b.history(x).await?.ok_or("kept")?.state,
        DeliveryState::Delivered
    );
    assert_eq!(b.history(y).await?.ok_or("kept")?.delivery.attempts, 1);
    let letters = b.dead_letters(None, 10).await?;
    assert_eq!((letters.len(), letters[0].delivery.attempts), (1, 1));
    Ok(())
}

/// The consumers a group keeps, by name, with their pending entries.
async fn consumers(
    server: &RedisServer,
    endpoint: &str,
) -> Result<Vec<(String, u64)>, Box<dyn std::error::Error>> {
    let mut conn = ::redis::Client::open(server.url())?
        .get_multiplexed_async_connection()
        .await?;
    let raw: Vec<std::collections::HashMap<String, ::redis::Value>> = ::redis::cmd("XINFO")
        .arg("CONSUMERS")
        .arg(format!("hookrelay:q:{endpoint}"))
        .arg("lanes")
        .query_async(&mut conn)
        .await?;
    let mut out = Vec::new();
    for c in raw {
        let name: String = ::redis::from_redis_value(c.get("name").ok_or("name")?.clone())?;
        let pending: u64 = ::redis::from_redis_value(c.get("pending").ok_or("pending")?.clone())?;
        out.push((name, pending));
    }
    out.sort();
    Ok(out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_of_stopped_replicas_holding_nothing_are_pruned() -> TestResult {
    let server = RedisServer::start()?;
    let seed = open(&server, options()).await?;
    seed.enqueue(
        None,
        vec![new("crm", "x"), new("crm", "y"), new("crm", "z")],
        0,
    )
    .await?;
    // A replica that delivered and stopped, and one that stopped holding a lease.
    let done = open(&server, options()).await?;
    let x = done.lease("crm", now_ms(), 1).await?.remove(0);
    done.complete(x.id).await?;
    let (done_name, holding) = (done.consumer().to_owned(), open(&server, options()).await?);
    holding.lease("crm", now_ms(), 1).await?;
    let holding_name = holding.consumer().to_owned();
    drop((done, holding));
    // This one, live, holding nothing either.
    let live = open(&server, options()).await?;
    let z = live.lease("crm", now_ms(), 1).await?.remove(0);
    live.complete(z.id).await?;
    let before = consumers(&server, "crm").await?;
    assert_eq!(before.len(), 3, "{before:?}");

    // Idle for an hour: none yet.
    let crm = vec!["crm".to_owned(), "never-queued".to_owned()];
    assert_eq!(live.prune_consumers(&crm, HOUR).await?, 0);
    // Idle at all: the stopped one holding nothing goes; the one with a lease, and this
    // one, stay.
    assert_eq!(live.prune_consumers(&crm, Duration::ZERO).await?, 1);
    let after = consumers(&server, "crm").await?;
    let names: Vec<&str> = after.iter().map(|(n, _)| n.as_str()).collect();
    assert!(!names.contains(&done_name.as_str()), "{after:?}");
    assert!(names.contains(&holding_name.as_str()), "{after:?}");
    assert!(names.contains(&live.consumer()), "{after:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fails_fast_and_nothing_acknowledged_is_lost() -> TestResult {
    let mut server = RedisServer::start()?;
    let store = open(&server, options()).await?;
    let mut acked = BTreeSet::new();
    for i in 0..50 {
        let key = Some((format!("evt{i}"), HOUR));
        let batch = vec![new("crm", &format!("w{i}")), new("ops", &format!("w{i}"))];
        acked.extend(ids(store.enqueue(key, batch, 0).await?));
    }
    let done = store.lease("ops", now_ms(), 1).await?.remove(0);
    store.complete(done.id).await?;
    let dead = store.lease("ops", now_ms(), 1).await?.remove(0);
    store
        .dead_letter(dead.id, "gone", Some(410), None, 5)
        .await?;

    server.kill()?;
    let started = Instant::now();
    let down = store.enqueue(None, vec![new("crm", "lost")], 0).await;
    assert!(down.is_err(), "enqueue with redis down: {down:?}");
    assert!(store.lease("crm", now_ms(), 10).await.is_err());
    assert!(store.health().await.is_err());
    assert!(store.queue_depth("crm").await.is_err());
    let failed_in = started.elapsed();
    assert!(
        failed_in < Duration::from_secs(8),
        "failed in {failed_in:?}"
    );

    server.restart()?;
    let deadline = Instant::now() + WITHIN;
    while let Err(error) = store.health().await {
        assert!(Instant::now() < deadline, "never reconnected: {error}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(store.queue_depth("crm").await?, 50);
    assert_eq!(store.queue_depth("ops").await?, 48);
    assert_eq!(
        store
            .enqueue(Some(("evt7".into(), HOUR)), vec![new("crm", "again")], 0)
            .await?,
        EnqueueOutcome::Duplicate,
        "the dedupe window survived"
    );
    let letters = store.dead_letters(None, 10).await?;
    assert_eq!(letters.len(), 1);
    assert_eq!(
        (letters[0].delivery.id, letters[0].status),
        (dead.id, Some(410))
    );

    let mut found: BTreeSet<DeliveryId> = [done.id, dead.id].into();
    for endpoint in ["crm", "ops"] {
        found.extend(
            store
                .lease(endpoint, now_ms(), 1_000)
                .await?
                .iter()
                .map(|d| d.id),
        );
    }
    assert_eq!(found, acked, "every acknowledged delivery is there");
    let next = ids(store.enqueue(None, vec![new("crm", "d")], 0).await?);
    assert!(
        next[0] > *acked.last().unwrap_or(&DeliveryId(0)),
        "ids keep increasing"
    );
    Ok(())
}

#[tokio::test]
async fn unreachable_redis_fails_to_open() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_or(1, |a| a.port());
    let opened =
        RedisStore::open_with(&format!("redis://u:secret@127.0.0.1:{port}"), options()).await;
    match opened {
        Err(error @ StoreError::Connect { .. }) => {
            assert!(
                !format!("{error} {error:?}").contains("secret"),
                "{error:?}"
            );
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert!(matches!(
        RedisStore::open("not a url").await,
        Err(StoreError::Connect { .. })
    ));
}

/// `Store::open` passes the options on: a store with another prefix is another queue.
#[tokio::test]
async fn store_open_passes_the_redis_options() -> TestResult {
    let server = RedisServer::start()?;
    let default = Store::open(StoreConfig::redis_with(server.url(), options())).await?;
    let other = Store::open(StoreConfig::redis_with(
        server.url(),
        options().prefix("{other}"),
    ))
    .await?;
    assert_eq!((default.kind(), other.kind()), ("redis", "redis"));
    default.enqueue(None, vec![new("crm", "a")], 0).await?;
    assert_eq!(default.queue_depth("crm").await?, 1);
    assert_eq!(other.queue_depth("crm").await?, 0);
    assert!(other.endpoints().await?.is_empty());
    Ok(())
}

/// The state of delivery `id` as `store` tells it.
async fn state_at(store: &RedisStore, id: DeliveryId) -> Result<Option<DeliveryState>, StoreError> {
    Ok(store.history(id).await?.map(|h| h.state))
}

/// The history on Redis: a lease held by another replica is `in_flight` for every replica
/// until it is released or abandoned, a delivery keeps its newest attempts only, and the
/// sweep leaves no key behind (every key under a Cluster hash-tag prefix).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_history_is_shared_by_replicas_and_swept_clean() -> TestResult {
    let server = RedisServer::start()?;
    let visibility = Duration::from_secs(1);
    let opts = || options().prefix("{hr}").visibility_timeout(visibility);
    let (a, b) = (open(&server, opts()).await?, open(&server, opts()).await?);
    let now = now_ms();
    let enqueued = ids(a
        .enqueue(None, vec![new("crm", "x"), new("crm", "y")], now)
        .await?);
    let (x, y) = (enqueued[0], enqueued[1]);

    // Leased by the other replica: in flight; released: queued again.
    assert_eq!(b.lease("crm", now_ms(), 1).await?[0].id, x);
    assert_eq!(state_at(&a, x).await?, Some(DeliveryState::InFlight));
    b.release(x).await?;
    assert_eq!(state_at(&a, x).await?, Some(DeliveryState::Queued));
    // Leased by a replica that is gone: queued once its lease has expired.
    assert_eq!(b.lease("crm", now_ms(), 1).await?[0].id, x);
    drop(b);
    assert_eq!(state_at(&a, x).await?, Some(DeliveryState::InFlight));
    tokio::time::sleep(visibility * 2).await;
    assert_eq!(state_at(&a, x).await?, Some(DeliveryState::Queued));

    // Only the newest attempts are kept, oldest first.
    let keep = i64::try_from(MAX_ATTEMPTS_KEPT)?;
    let tries = keep + 8;
    for n in 1..=tries {
        let attempt = Attempt {
            at_ms: n,
            outcome: AttemptOutcome::Retrying,
            status: Some(503),
            duration_ms: 5,
            error: None,
            response: None,
        };
        a.reschedule_with(x, now, u32::try_from(n)?, None, Some(attempt))
            .await?;
    }
    let history = a.history(x).await?.ok_or("no history")?;
    let kept: Vec<i64> = history.attempts.iter().map(|e| e.at_ms).collect();
    assert_eq!(kept, (tries - keep + 1..=tries).collect::<Vec<_>>());

    // Delivered and counted, then swept with every key it had.
    a.complete(x).await?;
    assert_eq!(state_at(&a, x).await?, Some(DeliveryState::Delivered));
    let client = ::redis::Client::open(server.url())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let counted: u64 = ::redis::cmd("GET")
        .arg("{hr}:hbytes")
        .query_async(&mut conn)
        .await?;
    // The kept entries (8 bytes each, postcard), the body and the fields with their names,
    // and 1,024 bytes for Redis's own cost of the keys.
    let known = keep.unsigned_abs() * 8 + history.delivery.body.len() as u64 + 1024;
    assert!(
        (known + 30..known + 100).contains(&counted),
        "the body, the fields and {keep} entries: {counted}"
    );
    let keys: Vec<String> = ::redis::cmd("KEYS").arg("*").query_async(&mut conn).await?;
    assert!(keys.iter().all(|k| k.starts_with("{hr}:")), "{keys:?}");
    for key in [
        format!("{{hr}}:h:{x}"),
        format!("{{hr}}:a:{x}"),
        "{hr}:w:x".into(),
    ] {
        assert!(keys.contains(&key), "{key} in {keys:?}");
    }

    assert_eq!(a.sweep_history(now + 60_000, 0).await?, 1);
    let keys: Vec<String> = ::redis::cmd("KEYS").arg("*").query_async(&mut conn).await?;
    for gone in [
        format!("{{hr}}:h:{x}"),
        format!("{{hr}}:a:{x}"),
        format!("{{hr}}:d:{x}"),
        "{hr}:w:x".into(),
        "{hr}:done".into(),
        "{hr}:hbytes".into(),
    ] {
        assert!(!keys.contains(&gone), "{gone} in {keys:?}");
    }
    let all: Vec<u64> = ::redis::cmd("ZRANGE")
        .arg("{hr}:all")
        .arg(0)
        .arg(-1)
        .query_async(&mut conn)
        .await?;
    assert_eq!(all, [y.0]);
    assert_eq!(state_at(&a, y).await?, Some(DeliveryState::Queued));
    Ok(())
}
