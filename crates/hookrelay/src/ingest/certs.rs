//! Signing certificates fetched by URL (SNS `SigningCertURL`), and subscription
//! confirmations (SNS `SubscribeURL`).
//!
//! The URLs were checked by the provider's code (https, an allowed host) before they get
//! here; the fetch still goes through the SSRF guard. A certificate is fetched once and
//! kept (at most [`CAPACITY`] URLs); a failed fetch is remembered for [`RETRY_AFTER`], so
//! a burst of callbacks during an outage of the certificate host does not fetch once per
//! callback. A fetch comes before the message's signature can be checked, so anyone may
//! ask for one (of an allowed host): at most [`MAX_FETCHES`] run at once, and a callback
//! that would need one more is refused at once (503, the provider retries).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use crate::net::Clients;

/// How long a failed fetch is answered from memory.
const RETRY_AFTER: Duration = Duration::from_secs(10);
/// Most certificates (and recent failures) kept.
const CAPACITY: usize = 64;
/// Largest certificate read.
const MAX_PEM: usize = 64 * 1024;
/// Longest fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Most fetches at once. SNS signs with one certificate per region, renewed now and then:
/// a few fetches in a long while.
const MAX_FETCHES: usize = 4;

/// The certificate cache and the client it fetches with.
pub(crate) struct Certificates {
    clients: Clients,
    cached: Mutex<HashMap<String, Arc<str>>>,
    failures: Mutex<FailureCache>,
    /// Fetches running.
    fetching: AtomicUsize,
}

/// One of the [`MAX_FETCHES`], given back when dropped.
struct Fetch<'a>(&'a AtomicUsize);

impl Drop for Fetch<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Each change is one insert or clear: the content is valid whatever panicked.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Certificates {
    pub(crate) fn new(clients: Clients) -> Self {
        Self {
            clients,
            cached: Mutex::new(HashMap::new()),
            failures: Mutex::new(FailureCache::default()),
            fetching: AtomicUsize::new(0),
        }
    }

    /// A place among the fetches running, if there is one.
    fn place(&self) -> Option<Fetch<'_>> {
        self.fetching
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MAX_FETCHES).then_some(n + 1)
            })
            .ok()
            .map(|_| Fetch(&self.fetching))
    }

    /// The PEM of the certificate at `url`, fetched once and cached.
    pub(crate) async fn get(&self, url: &str) -> Result<Arc<str>, String> {
        if let Some(pem) = lock(&self.cached).get(url).cloned() {
            return Ok(pem);
        }
        let now = Instant::now();
        if let Some(reason) = lock(&self.failures).recent(url, now) {
            return Err(format!("{reason} (failed less than {RETRY_AFTER:?} ago)"));
        }
        let Some(_place) = self.place() else {
            return Err(format!(
                "{MAX_FETCHES} certificate fetches are running already; retry later"
            ));
        };
        let fetched = self.fetch(url).await;
        match &fetched {
            Ok(pem) => {
                let mut cached = lock(&self.cached);
                if cached.len() >= CAPACITY {
                    cached.clear();
                }
                cached.insert(url.to_owned(), pem.clone());
            }
            Err(reason) => lock(&self.failures).record(url, reason, now),
        }
        fetched
    }

    async fn fetch(&self, url: &str) -> Result<Arc<str>, String> {
        let (status, body) = self.clients.get(url, MAX_PEM, FETCH_TIMEOUT).await?;
        if !status.is_success() {
            return Err(format!("HTTP {}", status.as_u16()));
        }
        let pem = String::from_utf8(body.to_vec()).map_err(|_| "not text".to_owned())?;
        if !pem.contains("-----BEGIN CERTIFICATE-----") {
            return Err("not a PEM certificate".into());
        }
        Ok(Arc::from(pem))
    }

    /// Confirms a subscription by fetching its (checked) confirmation URL.
    pub(crate) async fn confirm(&self, url: &str) -> Result<(), String> {
        let (status, _) = self.clients.get(url, MAX_PEM, FETCH_TIMEOUT).await?;
        if status.is_success() {
            Ok(())
        } else {
            Err(format!("HTTP {}", status.as_u16()))
        }
    }
}

/// Recent failures by URL, each remembered for [`RETRY_AFTER`] (at most [`CAPACITY`]).
#[derive(Default)]
struct FailureCache {
    failures: HashMap<String, (Instant, String)>,
}

impl FailureCache {
    /// Why `url` failed, if it did less than [`RETRY_AFTER`] before `now`.
    fn recent(&self, url: &str, now: Instant) -> Option<String> {
        let (at, reason) = self.failures.get(url)?;
        (now.saturating_duration_since(*at) < RETRY_AFTER).then(|| reason.clone())
    }

    fn record(&mut self, url: &str, reason: &str, now: Instant) {
        self.failures
            .retain(|_, (at, _)| now.saturating_duration_since(*at) < RETRY_AFTER);
        if self.failures.len() >= CAPACITY {
            self.failures.clear();
        }
        self.failures
            .insert(url.to_owned(), (now, reason.to_owned()));
    }
}

#[cfg(test)]
mod tests {
    use super::{Certificates, FailureCache, MAX_FETCHES, RETRY_AFTER};
    use crate::net::{Clients, tls};
    use std::time::{Duration, Instant};

    #[tokio::test]
    async fn at_most_four_fetches_run_at_once() {
        // A host that takes connections and never answers.
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = silent.local_addr().expect("addr").port();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((conn, _)) = silent.accept().await {
                open.push(conn);
            }
        });
        let (roots, _) = tls::roots(Vec::new(), &[]).expect("roots");
        let certs = std::sync::Arc::new(Certificates::new(Clients::new(
            &tls::client_config(roots).expect("tls"),
        )));
        let mut running = Vec::new();
        for i in 0..MAX_FETCHES {
            let certs = certs.clone();
            let url = format!("http://127.0.0.1:{port}/{i}.pem");
            running.push(tokio::spawn(async move { certs.get(&url).await }));
        }
        // Each of them holds its place once it has taken it.
        while certs.fetching.load(std::sync::atomic::Ordering::Acquire) < MAX_FETCHES {
            tokio::task::yield_now().await;
        }
        let refused = certs
            .get(&format!("http://127.0.0.1:{port}/one-more.pem"))
            .await
            .expect_err("no place left");
        assert!(refused.contains("fetches are running already"), "{refused}");
        // The refusal is not remembered as the URL's failure, and a place freed is taken.
        running.pop().expect("one").abort();
        while certs.fetching.load(std::sync::atomic::Ordering::Acquire) == MAX_FETCHES {
            tokio::task::yield_now().await;
        }
        assert!(certs.place().is_some());
        for fetch in running {
            fetch.abort();
        }
        held.abort();
    }

    #[test]
    fn a_failed_fetch_is_remembered_for_a_while() {
        let mut cache = FailureCache::default();
        let t0 = Instant::now();
        let url = "https://sns.eu-west-1.amazonaws.com/cert.pem";
        assert_eq!(cache.recent(url, t0), None);
        cache.record(url, "HTTP 503", t0);
        assert_eq!(
            cache.recent(url, t0 + Duration::from_secs(1)).as_deref(),
            Some("HTTP 503")
        );
        assert_eq!(cache.recent("https://other", t0), None);
        assert_eq!(
            cache.recent(url, t0 + RETRY_AFTER),
            None,
            "tried again after"
        );
        // Old entries go when a new one is recorded.
        cache.record("https://other", "timed out", t0 + RETRY_AFTER);
        assert_eq!(cache.failures.len(), 1);
    }
}
