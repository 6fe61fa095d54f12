//! The cases of the contract: each takes a new, empty [`Store`] of either backend.
//!
//! A case states what both backends guarantee. Where they differ it states the common part:
//! a new delivery is due no later than its enqueue time (Redis ignores `now_ms` for new
//! deliveries, the embedded store counts from it), and with nothing due an idle worker is
//! told to wait (`None` on the embedded store, the poll interval on Redis). Times a backend
//! compares with its own clock (a rescheduled delivery's retry time on Redis) are taken
//! from the wall clock.

use bytes::Bytes;
use hookrelay_store::{
    Attempt, AttemptOutcome, DeliveryId, DeliveryState, EnqueueOutcome, HistoryQuery,
    MAX_ATTEMPT_RESPONSE_BYTES, MAX_RESPONSE_BYTES, Store, StoreError,
};
use std::time::Duration;

use crate::deliveries::{ids, new, now_ms};

pub(crate) type TestResult = Result<(), Box<dyn std::error::Error>>;

const HOUR: Duration = Duration::from_secs(3600);

/// Deadline of every wait on a condition.
const WITHIN: Duration = Duration::from_secs(15);

/// The poll interval of the Redis stores the cases run on: long, so that
/// [`Store::next_due`] shows the real due times.
pub(crate) const REDIS_POLL_INTERVAL: Duration = HOUR;

/// Whether [`Store::next_due`]'s answer lets an idle worker sleep: `None`, or not before
/// most of [`REDIS_POLL_INTERVAL`] has passed.
fn lets_the_worker_sleep(next_due: Option<i64>) -> bool {
    next_due.is_none_or(|at| at > now_ms() + 3_000_000)
}

pub(crate) async fn enqueue_lease_complete(store: &Store) -> TestResult {
    store.health().await?;
    let enqueued = ids(store
        .enqueue(
            None,
            vec![new("crm", "a"), new("ops", "b"), new("crm", "c")],
            1_000,
        )
        .await?);
    assert_eq!(enqueued.len(), 3);
    assert!(
        enqueued.windows(2).all(|w| w[0] < w[1]),
        "ids increase: {enqueued:?}"
    );
    assert_eq!(store.queue_depth("crm").await?, 2);
    assert_eq!(store.queue_depth("ops").await?, 1);
    assert_eq!(store.endpoints().await?, ["crm", "ops"]);

    assert!(store.lease("crm", 1_000, 0).await?.is_empty());
    let leased = store.lease("crm", 1_000, 10).await?;
    let webhook_ids: Vec<&str> = leased.iter().map(|d| d.webhook_id.as_str()).collect();
    assert_eq!(webhook_ids, ["a", "c"]);
    assert_eq!((leased[0].id, leased[1].id), (enqueued[0], enqueued[2]));
    assert_eq!(leased[0].endpoint, "crm");
    assert_eq!(leased[0].body, Bytes::from_static(b"{\"id\":\"a\"}"));
    assert_eq!(
        (leased[0].attempts, leased[0].last_error.as_deref()),
        (0, None)
    );
    assert_eq!(
        (leased[0].created_at_ms, leased[0].not_before_ms),
        (1_000, 1_000)
    );
    // Leased ones are not offered twice, but still count.
    assert!(store.lease("crm", 5_000, 10).await?.is_empty());
    assert_eq!(store.queue_depth("crm").await?, 2);

    store.complete(leased[0].id).await?;
    store.complete(leased[1].id).await?;
    assert_eq!(store.queue_depth("crm").await?, 0);
    assert_eq!(store.endpoints().await?, ["ops"]);
    Ok(())
}

pub(crate) async fn unknown_deliveries_have_no_outcome_and_no_lease(store: &Store) -> TestResult {
    let a = ids(store.enqueue(None, vec![new("crm", "a")], 1_000).await?)[0];
    let leased = store.lease("crm", 1_000, 1).await?;
    assert_eq!(leased[0].id, a);
    store.complete(a).await?;
    let never = DeliveryId(a.0 + 1_000);
    for id in [a, never] {
        // Completed, or never queued.
        assert!(matches!(
            store.complete(id).await,
            Err(StoreError::UnknownDelivery { id: unknown }) if unknown == id
        ));
        assert!(matches!(
            store.reschedule(id, 0, 2, None).await,
            Err(StoreError::UnknownDelivery { id: unknown }) if unknown == id
        ));
        assert!(matches!(
            store.dead_letter(id, "gone", Some(410), None, 2_000).await,
            Err(StoreError::UnknownDelivery { id: unknown }) if unknown == id
        ));
        store.release(id).await?;
        assert!(!store.replay(id, 5_000).await?, "no such dead letter");
    }
    assert_eq!(store.queue_depth("crm").await?, 0);
    assert!(store.endpoints().await?.is_empty());
    assert!(store.dead_letters(None, 10).await?.is_empty());
    Ok(())
}

