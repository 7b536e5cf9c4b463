//! A bounded cache of verified credentials, so a caller presenting the same token or API key
//! on every call is verified once, not on every call.
//!
//! - Keyed by a 128-bit SipHash-2-4 of the credential under a random key drawn once per
//!   process: the cache holds no secret, and a different credential (even one differing in a
//!   single character) is a different key. SipHash is a pseudorandom function: without the
//!   process's key nobody can compute a credential's cache key, let alone find another
//!   credential with the same one (a chance of 2^-128 per pair). A SHA-256 per call did
//!   the same at ~14k instructions under callgrind (software rounds); SipHash takes ~2k.
//! - Only successes are cached, each with the instant it stops being valid, and an entry is
//!   never used at or after that instant: a bearer token's entry ends at its `exp`; an API
//!   key's ends after a short time-to-live (or at its expiry, if sooner), which bounds how
//!   long a revoked key keeps working (see [`super::Authenticator`]).
//! - Bounded: at most `capacity` entries. When full, expired entries are dropped first;
//!   if none expired, the whole cache is cleared. A flood of distinct credentials therefore
//!   costs re-verification, never memory.
//!
//! Time is passed in (wall-clock [`SystemTime`], the clock `exp` is written in), so the
//! rules above are tested without waiting.

use std::{
    collections::HashMap,
    hash::Hasher as _,
    sync::{Arc, LazyLock, Mutex, RwLock},
    time::{Duration, SystemTime},
};

use siphasher::sip128::{Hasher128 as _, SipHasher24};

use super::Principal;

/// The cache key of a credential.
pub type Key = [u8; 16];

/// The map's hash of a [`Key`]: its first eight bytes. A key is already a keyed SipHash of
/// the credential (random key, drawn once), as evenly spread and as hard to aim as a second
/// SipHash of it would be, which cost ~230 instructions on every call.
#[derive(Debug, Default, Clone, Copy)]
struct BuildKeyHasher;

impl std::hash::BuildHasher for BuildKeyHasher {
    type Hasher = KeyHasher;

    fn build_hasher(&self) -> KeyHasher {
        KeyHasher(0)
    }
}

/// See [`BuildKeyHasher`].
#[derive(Debug)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 16]` hashes as its length, then its bytes: the bytes' first eight are kept.
        if let Some(first) = bytes.first_chunk::<8>() {
            self.0 = u64::from_le_bytes(*first);
        }
    }

    fn write_usize(&mut self, _length: usize) {}
}

/// The SipHash key of this process's cache keys: random, drawn once. Without a random
/// source the process cannot run safely at all (page tokens and API keys need one too).
static SIP_KEY: LazyLock<[u8; 16]> = LazyLock::new(|| {
    let mut key = [0; 16];
    getrandom::fill(&mut key).expect("the operating system's random source");
    key
});

/// Verified credentials and until when they may be trusted without verifying again.
#[derive(Debug)]
pub struct CredentialCache {
    entries: RwLock<HashMap<Key, Entry, BuildKeyHasher>>,
    capacity: usize,
    /// Subjects forgotten lately and when: a verification that began before then (and so
    /// may have read the key before its revocation) is not remembered when it ends.
    forgotten: Mutex<Vec<(String, SystemTime)>>,
}

/// How long a forgotten subject refuses verifications begun before it was forgotten: far
/// longer than a verification takes (a database lookup under the call's deadline).
const FORGET_WINDOW: Duration = Duration::from_secs(60);

#[derive(Debug, Clone)]
struct Entry {
    /// Shared with every request it authenticates: a hit costs one reference count, not a
    /// copy of the subject and each scope.
    principal: Arc<Principal>,
    valid_until: SystemTime,
}

