//! The budget of bytes held before their signature is checked, shared by every connection
//! (`limits.unverified_bytes`): request heads being read and callback bodies, so what
//! unsigned senders make the process hold is bounded.
//!
//! A callback claims its declared length (or its route's `max_body` when it declares
//! none) before its body is read, and a claim that would pass the budget is refused at
//! once (503, before the body is read; the provider retries). Two kinds of claim may hold
//! only a share of the budget: large bodies, those over [`SMALL`], half of it together
//! ([`LARGE_SHARE`]), and request heads a quarter ([`HEAD_SHARE`]). So at least a quarter
//! is always left to small bodies, which delivery statuses are: an attacker holding heads
//! open, or big unsigned bodies sent slowly, cannot keep genuine statuses out. One holding
//! the rest with small bodies needs that many connections, which `limits.max_connections`
//! and `limits.body_timeout` bound.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Bodies of at most this many bytes may use the whole budget; larger ones share
/// [`LARGE_SHARE`] of it.
pub(crate) const SMALL: usize = hookrelay_config::Limits::SMALL_BODY;

/// The part of the budget large bodies may hold together: (numerator, denominator).
pub(crate) const LARGE_SHARE: (usize, usize) = hookrelay_config::Limits::LARGE_BODIES_SHARE;

/// The part of the budget request heads may hold together.
pub(crate) const HEAD_SHARE: (usize, usize) = (1, 4);

/// What a claim holds bytes for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Small,
    Large,
    Head,
}

/// Bytes claimed by heads and bodies being read or checked.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    /// Every claim.
    in_use: AtomicUsize,
    /// Claims of bodies over [`SMALL`].
    large: AtomicUsize,
    /// Claims of request heads.
    heads: AtomicUsize,
}

/// A claim on the budget, given back when dropped.
#[derive(Debug)]
pub(crate) struct Claim {
    budget: Arc<Budget>,
    bytes: usize,
    kind: Kind,
}

/// Adds `bytes` to `counter` if the total stays within `limit`.
fn add_within(counter: &AtomicUsize, bytes: usize, limit: usize) -> bool {
    counter
        .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
            used.checked_add(bytes).filter(|total| *total <= limit)
        })
        .is_ok()
}

fn share(limit: usize, (num, den): (usize, usize)) -> usize {
    limit / den * num
}

impl Budget {
    /// The counter of `kind`'s share and the share's size, if it has one.
    fn share_of(&self, kind: Kind, limit: usize) -> Option<(&AtomicUsize, usize)> {
        match kind {
            Kind::Small => None,
            Kind::Large => Some((&self.large, share(limit, LARGE_SHARE))),
            Kind::Head => Some((&self.heads, share(limit, HEAD_SHARE))),
        }
    }

    /// Adds `bytes` of `kind` if the total, and `kind`'s share, stay within `limit`.
    fn add(&self, kind: Kind, bytes: usize, limit: usize) -> bool {
        let shared = self.share_of(kind, limit);
        if let Some((counter, cap)) = shared
            && !add_within(counter, bytes, cap)
        {
            return false;
        }
        if !add_within(&self.in_use, bytes, limit) {
            if let Some((counter, _)) = shared {
                counter.fetch_sub(bytes, Ordering::AcqRel);
            }
            return false;
        }
        true
    }

    fn claim_as(self: &Arc<Self>, kind: Kind, bytes: usize, limit: usize) -> Option<Claim> {
        self.add(kind, bytes, limit).then(|| Claim {
            budget: Arc::clone(self),
            bytes,
            kind,
        })
    }

    /// Claims `bytes` of a body if that keeps the total within `limit` (and, for a large
    /// body, the large bodies within their share of it).
    pub(crate) fn claim(self: &Arc<Self>, bytes: usize, limit: usize) -> Option<Claim> {
        let kind = if bytes > SMALL {
            Kind::Large
        } else {
            Kind::Small
        };
        self.claim_as(kind, bytes, limit)
    }

    /// Claims `bytes` of a request head, within the heads' share of `limit`.
    pub(crate) fn claim_head(self: &Arc<Self>, bytes: usize, limit: usize) -> Option<Claim> {
        self.claim_as(Kind::Head, bytes, limit)
    }

    /// Bytes claimed now.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Acquire)
    }
}

impl Claim {
    /// Claims `more` bytes of the same kind for the same reader (a request head whose
    /// buffer grows), if that keeps the total and its kind's share within `limit`.
    pub(crate) fn grow(&mut self, more: usize, limit: usize) -> bool {
        let grown = self.budget.add(self.kind, more, limit);
        if grown {
            self.bytes += more;
        }
        grown
    }

    /// Bytes this claim holds.
    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

impl Drop for Claim {
    fn drop(&mut self) {
        self.budget.in_use.fetch_sub(self.bytes, Ordering::AcqRel);
        match self.kind {
            Kind::Small => {}
            Kind::Large => {
                self.budget.large.fetch_sub(self.bytes, Ordering::AcqRel);
            }
            Kind::Head => {
                self.budget.heads.fetch_sub(self.bytes, Ordering::AcqRel);
            }
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
    fn large_bodies_and_heads_leave_a_quarter_to_small_ones() {
        let limit = 16 * SMALL * 4; // 64 small bodies' worth
        let b = Arc::new(Budget::default());
        let mut large = Vec::new();
        while let Some(c) = b.claim(SMALL * 4, limit) {
            large.push(c);
        }
        assert_eq!(large.len(), 8, "half");
        let mut heads = Vec::new();
        while let Some(c) = b.claim_head(SMALL, limit) {
            heads.push(c);
        }
        assert_eq!(heads.len(), 16, "a quarter");
        let mut grown = b.claim_head(1, limit);
        assert!(grown.is_none(), "heads are at their share");
        drop(heads.pop());
        grown = b.claim_head(1024, limit);
        let head = grown.as_mut().expect("room for one head");
        assert!(
            !head.grow(SMALL, limit),
            "a head grows only within the share"
        );
        let small: Vec<_> = (0..17).map_while(|_| b.claim(SMALL, limit)).collect();
        assert_eq!(small.len(), 16, "at least a quarter is the small ones'");
        drop((large, heads, grown, small));
        assert_eq!(b.in_use(), 0);
        assert!(b.claim(SMALL * 4, limit).is_some());
    }
}