pub(crate) async fn reschedule_release_and_next_due(store: &Store) -> TestResult {
    store
        .enqueue(None, vec![new("crm", "a"), new("crm", "b")], 1_000)
        .await?;
    // Due since the enqueue.
    assert_eq!(store.next_due("crm").await?, Some(1_000));
    let leased = store.lease("crm", now_ms(), 1).await?;
    assert_eq!(leased[0].webhook_id, "a");
    let retry_at = now_ms() + 60_000;
    store
        .reschedule(
            leased[0].id,
            retry_at,
            1,
            Some("503 Service Unavailable".into()),
        )
        .await?;
    // "b" is still due since its enqueue; "a" waits for its retry time.
    assert_eq!(store.next_due("crm").await?, Some(1_000));
    let b = store.lease("crm", now_ms(), 10).await?;
    assert_eq!(b.len(), 1);
    assert_eq!(b[0].webhook_id, "b");
    assert_eq!(store.next_due("crm").await?, Some(retry_at));
    assert_eq!(store.queue_depth("crm").await?, 2);

    store.release(b[0].id).await?;
    assert!(
        store
            .next_due("crm")
            .await?
            .is_some_and(|at| at <= now_ms()),
        "released is due at once"
    );
    let again = store.lease("crm", now_ms(), 10).await?;
    assert_eq!(again.len(), 1, "released is eligible again");
    assert_eq!(again[0].id, b[0].id);

    let a = store.lease("crm", retry_at, 10).await?;
    assert_eq!(a.len(), 1);
    assert_eq!(a[0].webhook_id, "a");
    assert_eq!(a[0].attempts, 1);
    assert_eq!(a[0].not_before_ms, retry_at);
    assert_eq!(a[0].last_error.as_deref(), Some("503 Service Unavailable"));
    // Everything is leased: nothing for an idle worker to wake up for.
    let next = store.next_due("crm").await?;
    assert!(lets_the_worker_sleep(next), "{next:?}");

    store.complete(a[0].id).await?;
    store.complete(b[0].id).await?;
    // Nothing queued.
    let next = store.next_due("crm").await?;
    assert!(lets_the_worker_sleep(next), "{next:?}");
    assert!(store.endpoints().await?.is_empty());
    Ok(())
}

pub(crate) async fn dead_letters_are_listed_and_replayed_with_their_ids(
    store: &Store,
) -> TestResult {
    store
        .enqueue(None, vec![new("crm", "a"), new("ops", "b")], 1_000)
        .await?;
    let a = store.lease("crm", 1_000, 1).await?.remove(0);
    store
        .reschedule(a.id, 1_000, 12, Some("timeout".into()))
        .await?;
    let a = store.lease("crm", 1_000, 1).await?.remove(0);
    store
        .dead_letter(
            a.id,
            "attempts exhausted",
            Some(500),
            Some("upstream broke".into()),
            9_000,
        )
        .await?;
    assert_eq!(store.queue_depth("crm").await?, 0);
    assert_eq!(store.endpoints().await?, ["ops"]);

    let letters = store.dead_letters(None, 10).await?;
    assert_eq!(letters.len(), 1);
    let dead = &letters[0];
    assert_eq!(dead.reason, "attempts exhausted");
    assert_eq!((dead.status, dead.dead_at_ms), (Some(500), 9_000));
    assert_eq!(dead.response.as_deref(), Some("upstream broke"));
    // Twelve attempts before, and the one that gave up.
    assert_eq!((dead.delivery.id, dead.delivery.attempts), (a.id, 13));
    assert_eq!(dead.delivery.webhook_id, "a");
    assert_eq!(dead.delivery.body, a.body);
    assert_eq!(dead.delivery.last_error.as_deref(), Some("timeout"));
    assert_eq!(store.dead_letters(Some("crm"), 10).await?.len(), 1);
    assert!(store.dead_letters(Some("ops"), 10).await?.is_empty());
    assert!(store.dead_letters(None, 0).await?.is_empty());

    assert!(store.replay(a.id, 5_000).await?);
    assert!(!store.replay(a.id, 5_000).await?, "already replayed");
    assert!(store.dead_letters(None, 10).await?.is_empty());
    assert_eq!(store.endpoints().await?, ["crm", "ops"]);
    let again = store.lease("crm", 0, 10).await?;
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].id, a.id);
    assert_eq!(again[0].webhook_id, "a");
    assert_eq!(again[0].body, a.body);
    assert_eq!(
        (again[0].attempts, again[0].last_error.as_deref()),
        (0, None)
    );
    // Due at once, and queued as of the replay: a retry's max_age counts from it.
    assert_eq!((again[0].not_before_ms, again[0].created_at_ms), (0, 5_000));
    Ok(())
}

/// A delivery dead-lettered without being leased (its endpoint removed as it was enqueued)
/// had no attempt, and counts none; one leased and given up on counts the attempt.
pub(crate) async fn a_delivery_never_attempted_is_buried_with_no_attempt(
    store: &Store,
) -> TestResult {
    let enqueued = store
        .enqueue(None, vec![new("crm", "a"), new("crm", "b")], 1_000)
        .await?;
    let [a, b] = ids(enqueued)[..] else {
        return Err("two deliveries".into());
    };
    store
        .dead_letter(a, "endpoint removed", None, None, 2_000)
        .await?;
    let leased = store.lease("crm", 1_000, 1).await?.remove(0);
    assert_eq!(leased.id, b);
    store
        .dead_letter(b, "HTTP 400", Some(400), None, 3_000)
        .await?;
    let letters = store.dead_letters(None, 10).await?;
    let attempts: Vec<_> = letters
        .iter()
        .map(|l| (l.delivery.id, l.delivery.attempts))
        .collect();
    assert_eq!(attempts, [(a, 0), (b, 1)]);
    Ok(())
}

