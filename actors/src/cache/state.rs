//! The rules of the cache, without actix: lookups that skip expired entries, a byte bound kept by
//! evicting the least recently used entries, counters, and the writes still to be stored.
//!
//! Recency is a queue of `(tick, key)` in order of use: a use appends, and an element whose tick
//! is no longer its key's (used again since, or removed) is stale, skipped when evicting and
//! dropped when the queue grows to twice the entries. A key carries its last tick, so lookups
//! neither allocate nor walk a tree, and dropping stale uses needs no lookup.

use super::{CacheError, CacheRow, CacheWrite};
use compact_str::CompactString;
use foldhash::fast::RandomState;
use ikigai_protocol::Packed;
use std::borrow::Borrow;
use std::cell::Cell;
use std::collections::{HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::rc::Rc;

/// Bytes counted per entry beyond its key and its value's msgpack (maps, timestamps, bookkeeping).
const OVERHEAD: usize = 64;

/// The tick of a key that was removed: never a use's.
const REMOVED: u64 = u64::MAX;

/// A key of the map, shared with its uses in the recency queue.
#[derive(Clone)]
struct Key(Rc<KeyUse>);

struct KeyUse {
    /// Inline up to 24 bytes, as most keys are: a lookup reads the name where it reads the
    /// tick, instead of following one more pointer (a cache miss on large caches).
    name: CompactString,
    /// When it was last used (larger: more recently), or [`REMOVED`].
    tick: Cell<u64>,
}

impl Key {
    fn new(name: String, tick: u64) -> Key {
        let name = CompactString::from(name);
        Key(Rc::new(KeyUse {
            name,
            tick: Cell::new(tick),
        }))
    }

    fn name(&self) -> &str {
        &self.0.name
    }

    fn tick(&self) -> u64 {
        self.0.tick.get()
    }

    fn used(&self, tick: u64) {
        self.0.tick.set(tick)
    }
}

impl Borrow<str> for Key {
    fn borrow(&self) -> &str {
        self.name()
    }
}

impl Hash for Key {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name().hash(state)
    }
}

impl PartialEq for Key {
    fn eq(&self, other: &Key) -> bool {
        self.name() == other.name()
    }
}

impl Eq for Key {}

struct Entry {
    /// The map's key, here too: one lookup reaches both (overwriting a key needs no other).
    key: Key,
    value: Packed,
    bytes: usize,
    expires_ms: Option<i64>,
}

/// Every live entry, in memory. The maps hash with foldhash, seeded at random per map: several
/// times cheaper than SipHash on short keys, and keys chosen to collide cannot be precomputed.
pub struct CacheState {
    entries: HashMap<Key, Entry, RandomState>,
    /// Uses, oldest first; stale elements are skipped (see the module header).
    recency: VecDeque<(u64, Key)>,
    next_tick: u64,
    bytes: usize,
    max_bytes: usize,
    /// Keys changed since they were last stored; what is stored is their state when taken.
    unstored: HashSet<Key, RandomState>,
}

impl CacheState {
    pub fn new(max_bytes: usize) -> Self {
        CacheState {
            entries: HashMap::default(),
            recency: VecDeque::new(),
            next_tick: 0,
            bytes: 0,
            max_bytes,
            unstored: HashSet::default(),
        }
    }

