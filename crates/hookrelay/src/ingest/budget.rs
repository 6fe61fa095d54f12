//! The budget of callback bytes held before their signature is checked, shared by every
//! connection (`limits.unverified_bytes`), so unsigned bodies cannot take the process's
//! memory.
//!
//! A callback claims its declared length (or its route's `max_body` when it declares
//! none) before its body is read, and a claim that would pass the budget is refused at
//! once (503, before the body is read; the provider retries). Large bodies, those over
//! [`SMALL`], may together hold only [`LARGE_SHARE`] of the budget: the rest is kept for
//! small ones, which delivery statuses are. So an attacker holding the budget with big
//! unsigned bodies sent slowly cannot keep genuine statuses out; one holding it with small
//! bodies needs that many connections, which `limits.max_connections` and
//! `limits.body_timeout` bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bodies of at most this many bytes may use the whole budget; larger ones share
/// [`LARGE_SHARE`] of it.
pub(crate) const SMALL: usize = 64 * 1024;

/// The part of the budget large bodies may hold together, in quarters.
pub(crate) const LARGE_SHARE: (usize, usize) = (3, 4);

/// Bytes claimed by bodies being read or checked.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    /// Every claim.
    in_use: AtomicUsize,
    /// Claims over [`SMALL`].
    large: AtomicUsize,
}

/// A claim on the budget, given back when dropped.
#[derive(Debug)]
pub(crate) struct Claim {
    budget: Arc<Budget>,
    bytes: usize,
    /// Counted among the large bodies.
    large: bool,
}

/// Adds `bytes` to `counter` if the total stays within `limit`.
fn add_within(counter: &AtomicUsize, bytes: usize, limit: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            used.checked_add(bytes).filter(|total| *total <= limit)
        })
        .is_ok()
}

impl Budget {
    /// Claims `bytes` if that keeps the total within `limit` (and, for a large body, the
    /// large bodies within their share of it).
    pub(crate) fn claim(self: &Arc<Self>, bytes: usize, limit: usize) -> Option<Claim> {
        let large = bytes > SMALL;
        if large {
            let share = limit / LARGE_SHARE.1 * LARGE_SHARE.0;
            if !add_within(&self.large, bytes, share) {
                return None;
            }
        }
        if !add_within(&self.in_use, bytes, limit) {
            if large {
                self.large.fetch_sub(bytes, Ordering::AcqRel);
            }
            return None;
        }
        Some(Claim {
            budget: Arc::clone(self),
            bytes,
            large,
        })
    }

    /// Bytes claimed now.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Acquire)
    }
}

impl Claim {
    /// Claims `more` bytes for the same reader (a request head being read, which stays
    /// small), if that keeps the total within `limit`.
    pub(crate) fn grow(&mut self, more: usize, limit: usize) -> bool {
        let grown = add_within(&self.budget.in_use, more, limit);
        if grown {
            self.bytes += more;
        }
        grown
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.budget.in_use.fetch_sub(self.bytes, Ordering::AcqRel);
        if self.large {
            self.budget.large.fetch_sub(self.bytes, Ordering::AcqRel);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{Budget, SMALL};
    use std::sync::Arc;

    #[test]
    fn claims_stay_within_the_limit_and_are_given_back() {
        let b = Arc::new(Budget::default());
        let first = b.claim(600, 1000).expect("fits");
        assert!(b.claim(600, 1000).is_none(), "would pass the limit");
        let small = b.claim(400, 1000).expect("still fits");
        assert_eq!(b.in_use(), 1000);
        drop(first);
        drop(small);
        assert_eq!(b.in_use(), 0);
        let _held = b.claim(10, usize::MAX).expect("fits");
        assert!(b.claim(usize::MAX, usize::MAX).is_none(), "no overflow");
        assert_eq!(b.in_use(), 10, "a refused claim takes nothing");
        let mut head = b.claim(100, 1000).expect("fits");
        assert!(head.grow(800, 1000));
        assert!(!head.grow(200, 1000), "would pass the limit");
        drop(head);
        assert_eq!(b.in_use(), 10);
    }

    #[test]
    fn large_bodies_leave_a_quarter_to_small_ones() {
        let limit = 16 * SMALL * 4; // 64 small bodies' worth
        let b = Arc::new(Budget::default());
        let mut large = Vec::new();
        while let Some(c) = b.claim(SMALL * 4, limit) {
            large.push(c);
        }
        assert_eq!(large.len(), 12, "three quarters");
        let small: Vec<_> = (0..16).map_while(|_| b.claim(SMALL, limit)).collect();
        assert_eq!(small.len(), 16, "the last quarter is the small ones'");
        assert!(b.claim(1, limit).is_none(), "full");
        drop(large);
        assert!(b.claim(SMALL * 4, limit).is_some());
        drop(small);
        assert_eq!(b.in_use(), 0);
    }
}