pub(crate) async fn dead_letter_responses_are_cut_to_max_response_bytes(
    store: &Store,
) -> TestResult {
    let exact = "x".repeat(MAX_RESPONSE_BYTES);
    let one_more = "x".repeat(MAX_RESPONSE_BYTES + 1);
    let wide = "é".repeat(MAX_RESPONSE_BYTES); // twice the limit in bytes
    let responses = [
        None,
        Some(exact.clone()),
        Some(one_more),
        Some(wide.clone()),
    ];
    let batch = (0..responses.len())
        .map(|i| new("crm", &format!("r{i}")))
        .collect();
    store.enqueue(None, batch, 1_000).await?;
    let leased = store.lease("crm", 1_000, 10).await?;
    assert_eq!(leased.len(), responses.len());
    for (d, response) in leased.iter().zip(responses) {
        store
            .dead_letter(d.id, "bad request", Some(400), response, 2_000)
            .await?;
    }
    let letters = store.dead_letters(Some("crm"), 10).await?;
    let kept: Vec<Option<&str>> = letters.iter().map(|l| l.response.as_deref()).collect();
    assert_eq!(
        kept[..3],
        [None, Some(exact.as_str()), Some(exact.as_str())]
    );
    // Cut at a character boundary: one byte short of the limit.
    let cut = kept[3].unwrap_or_default();
    assert!(cut.len() <= MAX_RESPONSE_BYTES && cut.len() > MAX_RESPONSE_BYTES - 2);
    assert!(wide.starts_with(cut), "a prefix of the response");
    Ok(())
}

pub(crate) async fn a_removed_endpoints_deliveries_go_to_the_dead_letters_and_back(
    store: &Store,
) -> TestResult {
    let batch = (0..5).map(|i| new("old", &format!("w{i}"))).collect();
    store.enqueue(None, batch, 1_000).await?;
    store.enqueue(None, vec![new("kept", "k")], 1_000).await?;
    let leased = store.lease("old", 1_000, 2).await?;
    assert_eq!(leased.len(), 2);
    // One of them waits for a retry (with Redis in the delayed set, not the stream).
    store
        .reschedule(leased[1].id, now_ms() + 60_000, 1, None)
        .await?;

    assert_eq!(
        store
            .dead_letter_endpoint("old", "endpoint removed", 2_000)
            .await?,
        5
    );
    assert_eq!(store.queue_depth("old").await?, 0);
    assert_eq!(store.queue_depth("kept").await?, 1);
    assert_eq!(store.endpoints().await?, ["kept"]);
    // The lease was dropped with the delivery.
    assert!(matches!(
        store.complete(leased[0].id).await,
        Err(StoreError::UnknownDelivery { .. })
    ));
    let letters = store.dead_letters(Some("old"), 3).await?;
    assert_eq!(letters.len(), 3, "limit applies");
    assert!(
        letters
            .iter()
            .all(|d| (d.reason.as_str(), d.dead_at_ms) == ("endpoint removed", 2_000))
    );
    assert_eq!(store.dead_letters(Some("old"), 100).await?.len(), 5);
    assert!(store.dead_letters(Some("kept"), 100).await?.is_empty());

    let wake = store.subscribe("old");
    assert_eq!(store.replay_endpoint("old", 5_000).await?, 5);
    assert_eq!(store.queue_depth("old").await?, 5);
    let mut woken = std::pin::pin!(wake.notified());
    assert!(woken.as_mut().enable(), "replay wakes the endpoint");
    let order: Vec<String> = store
        .lease("old", 2_000, 10)
        .await?
        .into_iter()
        .map(|d| d.webhook_id)
        .collect();
    assert_eq!(order, ["w0", "w1", "w2", "w3", "w4"]);

    // An endpoint with nothing queued and no dead letters: nothing moves.
    assert_eq!(
        store
            .dead_letter_endpoint("none", "endpoint removed", 3_000)
            .await?,
        0
    );
    assert_eq!(store.replay_endpoint("none", 5_000).await?, 0);
    Ok(())
}