    /// Forgets everything (before a reload from storage).
    pub fn reset(&mut self) {
        *self = CacheState::new(self.max_bytes);
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Installs stored entries (not written back), evicting if they exceed the bound.
    pub fn load(&mut self, rows: Vec<CacheRow>, now_ms: i64) {
        for row in rows.into_iter().filter(|r| live(r.expires_ms, now_ms)) {
            let bytes = entry_bytes(&row.key, &row.value);
            self.insert(row.key, row.value, row.expires_ms, bytes);
        }
        self.evict(None);
    }

    /// The value of a live key; marks it recently used.
    pub fn get(&mut self, key: &str, now: impl Clock) -> Option<Packed> {
        let (key, entry) = self.entries.get_key_value(key)?;
        if !live(entry.expires_ms, now) {
            return None;
        }
        let tick = self.next_tick;
        self.next_tick += 1;
        key.used(tick);
        self.recency.push_back((tick, key.clone()));
        let value = entry.value.clone();
        self.drop_stale_uses();
        Some(value)
    }

    pub fn set(
        &mut self,
        key: String,
        value: Packed,
        expires_ms: Option<i64>,
    ) -> Result<(), CacheError> {
        let bytes = entry_bytes(&key, &value);
        if bytes > self.max_bytes {
            let max = self.max_bytes;
            return Err(CacheError::TooLarge { bytes, max });
        }
        let key = self.insert(key, value, expires_ms, bytes);
        self.evict(Some(key.name()));
        self.unstored.replace(key);
        Ok(())
    }

    /// Removes a key; `true` if it was live.
    pub fn delete(&mut self, key: &str, now: impl Clock) -> bool {
        let was_live = self
            .entries
            .get(key)
            .is_some_and(|e| live(e.expires_ms, now));
        if let Some(key) = self.remove(key) {
            self.unstored.replace(key);
        }
        was_live
    }

    /// Adds `by` to the integer at `key` (absent or expired counts as 0), keeping its expiry.
    pub fn incr(&mut self, key: &str, by: i64, now: impl Clock) -> Result<i64, CacheError> {
        let (current, expires_ms) = match self.entries.get(key) {
            Some(e) if live(e.expires_ms, now) => match e.value.as_i64() {
                Some(n) => (n, e.expires_ms),
                None => return Err(CacheError::NotInteger(key.to_owned())),
            },
            _ => (0, None),
        };
        let next = current
            .checked_add(by)
            .ok_or_else(|| CacheError::Overflow(key.to_owned()))?;
        self.set(key.to_owned(), Packed::from_i64(next), expires_ms)?;
        Ok(next)
    }

    /// Drops expired entries from memory (storage sweeps its own); returns how many.
    pub fn sweep(&mut self, now_ms: i64) -> usize {
        let expired: Vec<Key> = self
            .entries
            .iter()
            .filter(|(_, e)| !live(e.expires_ms, now_ms))
            .map(|(k, _)| k.clone())
            .collect();
        expired.iter().for_each(|k| {
            self.remove(k.name());
        });
        expired.len()
    }

    /// The changes to store next, at most `max`, one per key: each key's state now.
    pub fn take_unstored(&mut self, max: usize) -> Vec<CacheWrite> {
        let keys: Vec<Key> = self.unstored.iter().take(max).cloned().collect();
        keys.iter()
            .map(|key| {
                self.unstored.remove(key);
                let name = key.name();
                match self.entries.get(name) {
                    Some(e) => CacheWrite::Put(CacheRow {
                        key: name.to_owned(),
                        value: e.value.clone(),
                        expires_ms: e.expires_ms,
                    }),
                    None => CacheWrite::Remove(name.to_owned()),
                }
            })
            .collect()
    }

    /// Every live entry, as storage keeps it.
    pub fn live_rows(&self, now_ms: i64) -> Vec<CacheRow> {
        self.entries
            .values()
            .filter(|e| live(e.expires_ms, now_ms))
            .map(|e| CacheRow {
                key: e.key.name().to_owned(),
                value: e.value.clone(),
                expires_ms: e.expires_ms,
            })
            .collect()
    }

    pub fn has_unstored(&self) -> bool {
        !self.unstored.is_empty()
    }

    /// Takes back the keys of writes whose storing failed: their state now is stored next.
    pub fn unstored_again(&mut self, writes: Vec<CacheWrite>) {
        for write in writes {
            let name = match write {
                CacheWrite::Put(row) => row.key,
                CacheWrite::Remove(key) => key,
            };
            if !self.unstored.contains(name.as_str()) {
                let key = self
                    .entries
                    .get_key_value(name.as_str())
                    .map(|(k, _)| k.clone());
                self.unstored
                    .insert(key.unwrap_or_else(|| Key::new(name, REMOVED)));
            }
        }
    }

    fn insert(
        &mut self,
        name: String,
        value: Packed,
        expires_ms: Option<i64>,
        bytes: usize,
    ) -> Key {
        let tick = self.next_tick;
        self.next_tick += 1;
        let key = match self.entries.get_mut(name.as_str()) {
            Some(entry) => {
                self.bytes = self.bytes - entry.bytes + bytes;
                entry.value = value;
                entry.bytes = bytes;
                entry.expires_ms = expires_ms;
                entry.key.used(tick);
                entry.key.clone()
            }
            None => {
                let key = Key::new(name, tick);
                self.bytes += bytes;
                let entry = Entry {
                    key: key.clone(),
                    value,
                    bytes,
                    expires_ms,
                };
                self.entries.insert(key.clone(), entry);
                key
            }
        };
        self.recency.push_back((tick, key.clone()));
        self.drop_stale_uses();
        key
    }

    /// Removes a key; the removed key, if it was there.
    fn remove(&mut self, key: &str) -> Option<Key> {
        let (key, entry) = self.entries.remove_entry(key)?;
        key.used(REMOVED);
        self.bytes -= entry.bytes;
        Some(key)
    }

    /// Drops the stale uses once they outnumber the entries (amortized: one check per use).
    fn drop_stale_uses(&mut self) {
        if self.recency.len() > 2 * self.entries.len() + 64 {
            self.recency.retain(|(tick, key)| key.tick() == *tick);
        }
    }

    /// Evicts least recently used entries until the bound holds (never `keep`).
    fn evict(&mut self, keep: Option<&str>) {
        while self.bytes > self.max_bytes {
            let Some((tick, oldest)) = self.recency.pop_front() else {
                return;
            };
            if oldest.tick() != tick {
                continue;
            }
            if Some(oldest.name()) == keep {
                self.recency.push_front((tick, oldest));
                return;
            }
            self.remove(oldest.name());
            self.unstored.replace(oldest);
        }
    }
}

fn live(expires_ms: Option<i64>, now: impl Clock) -> bool {
    expires_ms.is_none_or(|t| t > now.now_ms())
}

/// The time, in Unix milliseconds: read only when an entry with an expiry needs it.
pub trait Clock: Copy {
    fn now_ms(self) -> i64;
}

/// A fixed time.
impl Clock for i64 {
    fn now_ms(self) -> i64 {
        self
    }
}

fn entry_bytes(key: &str, value: &Packed) -> usize {
    key.len() + value.len() + OVERHEAD
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn v(x: serde_json::Value) -> Packed {
        serde::Deserialize::deserialize(x).unwrap()
    }

    #[test]
    fn expired_keys_are_never_returned_and_are_swept() {
        let mut c = CacheState::new(1 << 20);
        c.set("a/k".into(), v(json!(1)), Some(1000)).unwrap();
        c.set("a/forever".into(), v(json!(2)), None).unwrap();
        assert_eq!(c.get("a/k", 999), Some(v(json!(1))));
        assert_eq!(c.get("a/k", 1000), None);
        assert!(
            !c.delete("a/k", 1000),
            "an expired key does not count as deleted"
        );
        c.set("a/k2".into(), v(json!(1)), Some(1000)).unwrap();
        assert_eq!(c.sweep(1000), 1);
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn the_byte_bound_evicts_the_least_recently_used() {
        let one = entry_bytes("a/0", &v(json!("x")));
        let mut c = CacheState::new(one * 3);
        for k in ["a/0", "a/1", "a/2"] {
            c.set(k.into(), v(json!("x")), None).unwrap();
        }
        c.get("a/0", 0);
        c.take_unstored(usize::MAX);
        c.set("a/3".into(), v(json!("x")), None).unwrap();
        assert_eq!(c.get("a/1", 0), None, "a/1 was the least recently used");
        assert!(c.get("a/0", 0).is_some());
        assert!(c.bytes() <= one * 3);
        let writes = c.take_unstored(usize::MAX);
        assert!(
            writes.contains(&CacheWrite::Remove("a/1".into())),
            "{writes:?}"
        );
        let huge = c.set("a/big".into(), v(json!("x".repeat(one * 3))), None);
        assert!(matches!(huge, Err(CacheError::TooLarge { .. })));
    }

    #[test]
    fn repeated_uses_keep_the_recency_queue_bounded_and_exact() {
        let one = entry_bytes("a/0", &v(json!("x")));
        let mut c = CacheState::new(one * 2);
        c.set("a/0".into(), v(json!("x")), None).unwrap();
        c.set("a/1".into(), v(json!("x")), None).unwrap();
        for _ in 0..1000 {
            c.get("a/1", 0);
            c.get("a/0", 0);
        }
        assert!(c.recency.len() <= 2 * c.len() + 65, "{}", c.recency.len());
        c.get("a/1", 0);
        c.set("a/2".into(), v(json!("x")), None).unwrap();
        assert_eq!(c.get("a/0", 0), None, "a/0 was the least recently used");
        assert!(c.get("a/1", 0).is_some() && c.get("a/2", 0).is_some());
    }

    #[test]
    fn counters_start_at_zero_keep_their_expiry_and_refuse_non_integers() {
        let mut c = CacheState::new(1 << 20);
        assert_eq!(c.incr("a/n", 5, 0), Ok(5));
        assert_eq!(c.incr("a/n", -2, 0), Ok(3));
        c.set("a/t".into(), v(json!(1)), Some(100)).unwrap();
        assert_eq!(c.incr("a/t", 1, 50), Ok(2));
        assert_eq!(c.get("a/t", 100), None, "incr keeps the expiry");
        c.set("a/s".into(), v(json!("x")), None).unwrap();
        assert_eq!(
            c.incr("a/s", 1, 0),
            Err(CacheError::NotInteger("a/s".into()))
        );
        c.set("a/m".into(), v(json!(i64::MAX)), None).unwrap();
        assert_eq!(c.incr("a/m", 1, 0), Err(CacheError::Overflow("a/m".into())));
    }

    #[test]
    fn unstored_writes_coalesce_and_failed_ones_come_back_unless_superseded() {
        let mut c = CacheState::new(1 << 20);
        c.set("a/k".into(), v(json!(1)), None).unwrap();
        c.set("a/k".into(), v(json!(2)), None).unwrap();
        c.set("a/gone".into(), v(json!(1)), None).unwrap();
        c.delete("a/gone", 0);
        let mut writes = c.take_unstored(usize::MAX);
        writes.sort_by_key(|w| format!("{w:?}"));
        assert_eq!(writes.len(), 2);
        assert!(writes.contains(&CacheWrite::Remove("a/gone".into())));
        c.set("a/k".into(), v(json!(3)), None).unwrap();
        c.unstored_again(writes);
        let again = c.take_unstored(usize::MAX);
        let put_k = again.iter().find_map(|w| match w {
            CacheWrite::Put(r) if r.key == "a/k" => Some(r.value.clone()),
            _ => None,
        });
        assert_eq!(put_k, Some(v(json!(3))), "the newer write wins");
        assert_eq!(again.len(), 2);
    }

    #[test]
    fn unstored_writes_are_taken_in_bounded_batches() {
        let mut c = CacheState::new(1 << 20);
        for k in 0..10 {
            c.set(format!("a/{k}"), v(json!(k)), None).unwrap();
        }
        let mut taken = c.take_unstored(4);
        assert_eq!(taken.len(), 4);
        taken.extend(c.take_unstored(4));
        taken.extend(c.take_unstored(4));
        assert_eq!(taken.len(), 10);
        assert!(!c.has_unstored());
    }
}
