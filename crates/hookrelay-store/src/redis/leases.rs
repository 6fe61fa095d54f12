//! The leases this process holds, by delivery id, with their stream entry ids.
//!
//! They are renewed (idle time reset) every third of the visibility timeout, so a live
//! replica keeps a delivery for as long as its attempt takes and only a replica that stopped
//! renewing (it died, or lost Redis for longer than the timeout) has its deliveries claimed
//! by another.

use std::collections::HashMap;

/// A delivery leased by this process.
#[derive(Clone, Debug)]
struct Lease {
    endpoint: String,
    sid: String,
    /// Its outcome is being recorded: a renewal that finds it gone is not a loss.
    closing: bool,
}

/// The leases of one store instance.
#[derive(Debug, Default)]
pub(super) struct Leases {
    by_id: HashMap<u64, Lease>,
}

impl Leases {
    /// Records a lease; false when this process already holds the delivery (then it is in
    /// flight here and must not be handed out twice).
    pub(super) fn hold(&mut self, id: u64, endpoint: &str, sid: String) -> bool {
        if self.by_id.contains_key(&id) {
            return false;
        }
        let endpoint = endpoint.to_owned();
        let closing = false;
        self.by_id.insert(
            id,
            Lease {
                endpoint,
                sid,
                closing,
            },
        );
        true
    }

    /// Marks (or unmarks) `id` as having its outcome recorded.
    pub(super) fn set_closing(&mut self, id: u64, closing: bool) {
        if let Some(lease) = self.by_id.get_mut(&id) {
            lease.closing = closing;
        }
    }

    /// The stream entry id of the lease of `id`, if it is held.
    pub(super) fn sid(&self, id: u64) -> Option<String> {
        self.by_id.get(&id).map(|l| l.sid.clone())
    }

    /// Gives up the lease of `id`; its endpoint and stream entry id if it was held.
    pub(super) fn remove(&mut self, id: u64) -> Option<(String, String)> {
        self.by_id.remove(&id).map(|l| (l.endpoint, l.sid))
    }

    /// Whether stream entry `sid` of `endpoint` is leased here.
    pub(super) fn holds(&self, endpoint: &str, sid: &str) -> bool {
        self.by_id
            .values()
            .any(|l| l.endpoint == endpoint && l.sid == sid)
    }

    /// Whether stream entry `sid` of `endpoint` is leased here and its outcome is not
    /// being recorded right now.
    pub(super) fn holds_open(&self, endpoint: &str, sid: &str) -> bool {
        self.by_id
            .values()
            .any(|l| l.endpoint == endpoint && l.sid == sid && !l.closing)
    }

    /// Stream entry ids held, by endpoint (for a renewal).
    pub(super) fn by_endpoint(&self) -> HashMap<String, Vec<String>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for lease in self.by_id.values() {
            out.entry(lease.endpoint.clone())
                .or_default()
                .push(lease.sid.clone());
        }
        out
    }

    /// Drops leases another consumer took over (or whose entry is gone).
    pub(super) fn forget(&mut self, endpoint: &str, sids: &[String]) {
        self.by_id
            .retain(|_, l| l.endpoint != endpoint || !sids.contains(&l.sid));
    }

    /// Drops every lease of `endpoint`.
    pub(super) fn forget_endpoint(&mut self, endpoint: &str) {
        self.by_id.retain(|_, l| l.endpoint != endpoint);
    }
}

#[cfg(test)]
mod tests {
    use super::Leases;

    #[test]
    fn hold_once_forget_lost() {
        let mut leases = Leases::default();
        assert!(leases.hold(1, "crm", "1-0".into()));
        assert!(!leases.hold(1, "crm", "1-0".into()), "already in flight");
        assert!(leases.hold(2, "crm", "2-0".into()));
        assert!(leases.hold(3, "ops", "2-0".into()));
        assert!(leases.holds("crm", "2-0"));
        leases.set_closing(2, true);
        assert!(leases.holds("crm", "2-0") && !leases.holds_open("crm", "2-0"));
        leases.set_closing(2, false);
        assert!(leases.holds_open("crm", "2-0"));
        assert_eq!(leases.by_endpoint().len(), 2);
        leases.forget("crm", &["2-0".to_owned()]);
        assert!(!leases.holds("crm", "2-0") && leases.holds("ops", "2-0"));
        assert_eq!(leases.remove(1), Some(("crm".into(), "1-0".into())));
        leases.forget_endpoint("ops");
        assert!(leases.by_endpoint().is_empty());
    }
}