pub(crate) async fn a_dead_letter_written_as_such_is_deduped_listed_and_found(
    store: &Store,
) -> TestResult {
    let key = || Some(("meta_whatsapp:evt_unparsed1".to_owned(), HOUR));
    let first = store
        .enqueue_dead_letter(key(), new(":unparsed", "u1"), "unparsed: too deep", 10_000)
        .await?;
    let id = match first {
        EnqueueOutcome::Enqueued(ids) if ids.len() == 1 => ids[0],
        other => return Err(format!("expected one id, got {other:?}").into()),
    };
    // Never queued: no lease, no queue depth, no endpoint with work.
    assert!(store.lease(":unparsed", 0, 10).await?.is_empty());
    assert_eq!(store.queue_depth(":unparsed").await?, 0);
    assert!(store.endpoints().await?.is_empty());

    // Listed and found, with the reason and the body as written.
    let letters = store.dead_letters(Some(":unparsed"), 10).await?;
    assert_eq!(letters.len(), 1);
    let letter = &letters[0];
    assert_eq!(letter.delivery.id, id);
    assert_eq!(letter.reason, "unparsed: too deep");
    assert_eq!((letter.status, letter.response.as_deref()), (None, None));
    assert_eq!(letter.dead_at_ms, 10_000);
    assert_eq!(letter.delivery.webhook_id, "u1");
    assert_eq!(letter.delivery.body, Bytes::from_static(br#"{"id":"u1"}"#));
    assert_eq!(
        (letter.delivery.attempts, letter.delivery.created_at_ms),
        (0, 1_000)
    );
    assert_eq!(store.find_dead_letter(id).await?.as_ref(), Some(letter));
    assert_eq!(store.dead_letters(None, 10).await?.len(), 1);

    // The provider sent the same event again within the window: nothing written. The keys
    // are those of enqueue: one key is either an enqueue's or a dead letter's.
    assert_eq!(
        store
            .enqueue_dead_letter(key(), new(":unparsed", "u1"), "unparsed: too deep", 20_000)
            .await?,
        EnqueueOutcome::Duplicate
    );
    assert_eq!(
        store.enqueue(key(), vec![new("crm", "u1")], 20_000).await?,
        EnqueueOutcome::Duplicate
    );
    let enqueued = || Some(("sendgrid:evt9".to_owned(), HOUR));
    store
        .enqueue(enqueued(), vec![new("crm", "e")], 20_000)
        .await?;
    assert_eq!(
        store
            .enqueue_dead_letter(enqueued(), new(":unparsed", "e"), "unparsed: x", 20_000)
            .await?,
        EnqueueOutcome::Duplicate
    );
    assert_eq!(store.dead_letters(None, 10).await?.len(), 1);
    // Without a key, every call writes one, each under a new id.
    let a = ids(store
        .enqueue_dead_letter(None, new(":unparsed", "n"), "unparsed: y", 30_000)
        .await?);
    let b = ids(store
        .enqueue_dead_letter(None, new(":unparsed", "n"), "unparsed: y", 30_000)
        .await?);
    assert_eq!(a.len(), 1);
    assert!(b[0] > a[0] && a[0] > id);

    // Other endpoints' letters are not its; an unknown id is found nowhere.
    assert_eq!(store.dead_letters(Some(":unparsed"), 10).await?.len(), 3);
    assert!(store.dead_letters(Some("crm"), 10).await?.is_empty());
    assert_eq!(store.find_dead_letter(DeliveryId(999_999)).await?, None);
    // A delivery still queued is not a dead letter; once dead-lettered, it is found.
    let queued = store.lease("crm", 20_000, 1).await?.remove(0);
    assert_eq!(store.find_dead_letter(queued.id).await?, None);
    store
        .dead_letter(queued.id, "attempts exhausted", Some(503), None, 40_000)
        .await?;
    let found = store
        .find_dead_letter(queued.id)
        .await?
        .ok_or("dead letter")?;
    assert_eq!(
        (found.reason.as_str(), found.status),
        ("attempts exhausted", Some(503))
    );
    // Replayed, it is a dead letter no more.
    assert!(store.replay(queued.id, 50_000).await?);
    assert_eq!(store.find_dead_letter(queued.id).await?, None);
    Ok(())
}

pub(crate) async fn a_deleted_dead_letter_is_gone_and_nothing_else_is(store: &Store) -> TestResult {
    let a = ids(store
        .enqueue_dead_letter(None, new(":unparsed", "a"), "unparsed: x", 10_000)
        .await?)[0];
    let b = ids(store
        .enqueue_dead_letter(None, new(":unparsed", "b"), "unparsed: y", 10_000)
        .await?)[0];
    store.enqueue(None, vec![new("crm", "q")], 10_000).await?;
    assert!(store.delete_dead_letter(a).await?);
    assert_eq!(store.find_dead_letter(a).await?, None);
    let left = store.dead_letters(Some(":unparsed"), 10).await?;
    assert_eq!(left.iter().map(|l| l.delivery.id).collect::<Vec<_>>(), [b]);
    assert_eq!(store.dead_letters(None, 10).await?.len(), 1);
    // Gone: deleting or replaying it again finds nothing; a queued delivery is no dead
    // letter to delete, and stays queued.
    assert!(!store.delete_dead_letter(a).await?);
    assert!(!store.replay(a, 20_000).await?);
    let queued = store.lease("crm", 20_000, 1).await?.remove(0);
    assert!(!store.delete_dead_letter(queued.id).await?);
    store.complete(queued.id).await?;
    assert!(!store.delete_dead_letter(DeliveryId(999_999)).await?);
    Ok(())
}

pub(crate) async fn dedupe_within_the_window(store: &Store) -> TestResult {
    let key = || Some(("sendgrid:evt1".to_owned(), HOUR));
    let first = store.enqueue(key(), vec![new("crm", "a")], 10_000).await?;
    assert!(matches!(first, EnqueueOutcome::Enqueued(ref ids) if ids.len() == 1));
    // The provider retried within the window: the whole batch is a duplicate, nothing
    // written.
    let dup = store
        .enqueue(key(), vec![new("crm", "a"), new("ops", "a")], 40_000)
        .await?;
    assert_eq!(dup, EnqueueOutcome::Duplicate);
    assert_eq!(store.queue_depth("crm").await?, 1);
    assert_eq!(store.queue_depth("ops").await?, 0);
    assert_eq!(
        store.enqueue(key(), vec![], 40_000).await?,
        EnqueueOutcome::Duplicate
    );

    // An empty batch still records the key (an event no endpoint wanted).
    let nobody = || Some(("sendgrid:evt2".to_owned(), HOUR));
    assert_eq!(
        store.enqueue(nobody(), vec![], 10_000).await?,
        EnqueueOutcome::Enqueued(vec![])
    );
    assert_eq!(
        store
            .enqueue(nobody(), vec![new("crm", "x")], 20_000)
            .await?,
        EnqueueOutcome::Duplicate
    );
    // Without a key nothing is a duplicate, and nothing is written for nothing.
    assert_eq!(
        store.enqueue(None, vec![], 20_000).await?,
        EnqueueOutcome::Enqueued(vec![])
    );
    for _ in 0..2 {
        let again = store.enqueue(None, vec![new("crm", "a")], 20_000).await?;
        assert!(matches!(again, EnqueueOutcome::Enqueued(ref ids) if ids.len() == 1));
    }
    assert_eq!(store.queue_depth("crm").await?, 3);

    // The same event twice at once: exactly one enqueues.
    for round in 0..20 {
        let key = || Some((format!("race{round}"), HOUR));
        let (x, y) = tokio::join!(
            store.enqueue(key(), vec![new("race", "1")], 0),
            store.enqueue(key(), vec![new("race", "2")], 0),
        );
        let outcomes = [x?, y?];
        let duplicates = outcomes
            .iter()
            .filter(|o| **o == EnqueueOutcome::Duplicate)
            .count();
        assert_eq!(duplicates, 1, "round {round}: {outcomes:?}");
    }
    assert_eq!(store.queue_depth("race").await?, 20);
    Ok(())
}

pub(crate) async fn enqueue_wakes_a_subscribed_worker(store: &Store) -> TestResult {
    let wake = store.subscribe("crm");
    let worker = {
        let store = store.clone();
        tokio::spawn(async move {
            loop {
                let leased = store.lease("crm", i64::MAX, 10).await?;
                if !leased.is_empty() {
                    return Ok::<_, StoreError>(leased);
                }
                wake.notified().await;
            }
        })
    };
    store.enqueue(None, vec![new("crm", "a")], 0).await?;
    let leased = tokio::time::timeout(WITHIN, worker).await???;
    assert_eq!(leased[0].webhook_id, "a");

    // The wake-up is kept until it is waited for: an enqueue between a worker's last lease
    // and its wait is not missed.
    let wake = store.subscribe("ops");
    store.enqueue(None, vec![new("ops", "b")], 0).await?;
    let mut woken = std::pin::pin!(wake.notified());
    assert!(woken.as_mut().enable(), "enqueue wakes the endpoint");
    Ok(())
}

pub(crate) async fn retry_now_makes_an_endpoints_waiting_retries_due(store: &Store) -> TestResult {
    let batch = ["a", "b", "c", "d"].map(|w| new("crm", w)).to_vec();
    store.enqueue(None, batch, 1_000).await?;
    store.enqueue(None, vec![new("ops", "e")], 1_000).await?;
    let now = now_ms();
    let crm = store.lease("crm", now, 10).await?;
    assert_eq!(crm.len(), 4);
    let ops = store.lease("ops", now, 10).await?;
    // Within the Redis stores' poll interval, so `next_due` shows it.
    let retry_at = now + 600_000;
    // "a" and "b" wait for their retries, "c" is in flight, "d" is a dead letter, and
    // "e" waits on another endpoint.
    store
        .reschedule(
            crm[0].id,
            retry_at,
            3,
            Some("503 Service Unavailable".into()),
        )
        .await?;
    store.reschedule(crm[1].id, retry_at + 1, 1, None).await?;
    store
        .dead_letter(crm[3].id, "gone", Some(410), None, 2_000)
        .await?;
    store.reschedule(ops[0].id, retry_at, 2, None).await?;
    let wake = store.subscribe("crm");

    assert_eq!(store.retry_now("crm", now).await?, 2);
    let mut woken = std::pin::pin!(wake.notified());
    assert!(woken.as_mut().enable(), "retry_now wakes the endpoint");
    assert!(
        store.next_due("crm").await?.is_some_and(|at| at <= now),
        "due at once"
    );
    let due = store.lease("crm", now, 10).await?;
    let got: Vec<(DeliveryId, u32, i64, Option<&str>)> = due
        .iter()
        .map(|d| (d.id, d.attempts, d.not_before_ms, d.last_error.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (crm[0].id, 3, now, Some("503 Service Unavailable")),
            (crm[1].id, 1, now, None)
        ],
        "only the waiting retries, attempts and errors kept"
    );
    // The one in flight is still leased, the dead letter still dead.
    assert!(store.lease("crm", now, 10).await?.is_empty());
    store.complete(crm[2].id).await?;
    let letters = store.dead_letters(Some("crm"), 10).await?;
    assert_eq!(letters.len(), 1);
    assert_eq!(letters[0].delivery.id, crm[3].id);
    // The other endpoint still waits.
    assert_eq!(store.next_due("ops").await?, Some(retry_at));
    assert!(store.lease("ops", now, 10).await?.is_empty());
    // Nothing waits any more: nothing moves, nobody is woken.
    assert_eq!(store.retry_now("crm", now).await?, 0);
    assert_eq!(store.retry_now("none", now).await?, 0);
    assert_eq!(store.queue_depth("crm").await?, 2);
    Ok(())
}

pub(crate) async fn first_use_of_a_one_time_token(store: &Store) -> TestResult {
    let now = now_ms();
    assert!(store.first_use("stripe:tok1", HOUR, now).await?);
    assert!(
        !store.first_use("stripe:tok1", HOUR, now + 1).await?,
        "used"
    );
    assert!(store.first_use("stripe:tok2", HOUR, now).await?);
    // Tokens and dedupe keys are separate.
    let outcome = store
        .enqueue(Some(("stripe:tok1".into(), HOUR)), vec![], now)
        .await?;
    assert_eq!(outcome, EnqueueOutcome::Enqueued(vec![]));

    // Forgotten: the provider's retry may use it.
    store.forget_use("stripe:tok1").await?;
    assert!(store.first_use("stripe:tok1", HOUR, now + 2).await?);
    assert!(!store.first_use("stripe:tok1", HOUR, now + 3).await?);
    assert!(
        !store.first_use("stripe:tok2", HOUR, now + 3).await?,
        "kept"
    );
    store.forget_use("never used").await?;

    // Expired after its TTL (the embedded store by `now_ms`, Redis by its clock).
    let ttl = Duration::from_millis(200);
    let start = now_ms();
    assert!(store.first_use("short", ttl, start).await?);
    let deadline = tokio::time::Instant::now() + WITHIN;
    while now_ms() <= start + 250 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(store.first_use("short", HOUR, now_ms()).await?, "expired");
    assert!(!store.first_use("short", HOUR, now_ms()).await?);

    // The same token twice at once: exactly one is first.
    for round in 0..20 {
        let key = format!("race{round}");
        let (x, y) = tokio::join!(
            store.first_use(&key, HOUR, now),
            store.first_use(&key, HOUR, now),
        );
        assert!(x? ^ y?, "round {round}");
    }
    Ok(())
}

/// An attempt that ended in `outcome` with `status`, at `at_ms`.
fn attempt(at_ms: i64, outcome: AttemptOutcome, status: u16) -> Attempt {
    Attempt {
        at_ms,
        outcome,
        status: Some(status),
        duration_ms: 12,
        error: (status >= 300).then(|| format!("HTTP {status}")),
        response: Some("x".repeat(MAX_ATTEMPT_RESPONSE_BYTES + 10)),
    }
}

/// A delivery as [`new`] makes it, received at `at_ms`.
fn received(endpoint: &str, webhook_id: &str, at_ms: i64) -> hookrelay_store::NewDelivery {
    let mut delivery = new(endpoint, webhook_id);
    delivery.created_at_ms = at_ms;
    delivery
}

/// A replay and the attempt it leads to in the same millisecond (a fast endpoint, a
/// coarse clock) keep the order they happened in.
pub(crate) async fn a_replay_and_its_attempt_in_one_millisecond_stay_in_order(
    store: &Store,
) -> TestResult {
    let now = now_ms();
    let id = ids(store
        .enqueue(None, vec![received("ops", "evt-ms", now)], now)
        .await?)[0];
    store.lease("ops", now_ms(), 10).await?;
    store
        .dead_letter_with(
            id,
            "rejected",
            Some(400),
            None,
            now,
            attempt(now, AttemptOutcome::Dead, 400),
        )
        .await?;
    assert!(store.replay(id, now + 1).await?);
    let leased = store.lease("ops", now_ms(), 10).await?;
    assert!(leased.iter().any(|d| d.id == id), "{leased:?}");
    store
        .complete_with(id, attempt(now + 1, AttemptOutcome::Delivered, 200))
        .await?;
    let history = store.history(id).await?.ok_or("no history")?;
    let outcomes: Vec<AttemptOutcome> = history.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [
            AttemptOutcome::Dead,
            AttemptOutcome::Replayed,
            AttemptOutcome::Delivered
        ]
    );
    Ok(())
}

/// The state of delivery `id`'s history, `None` when the store has none.
async fn state(store: &Store, id: DeliveryId) -> Result<Option<DeliveryState>, StoreError> {
    Ok(store.history(id).await?.map(|h| h.state))
}

pub(crate) async fn history_follows_a_delivery_through_every_state(store: &Store) -> TestResult {
    let now = now_ms();
    // One event for two endpoints (one webhook-id), and another event.
    let enqueued = ids(store
        .enqueue(
            None,
            vec![
                received("crm", "evt-a", now),
                received("ops", "evt-a", now),
                received("crm", "evt-b", now),
            ],
            now,
        )
        .await?);
    let (crm_a, ops_a, crm_b) = (enqueued[0], enqueued[1], enqueued[2]);
    let history = store.history(crm_a).await?.ok_or("no history")?;
    assert_eq!(history.state, DeliveryState::Queued);
    assert_eq!(history.delivery.webhook_id, "evt-a");
    assert_eq!(history.delivery.endpoint, "crm");
    assert_eq!(
        history.delivery.body,
        Bytes::from_static(b"{\"id\":\"evt-a\"}")
    );
    assert!(history.attempts.is_empty() && history.dead.is_none());
    assert_eq!(store.history(DeliveryId(9_999)).await?, None);

    // In flight while leased; queued again, with the attempt, after a retry.
    let leased = store.lease("crm", now, 1).await?;
    assert_eq!(leased[0].id, crm_a);
    assert_eq!(state(store, crm_a).await?, Some(DeliveryState::InFlight));
    let failed = attempt(now, AttemptOutcome::Retrying, 503);
    store
        .reschedule_with(crm_a, now_ms(), 1, Some("HTTP 503".into()), failed.clone())
        .await?;
    let history = store.history(crm_a).await?.ok_or("no history")?;
    assert_eq!(history.state, DeliveryState::Queued);
    assert_eq!(history.delivery.attempts, 1);
    assert_eq!(history.attempts.len(), 1);
    let kept = &history.attempts[0];
    assert_eq!(
        (kept.at_ms, kept.outcome, kept.status, kept.duration_ms),
        (now, AttemptOutcome::Retrying, Some(503), 12)
    );
    assert_eq!(kept.error.as_deref(), Some("HTTP 503"));
    assert_eq!(
        kept.response.as_ref().map(String::len),
        Some(MAX_ATTEMPT_RESPONSE_BYTES),
        "the response is cut"
    );

    // Delivered: the record stays, with both attempts in order.
    let leased = store.lease("crm", now_ms(), 10).await?;
    assert!(leased.iter().any(|d| d.id == crm_a), "{leased:?}");
    store
        .complete_with(crm_a, attempt(now + 1, AttemptOutcome::Delivered, 200))
        .await?;
    let history = store.history(crm_a).await?.ok_or("no history")?;
    assert_eq!(history.state, DeliveryState::Delivered);
    let outcomes: Vec<AttemptOutcome> = history.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(
        outcomes,
        [AttemptOutcome::Retrying, AttemptOutcome::Delivered]
    );
    assert_eq!(
        history.delivery.attempts, 2,
        "the delivering attempt counts"
    );
    assert_eq!(
        history.delivery.body,
        Bytes::from_static(b"{\"id\":\"evt-a\"}")
    );
    // Completing it again fails: it is no longer queued.
    assert!(matches!(
        store.complete(crm_a).await,
        Err(StoreError::UnknownDelivery { .. })
    ));
    assert_eq!(store.queue_depth("crm").await?, 1);

    // Dead, then replayed.
    store.lease("ops", now_ms(), 10).await?;
    store
        .dead_letter_with(
            ops_a,
            "rejected",
            Some(400),
            Some("bad".into()),
            now + 2,
            attempt(now + 2, AttemptOutcome::Dead, 400),
        )
        .await?;
    let history = store.history(ops_a).await?.ok_or("no history")?;
    assert_eq!(history.state, DeliveryState::Dead);
    let dead = history.dead.ok_or("no dead letter")?;
    assert_eq!((dead.reason.as_str(), dead.status), ("rejected", Some(400)));
    assert_eq!(history.delivery.attempts, 1);
    assert!(store.replay(ops_a, now + 3).await?);
    let history = store.history(ops_a).await?.ok_or("no history")?;
    assert_eq!(history.state, DeliveryState::Replayed);
    let outcomes: Vec<AttemptOutcome> = history.attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, [AttemptOutcome::Dead, AttemptOutcome::Replayed]);

    // Every delivery of one webhook-id, newest first.
    let of_a: Vec<DeliveryId> = store
        .history_of("evt-a", 10)
        .await?
        .iter()
        .map(|h| h.delivery.id)
        .collect();
    assert_eq!(of_a, [ops_a, crm_a]);
    assert!(store.history_of("evt-none", 10).await?.is_empty());

    // Lists, newest first, filtered and paged.
    let list = |query: HistoryQuery| async move { store.histories(&query).await };
    let all = list(HistoryQuery {
        limit: 10,
        ..HistoryQuery::default()
    })
    .await?;
    let listed: Vec<DeliveryId> = all.deliveries.iter().map(|h| h.delivery.id).collect();
    assert_eq!(listed, [crm_b, ops_a, crm_a]);
    assert_eq!(all.next, None);
    let crm = list(HistoryQuery {
        endpoint: Some("crm".into()),
        limit: 10,
        ..HistoryQuery::default()
    })
    .await?;
    let listed: Vec<DeliveryId> = crm.deliveries.iter().map(|h| h.delivery.id).collect();
    assert_eq!(listed, [crm_b, crm_a]);
    let delivered = list(HistoryQuery {
        state: Some(DeliveryState::Delivered),
        limit: 10,
        ..HistoryQuery::default()
    })
    .await?;
    let listed: Vec<DeliveryId> = delivered.deliveries.iter().map(|h| h.delivery.id).collect();
    assert_eq!(listed, [crm_a]);
    let first = list(HistoryQuery {
        limit: 2,
        ..HistoryQuery::default()
    })
    .await?;
    assert_eq!(first.deliveries.len(), 2);
    let second = list(HistoryQuery {
        before: first.next,
        limit: 2,
        ..HistoryQuery::default()
    })
    .await?;
    let listed: Vec<DeliveryId> = second.deliveries.iter().map(|h| h.delivery.id).collect();
    assert_eq!(listed, [crm_a]);

    // The sweep removes delivered deliveries received before the cutoff, nothing else.
    store.lease("crm", now_ms(), 10).await?;
    store.complete(crm_b).await?;
    assert_eq!(state(store, crm_b).await?, Some(DeliveryState::Delivered));
    assert_eq!(store.sweep_history(now - 60_000, 0).await?, 0);
    assert_eq!(store.sweep_history(now + 60_000, 0).await?, 2);
    assert_eq!(state(store, crm_a).await?, None);
    assert_eq!(state(store, crm_b).await?, None);
    assert_eq!(state(store, ops_a).await?, Some(DeliveryState::Replayed));
    let of_a: Vec<DeliveryId> = store
        .history_of("evt-a", 10)
        .await?
        .iter()
        .map(|h| h.delivery.id)
        .collect();
    assert_eq!(of_a, [ops_a]);
    assert_eq!(store.queue_depth("ops").await?, 1);

    // A dead letter deleted is gone from the history too.
    store.lease("ops", now_ms(), 10).await?;
    store
        .dead_letter(ops_a, "rejected", None, None, now_ms())
        .await?;
    assert!(store.delete_dead_letter(ops_a).await?);
    assert_eq!(state(store, ops_a).await?, None);
    assert!(store.history_of("evt-a", 10).await?.is_empty());
    Ok(())
}

