//! A bounded map with a time-to-live per entry.
//!
//! Hand-written (~60 lines) because the client needs little: `get` and `insert` under one
//! mutex, expiry read from the injectable [`Clock`](super::clock::Clock), and a hard bound.
//! When full, expired entries are dropped first, then the entry closest to expiry (with one
//! TTL for all positive entries, that is the oldest). That eviction scans the map, which is
//! fine at the sizes configured here (≤ 1,000,000, typically 10,000) and the rate of
//! registry lookups; a crate such as `moka` would add a background clock and many
//! dependencies for no gain.

use std::{collections::HashMap, time::Instant};

/// Entries by key, each with the instant it expires.
#[derive(Debug)]
pub(crate) struct TtlCache<V> {
    capacity: usize,
    entries: HashMap<String, (V, Instant)>,
}

impl<V: Clone> TtlCache<V> {
    /// An empty cache holding at most `capacity` entries (0: caches nothing).
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            capacity,
            entries: HashMap::new(),
        }
    }

    /// The live entry for `key`; an expired one is removed.
    pub(crate) fn get(&mut self, key: &str, now: Instant) -> Option<V> {
        match self.entries.get(key) {
            Some((value, expires)) if now < *expires => Some(value.clone()),
            Some(_) => {
                self.entries.remove(key);
                None
            }
            None => None,
        }
    }

    /// Stores `value` under `key` until `expires`.
    pub(crate) fn insert(&mut self, key: &str, value: V, expires: Instant, now: Instant) {
        if self.capacity == 0 || expires <= now {
            return;
        }
        if self.entries.len() >= self.capacity && !self.entries.contains_key(key) {
            self.entries.retain(|_, (_, expires)| now < *expires);
            if self.entries.len() >= self.capacity {
                let soonest = self
                    .entries
                    .iter()
                    .min_by_key(|(_, (_, expires))| *expires)
                    .map(|(key, _)| key.clone());
                if let Some(soonest) = soonest {
                    self.entries.remove(&soonest);
                }
            }
        }
        self.entries.insert(key.to_owned(), (value, expires));
    }

    /// How many entries are held (live or not yet purged).
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn entries_expire_and_the_bound_holds() {
        let now = Instant::now();
        let secs = Duration::from_secs;
        let mut cache = TtlCache::new(2);
        cache.insert("a", 1, now + secs(10), now);
        cache.insert("b", 2, now + secs(20), now);
        assert_eq!(cache.get("a", now), Some(1));
        assert_eq!(
            cache.get("a", now + secs(10)),
            None,
            "expired at its instant"
        );
        cache.insert("a", 1, now + secs(30), now);
        cache.insert("c", 3, now + secs(40), now);
        assert_eq!(cache.len(), 2);
        assert_eq!(
            cache.get("b", now),
            None,
            "the entry closest to expiry went"
        );
        assert_eq!(cache.get("a", now), Some(1));
        assert_eq!(cache.get("c", now), Some(3));
        cache.insert("d", 4, now + secs(50), now + secs(35));
        assert_eq!(
            cache.get("a", now + secs(35)),
            None,
            "expired entries go first"
        );
        assert_eq!(cache.get("c", now + secs(35)), Some(3));
        let mut nothing = TtlCache::new(0);
        nothing.insert("a", 1, now + secs(10), now);
        assert_eq!(nothing.get("a", now), None);
    }
}
