//! The store contract: what both backends guarantee, run against each of them through
//! [`Store`], the type the sidecar uses.
//!
//! Every case of `cases.rs` is a test per backend: `embedded::<case>` on an embedded store
//! in a new temporary directory, `redis::<case>` on a Redis store with a `redis-server` of
//! its own (a free port, the append-only file fsynced on every write). Both are opened with
//! [`Store::open`]. What only one backend does (reopening and damaged logs; replicas,
//! leases taken over, Redis going away) is tested in `embedded.rs` and `redis.rs`.
//!
//! A case added to `cases.rs` but not listed in [`contract!`] is dead code, which the
//! workspace's lints refuse.

mod cases;
#[path = "../support/deliveries.rs"]
mod deliveries;

// Only part of the harness is used here.
#[allow(dead_code)]
#[path = "../support/redis_server.rs"]
mod redis_server;

use hookrelay_store::{RedisOptions, Store, StoreConfig};
use redis_server::RedisServer;
use std::time::Duration;
use tempfile::TempDir;

type OpenResult<T> = Result<T, Box<dyn std::error::Error>>;

/// A new, empty store and what it lives in, dropped after the store.
struct Fresh<Home> {
    store: Store,
    _home: Home,
}

/// An embedded store, default options, in a new directory.
async fn open_embedded() -> OpenResult<Fresh<TempDir>> {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR"))?;
    let store = Store::open(StoreConfig::embedded(dir.path())).await?;
    assert_eq!(store.kind(), "embedded");
    Ok(Fresh { store, _home: dir })
}

/// A Redis store on a `redis-server` of its own.
async fn open_redis() -> OpenResult<Fresh<RedisServer>> {
    let server = RedisServer::start()?;
    let options = RedisOptions::default()
        .connect_timeout(Duration::from_secs(2))
        .op_timeout(Duration::from_secs(2))
        .poll_interval(cases::REDIS_POLL_INTERVAL);
    let store = Store::open(StoreConfig::redis_with(server.url(), options)).await?;
    assert_eq!(store.kind(), "redis");
    Ok(Fresh {
        store,
        _home: server,
    })
}

/// One test per backend and case: `embedded::<case>` and `redis::<case>`.
macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $case() -> crate::cases::TestResult {
                    let fresh = crate::open_embedded().await?;
                    crate::cases::$case(&fresh.store).await
                }
            )*
        }

        mod redis {
            $(
                #[tokio::test]
                async fn $case() -> crate::cases::TestResult {
                    let fresh = crate::open_redis().await?;
                    crate::cases::$case(&fresh.store).await
                }
            )*
        }
    };
}

contract![
    enqueue_lease_complete,
    unknown_deliveries_have_no_outcome_and_no_lease,
    reschedule_release_and_next_due,
    dead_letters_are_listed_and_replayed_with_their_ids,
    a_delivery_never_attempted_is_buried_with_no_attempt,
    dead_letter_responses_are_cut_to_max_response_bytes,
    a_removed_endpoints_deliveries_go_to_the_dead_letters_and_back,
    a_dead_letter_written_as_such_is_deduped_listed_and_found,
    a_deleted_dead_letter_is_gone_and_nothing_else_is,
    dedupe_within_the_window,
    enqueue_wakes_a_subscribed_worker,
    retry_now_makes_an_endpoints_waiting_retries_due,
    first_use_of_a_one_time_token,
    history_follows_a_delivery_through_every_state,
    a_replay_and_its_attempt_in_one_millisecond_stay_in_order,
    the_history_sweep_keeps_the_history_within_its_size,
    a_delivery_keeps_the_trace_context_it_was_enqueued_with,
    dead_letters_are_paged_by_id,
];