pub(crate) async fn the_history_sweep_keeps_the_history_within_its_size(
    store: &Store,
) -> TestResult {
    let now = now_ms();
    let mut batch = Vec::new();
    for n in 0..6 {
        batch.push(received("crm", &format!("evt-{n}"), now));
    }
    let enqueued = ids(store.enqueue(None, batch, now).await?);
    store.lease("crm", now_ms(), 10).await?;
    for id in &enqueued[..4] {
        store
            .complete_with(*id, attempt(now, AttemptOutcome::Delivered, 204))
            .await?;
    }
    // Within the retention: only the size cap removes, oldest first, delivered only.
    assert_eq!(store.sweep_history(now - 60_000, 1).await?, 4);
    for id in &enqueued[..4] {
        assert_eq!(state(store, *id).await?, None);
    }
    for id in &enqueued[4..] {
        assert_eq!(state(store, *id).await?, Some(DeliveryState::InFlight));
    }
    assert_eq!(store.sweep_history(now - 60_000, 1).await?, 0);
    Ok(())
}

pub(crate) async fn a_delivery_keeps_the_trace_context_it_was_enqueued_with(
    store: &Store,
) -> TestResult {
    const TRACE: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    let mut traced = new("crm", "evt-traced");
    traced.trace = Some(TRACE.into());
    let plain = new("crm", "evt-plain");
    let enqueued = ids(store.enqueue(None, vec![traced, plain], now_ms()).await?);
    let leased = store.lease("crm", now_ms(), 10).await?;
    let traces: Vec<Option<&str>> = leased.iter().map(|d| d.trace.as_deref()).collect();
    assert_eq!(traces, [Some(TRACE), None]);
    assert_eq!(
        leased[0].body,
        Bytes::from_static(b"{\"id\":\"evt-traced\"}")
    );
    // Kept through a retry and in the history.
    store
        .reschedule(enqueued[0], now_ms(), 1, Some("HTTP 503".into()))
        .await?;
    let history = store.history(enqueued[0]).await?.ok_or("no history")?;
    assert_eq!(history.delivery.trace.as_deref(), Some(TRACE));
    let mut dead = new("crm", "evt-dead");
    dead.trace = Some(TRACE.into());
    let outcome = store
        .enqueue_dead_letter(None, dead, "unparsed: test", now_ms())
        .await?;
    let letter = store
        .find_dead_letter(ids(outcome)[0])
        .await?
        .ok_or("no dead letter")?;
    assert_eq!(letter.delivery.trace.as_deref(), Some(TRACE));
    Ok(())
}

