//! Answers the callers of a current-thread runtime from inside that runtime.
//!
//! A task woken from another thread (the writer) is scheduled remotely: its runtime's
//! thread is unparked through the I/O driver, one `eventfd` write and usually one wake-up
//! of that thread per task. A group commit answers dozens of callers at once, most of them
//! on the listener's few current-thread runtimes (one per thread). So the writer hands the
//! answers for each such runtime to that runtime's relay task in one go, waking it once;
//! the relay sends them from inside the runtime, where waking a task only queues it.
//!
//! Callers outside a current-thread runtime (a multi-thread runtime, no runtime) get no
//! relay and are answered directly, as before. Nothing depends on the relay running: if
//! its runtime shuts down, the relay task is dropped, and dropping it answers what it holds
//! and closes it, so later answers go directly.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::runtime::{Handle, Id, RuntimeFlavor};
use tokio::sync::Notify;

use super::writer::Pending;

/// One current-thread runtime's relay: the answers waiting for it, and its wake-up.
#[derive(Debug, Default)]
pub(crate) struct Relay {
    queue: Mutex<Queue>,
    notify: Notify,
}

#[derive(Debug, Default)]
struct Queue {
    answers: Vec<Pending>,
    /// The relay task is gone: answer directly.
    closed: bool,
}

impl Relay {
    fn queue(&self) -> MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn is_open(&self) -> bool {
        !self.queue().closed
    }
}

thread_local! {
    /// The relays of the current-thread runtimes this thread has called from, while they
    /// run (a thread may drive several in turn).
    static RELAYS: RefCell<Vec<(Id, Arc<Relay>)>> = const { RefCell::new(Vec::new()) };
}

/// The relay of the current-thread runtime the caller runs on (started on first use), or
/// `None` outside one.
pub(crate) fn current() -> Option<Arc<Relay>> {
    let handle = Handle::try_current().ok()?;
    if handle.runtime_flavor() != RuntimeFlavor::CurrentThread {
        return None;
    }
    let id = handle.id();
    RELAYS.with(|relays| {
        let mut relays = relays.borrow_mut();
        // A closed relay's runtime is gone.
        relays.retain(|(_, relay)| relay.is_open());
        if let Some((_, relay)) = relays.iter().find(|(seen, _)| *seen == id) {
            return Some(Arc::clone(relay));
        }
        let relay = Arc::new(Relay::default());
        // The guard is made here, not in the task: a task dropped before it first ran
        // still closes the relay.
        handle.spawn(run(CloseOnDrop(Arc::clone(&relay))));
        relays.push((id, Arc::clone(&relay)));
        Some(relay)
    })
}

async fn run(close: CloseOnDrop) {
    loop {
        close.0.notify.notified().await;
        let answers = std::mem::take(&mut close.0.queue().answers);
        answers.into_iter().for_each(Pending::send);
    }
}

/// Dropped with the relay task (its runtime shut down): answers what is left, directly,
/// and closes the relay.
struct CloseOnDrop(Arc<Relay>);

impl Drop for CloseOnDrop {
    fn drop(&mut self) {
        let answers = {
            let mut queue = self.0.queue();
            queue.closed = true;
            std::mem::take(&mut queue.answers)
        };
        answers.into_iter().for_each(Pending::send);
    }
}

/// Sends every answer: through its caller's relay when it has one (each relay woken
/// once), directly otherwise.
pub(crate) fn answer(answers: impl IntoIterator<Item = (Pending, Option<Arc<Relay>>)>) {
    let mut woken: Vec<Arc<Relay>> = Vec::new();
    for (answer, relay) in answers {
        let Some(relay) = relay else {
            answer.send();
            continue;
        };
        {
            let mut queue = relay.queue();
            if queue.closed {
                drop(queue);
                answer.send();
                continue;
            }
            queue.answers.push(answer);
        }
        if !woken.iter().any(|r| Arc::ptr_eq(r, &relay)) {
            woken.push(relay);
        }
    }
    for relay in woken {
        relay.notify.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::StoreError;
    use tokio::sync::oneshot;

    fn pending() -> (Pending, oneshot::Receiver<Result<u64, StoreError>>) {
        let (tx, rx) = oneshot::channel();
        (Pending::Count(tx, Ok(7)), rx)
    }

    #[test]
    fn no_relay_outside_a_current_thread_runtime() {
        assert!(current().is_none());
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .build()
            .expect("runtime");
        assert!(rt.block_on(async { current() }).is_none());
    }

    #[test]
    fn answers_arrive_through_the_relay_of_their_runtime() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        rt.block_on(async {
            let relay = current().expect("a relay");
            assert!(Arc::ptr_eq(&relay, &current().expect("the same relay")));
            let (a, rx_a) = pending();
            let (b, rx_b) = pending();
            let (c, rx_c) = pending();
            std::thread::spawn(move || {
                answer([(a, Some(relay.clone())), (b, Some(relay)), (c, None)]);
            })
            .join()
            .expect("writer");
            assert_eq!(rx_a.await.expect("answered").expect("ok"), 7);
            assert_eq!(rx_b.await.expect("answered").expect("ok"), 7);
            assert_eq!(rx_c.await.expect("answered").expect("ok"), 7);
        });
    }

    #[test]
    fn a_thread_driving_two_runtimes_in_turn_keeps_one_relay_each() {
        let first = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let second = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let a = first.block_on(async { current() }).expect("a relay");
        let b = second.block_on(async { current() }).expect("a relay");
        assert!(!Arc::ptr_eq(&a, &b));
        for _ in 0..3 {
            let again = first.block_on(async { current() }).expect("a relay");
            assert!(Arc::ptr_eq(&again, &a), "no new relay task per switch");
            let again = second.block_on(async { current() }).expect("a relay");
            assert!(Arc::ptr_eq(&again, &b), "no new relay task per switch");
        }
        assert_eq!(first.metrics().num_alive_tasks(), 1);
    }

    #[test]
    fn a_relay_whose_runtime_is_gone_answers_directly() {
        let first = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        let relay = first.block_on(async {
            let relay = current().expect("a relay");
            tokio::task::yield_now().await; // the relay task starts
            relay
        });
        // Queued before the shutdown: answered when the relay task is dropped.
        let (early, rx_early) = pending();
        answer([(early, Some(relay.clone()))]);
        drop(first);
        assert!(!relay.is_open());
        let (late, mut rx_late) = pending();
        answer([(late, Some(relay.clone()))]);
        assert_eq!(
            rx_late.try_recv().expect("answered directly").expect("ok"),
            7
        );
        let second = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        second.block_on(async {
            assert_eq!(rx_early.await.expect("answered").expect("ok"), 7);
            let fresh = current().expect("a relay");
            assert!(
                !Arc::ptr_eq(&fresh, &relay),
                "a new runtime gets its own relay"
            );
        });
    }
}
