//! The budget of callback bytes held before their signature is checked, shared by every
//! connection (`limits.unverified_bytes`): a callback that would pass it is refused (503)
//! before its body is read, so unsigned bodies cannot take the process's memory.

use std::sync::atomic::{AtomicUsize, Ordering};

/// Bytes claimed by bodies being read or checked.
#[derive(Debug, Default)]
pub(crate) struct Budget {
    in_use: AtomicUsize,
}

/// A claim on the budget, given back when dropped.
#[derive(Debug)]
pub(crate) struct Claim<'a> {
    budget: &'a Budget,
    bytes: usize,
}

impl Budget {
    /// Claims `bytes` if that keeps the total within `limit`.
    pub(crate) fn claim(&self, bytes: usize, limit: usize) -> Option<Claim<'_>> {
        self.in_use
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |used| {
                used.checked_add(bytes).filter(|total| *total <= limit)
            })
            .ok()
            .map(|_| Claim {
                budget: self,
                bytes,
            })
    }

    /// Bytes claimed now.
    #[cfg(test)]
    pub(crate) fn in_use(&self) -> usize {
        self.in_use.load(Ordering::Acquire)
    }
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.budget.in_use.fetch_sub(self.bytes, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::Budget;

    #[test]
    fn claims_stay_within_the_limit_and_are_given_back() {
        let b = Budget::default();
        let first = b.claim(600, 1000).expect("fits");
        assert!(b.claim(600, 1000).is_none(), "would pass the limit");
        let small = b.claim(400, 1000).expect("still fits");
        assert_eq!(b.in_use(), 1000);
        drop(first);
        drop(small);
        assert_eq!(b.in_use(), 0);
        assert!(b.claim(usize::MAX, usize::MAX).is_some(), "no overflow");
    }
}