pub(crate) async fn dead_letters_are_paged_by_id(store: &Store) -> TestResult {
    let mut ids_written = Vec::new();
    for n in 0..5 {
        let endpoint = if n % 2 == 0 { "crm" } else { "ops" };
        let outcome = store
            .enqueue_dead_letter(None, new(endpoint, &format!("evt-{n}")), "test", now_ms())
            .await?;
        ids_written.extend(ids(outcome));
    }
    let page = |endpoint: Option<&'static str>, after: Option<DeliveryId>| async move {
        let letters = store.dead_letters_after(endpoint, after, 2).await?;
        Ok::<_, StoreError>(letters.iter().map(|l| l.delivery.id).collect::<Vec<_>>())
    };
    assert_eq!(page(None, None).await?, ids_written[..2]);
    assert_eq!(page(None, Some(ids_written[1])).await?, ids_written[2..4]);
    assert_eq!(page(None, Some(ids_written[3])).await?, ids_written[4..]);
    assert!(page(None, Some(ids_written[4])).await?.is_empty());
    // One endpoint's: crm has the even ones.
    assert_eq!(
        page(Some("crm"), Some(ids_written[0])).await?,
        [ids_written[2], ids_written[4]]
    );
    assert!(page(Some("ops"), Some(ids_written[3])).await?.is_empty());
    Ok(())
}