impl CredentialCache {
    /// An empty cache of at most `capacity` entries (0 caches nothing).
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: RwLock::new(HashMap::default()),
            capacity,
            forgotten: Mutex::new(Vec::new()),
        }
    }

    /// The key of `credential`. `kind` separates credential types that share a cache.
    pub fn key(kind: &str, credential: &str) -> Key {
        let mut hasher = SipHasher24::new_with_key(&SIP_KEY);
        hasher.write(kind.as_bytes());
        hasher.write(&[0]);
        hasher.write(credential.as_bytes());
        hasher.finish128().as_bytes()
    }

    /// The caller of a credential verified earlier, if its entry is still valid at `now`.
    pub fn get(&self, key: &Key, now: SystemTime) -> Option<Arc<Principal>> {
        let entries = self.entries.read().ok()?;
        let entry = entries.get(key)?;
        (now < entry.valid_until).then(|| entry.principal.clone())
    }

    /// Remembers a verified credential until `valid_until` (nothing if that is not after
    /// `now`).
    pub fn insert(
        &self,
        key: Key,
        principal: Arc<Principal>,
        valid_until: SystemTime,
        now: SystemTime,
    ) {
        if self.capacity == 0 || valid_until <= now || self.was_forgotten(&principal.subject, now) {
            return;
        }
        let Ok(mut entries) = self.entries.write() else {
            return;
        };
        if entries.len() >= self.capacity && !entries.contains_key(&key) {
            entries.retain(|_, entry| now < entry.valid_until);
            if entries.len() >= self.capacity {
                entries.clear();
            }
        }
        entries.insert(
            key,
            Entry {
                principal,
                valid_until,
            },
        );
    }

    /// Forgets every credential verified as `subject` (an API key revoked or rotated), so its
    /// next call is verified afresh, and refuses to remember a verification of it that began
    /// before this call (one in flight meanwhile).
    pub fn forget(&self, subject: &str) {
        let now = SystemTime::now();
        if let Ok(mut forgotten) = self.forgotten.lock() {
            forgotten
                .retain(|(_, at)| now.duration_since(*at).is_ok_and(|age| age < FORGET_WINDOW));
            forgotten.push((subject.to_owned(), now));
        }
        self.forget_where(|forgotten| forgotten == subject);
    }

    /// Forgets every credential verified as a subject `matches` accepts.
    pub fn forget_where(&self, matches: impl Fn(&str) -> bool) {
        if let Ok(mut entries) = self.entries.write() {
            entries.retain(|_, entry| !matches(&entry.principal.subject));
        }
    }

    /// Whether `subject` was forgotten at or after `began`.
    fn was_forgotten(&self, subject: &str, began: SystemTime) -> bool {
        self.forgotten.lock().is_ok_and(|forgotten| {
            forgotten
                .iter()
                .any(|(forgotten, at)| forgotten == subject && *at >= began)
        })
    }

    /// Entries held (expired ones included until they are evicted).
    pub fn len(&self) -> usize {
        self.entries.read().map_or(0, |entries| entries.len())
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `seconds` since the Unix epoch as a [`SystemTime`] (saturating far in the future).
pub fn unix_time(seconds: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH
        .checked_add(Duration::from_secs(seconds))
        .unwrap_or_else(|| SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::MAX)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caller(subject: &str) -> Arc<Principal> {
        Arc::new(Principal {
            subject: subject.into(),
            scopes: vec!["customers.read".into()],
        })
    }

    fn at(seconds: u64) -> SystemTime {
        unix_time(1_800_000_000 + seconds)
    }

    fn jwt(token: &str) -> Key {
        CredentialCache::key("jwt", token)
    }

    /// Caches `token` as verified (for a caller named like it) at `now` until `valid_until`.
    fn remember(cache: &CredentialCache, token: &str, valid_until: u64, now: u64) {
        cache.insert(jwt(token), caller(token), at(valid_until), at(now));
    }

    #[test]
    fn an_entry_is_used_until_its_end_and_never_at_or_after_it() {
        let cache = CredentialCache::new(10);
        let key = jwt("token-a");
        cache.insert(key, caller("alice"), at(60), at(0));
        assert_eq!(cache.get(&key, at(0)), Some(caller("alice")));
        assert_eq!(cache.get(&key, at(59)), Some(caller("alice")));
        assert_eq!(cache.get(&key, at(60)), None, "expiry is honoured");
        assert_eq!(cache.get(&key, at(3600)), None);
    }

    #[test]
    fn a_different_credential_is_never_confused_with_a_cached_one() {
        let cache = CredentialCache::new(10);
        cache.insert(jwt("token-a"), caller("alice"), at(60), at(0));
        for other in ["token-b", "token-a ", "token-", "Token-a", ""] {
            assert_eq!(cache.get(&jwt(other), at(1)), None, "{other:?}");
        }
        // The same text as another kind of credential is another key, too.
        assert_eq!(
            cache.get(&CredentialCache::key("api-key", "token-a"), at(1)),
            None
        );
        assert_ne!(jwt("token-a"), jwt("token-b"));
    }

    #[test]
    fn already_expired_credentials_are_not_cached() {
        let cache = CredentialCache::new(10);
        let key = jwt("late");
        cache.insert(key, caller("alice"), at(10), at(10));
        cache.insert(key, caller("alice"), at(9), at(10));
        assert!(cache.is_empty());
    }

    #[test]
    fn forgetting_a_subject_drops_all_its_credentials_and_nothing_else() {
        let cache = CredentialCache::new(10);
        cache.insert(jwt("old"), caller("api-key:1"), at(60), at(0));
        cache.insert(jwt("new"), caller("api-key:1"), at(60), at(0));
        cache.insert(jwt("other"), caller("api-key:2"), at(60), at(0));
        cache.forget("api-key:1");
        assert_eq!(cache.get(&jwt("old"), at(1)), None);
        assert_eq!(cache.get(&jwt("new"), at(1)), None);
        assert_eq!(cache.get(&jwt("other"), at(1)), Some(caller("api-key:2")));
        // A verification of the forgotten subject that began before it was forgotten (and
        // may have read the key before its revocation) is not remembered.
        let began = SystemTime::now() - Duration::from_secs(1);
        cache.forget("api-key:3");
        cache.insert(
            jwt("in flight"),
            caller("api-key:3"),
            began + Duration::from_secs(60),
            began,
        );
        assert_eq!(cache.get(&jwt("in flight"), began), None);
        let later = SystemTime::now() + Duration::from_secs(1);
        cache.insert(
            jwt("after"),
            caller("api-key:3"),
            later + Duration::from_secs(60),
            later,
        );
        assert_eq!(cache.get(&jwt("after"), later), Some(caller("api-key:3")));
    }

    #[test]
    fn the_cache_stays_within_its_capacity() {
        let cache = CredentialCache::new(3);
        for (i, token) in ["a", "b", "c"].iter().enumerate() {
            remember(&cache, token, 10 + i as u64, 0);
        }
        assert_eq!(cache.len(), 3);
        // Full, with one entry ("a") expired at t=10: that one makes room.
        remember(&cache, "d", 100, 10);
        assert_eq!(cache.len(), 3);
        assert_eq!(cache.get(&jwt("a"), at(10)), None);
        assert_eq!(cache.get(&jwt("d"), at(10)), Some(caller("d")));
        // Full of live entries: cleared, then the newcomer is kept.
        remember(&cache, "e", 100, 10);
        assert_eq!(cache.len(), 1);
        assert_eq!(cache.get(&jwt("e"), at(10)), Some(caller("e")));
        // Capacity 0 caches nothing.
        let off = CredentialCache::new(0);
        remember(&off, "a", 100, 0);
        assert!(off.is_empty());
    }
}
