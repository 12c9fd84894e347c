//! The cache service on Redis: each entry is one Redis string, read and changed with Redis's
//! own commands (GET, MGET, SET with PX, DEL, INCRBY), so Redis holds, expires and evicts them.
//!
//! A value is msgpack ([`Packed`]). One that is an integer fitting an `i64` is stored as its
//! decimal text, so that INCRBY works on it natively and keeps its time to live; any other is
//! stored as its msgpack bytes. Those never look like decimal text: msgpack's integers are its
//! only values whose first byte is below 0x80 (positive fixint) or at least 0xe0 (negative
//! fixint), so every other value starts with a byte in 0x80..=0xdf, never an ASCII digit or
//! `-`, and INCRBY refuses it. The rules and errors are those of the in-memory engine
//! (`ikigai_actors::cache::CacheState`): the same entries are too large, the same counters fail.

use super::batch::Batched;
use super::{store_error, RedisEngine};
use async_trait::async_trait;
use ikigai_actors::cache::{Cache, CacheError};
use ikigai_actors::store::StoreError;
use ikigai_protocol::Packed;
use redis::{Cmd, RedisError};
use std::time::Duration;

/// Bytes counted per entry beyond its key and value, as the in-memory engine counts them, so
/// that both engines refuse the same entries as too large.
const OVERHEAD: usize = 64;

/// The longest time to live sent to Redis (which refuses expiry times that overflow): 100
/// years, as good as forever.
const MAX_TTL_MS: u64 = 100 * 366 * 24 * 3600 * 1000;

/// Redis's answers to an INCRBY it refuses.
const NOT_INTEGER: &str = "not an integer";
const OVERFLOW: &str = "would overflow";

/// The cache, kept in Redis under `<prefix>:cache:`.
pub struct RedisCache {
    conn: Batched,
    namespace: String,
    max_bytes: usize,
}

impl RedisCache {
    /// Refuses entries whose key and value exceed `max_bytes` (the cache's `max_bytes`, as the
    /// in-memory engine counts an entry); Redis's own `maxmemory` bounds the whole.
    pub fn new(engine: &RedisEngine, max_bytes: usize) -> RedisCache {
        RedisCache {
            conn: Batched::new(engine.conn()),
            namespace: engine.namespace("cache"),
            max_bytes,
        }
    }

    fn key(&self, key: &str) -> String {
        format!("{}{key}", self.namespace)
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> Result<T, RedisError> {
        self.conn.query(cmd.clone()).await
    }

    fn check_size(&self, key: &str, value_len: usize) -> Result<(), CacheError> {
        let bytes = key.len() + value_len + OVERHEAD;
        if bytes > self.max_bytes {
            let max = self.max_bytes;
            return Err(CacheError::TooLarge { bytes, max });
        }
        Ok(())
    }
}

#[async_trait(?Send)]
impl Cache for RedisCache {
    async fn get(&self, key: &str) -> Result<Option<Packed>, CacheError> {
        let stored: Option<Vec<u8>> = self
            .query(redis::cmd("GET").arg(self.key(key)))
            .await
            .map_err(store_error)?;
        Ok(stored.map(|s| decode(&s)).transpose()?)
    }

    async fn get_many(&self, keys: &[String]) -> Result<Vec<Option<Packed>>, CacheError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        keys.iter().for_each(|k| {
            cmd.arg(self.key(k));
        });
        let stored: Vec<Option<Vec<u8>>> = self.query(&cmd).await.map_err(store_error)?;
        let values = stored.iter().map(|s| s.as_deref().map(decode).transpose());
        let values: Result<Vec<_>, StoreError> = values.collect();
        Ok(values?)
    }

    async fn set(
        &self,
        key: String,
        value: Packed,
        ttl: Option<Duration>,
    ) -> Result<(), CacheError> {
        self.check_size(&key, value.len())?;
        let cmd = set_command(self.key(&key), &value, ttl);
        self.query::<()>(&cmd).await.map_err(store_error)?;
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, CacheError> {
        let removed: u64 = self
            .query(redis::cmd("DEL").arg(self.key(key)))
            .await
            .map_err(store_error)?;
        Ok(removed > 0)
    }

    /// INCRBY, which keeps the key's time to live. An integer is at least one byte: a key too
    /// long for any value is refused before Redis is asked.
    async fn incr(&self, key: &str, by: i64) -> Result<i64, CacheError> {
        self.check_size(key, 1)?;
        let cmd = redis::cmd("INCRBY").arg(self.key(key)).arg(by).clone();
        self.query(&cmd).await.map_err(|e| incr_error(key, e))
    }

    /// Nothing waits: Redis answered every change already.
    async fn flush(&self) {}
}

/// SET, with PX for a time to live. One that ends as it starts (under a millisecond; Redis
/// refuses PX 0) removes the key instead: the in-memory engine never serves such an entry.
fn set_command(key: String, value: &Packed, ttl: Option<Duration>) -> Cmd {
    let ttl_ms =
        ttl.map(|t| u64::try_from(t.as_millis()).map_or(MAX_TTL_MS, |ms| ms.min(MAX_TTL_MS)));
    if ttl_ms == Some(0) {
        let mut del = redis::cmd("DEL");
        del.arg(key);
        return del;
    }
    let mut set = redis::cmd("SET");
    set.arg(key).arg(encode(value));
    if let Some(ms) = ttl_ms {
        set.arg("PX").arg(ms);
    }
    set
}

/// What is stored for `value`: an `i64` as decimal text, anything else as its msgpack.
fn encode(value: &Packed) -> Vec<u8> {
    match value.as_i64() {
        Some(n) => n.to_string().into_bytes(),
        None => value.as_bytes().to_vec(),
    }
}

/// The value `stored` holds (see [`encode`]).
fn decode(stored: &[u8]) -> Result<Packed, StoreError> {
    let undecodable = |why: String| StoreError::Undecodable(format!("a cache value: {why}"));
    match stored.first() {
        Some(b'0'..=b'9' | b'-') => std::str::from_utf8(stored)
            .ok()
            .and_then(|text| text.parse::<i64>().ok())
            .map(Packed::from_i64)
            .ok_or_else(|| undecodable("text that is not a 64-bit integer".into())),
        _ => Packed::from_msgpack(stored).map_err(undecodable),
    }
}

/// INCRBY's refusals as the in-memory engine words them; a value of another Redis type than a
/// string is not an integer either.
fn incr_error(key: &str, e: RedisError) -> CacheError {
    let detail = e.detail().unwrap_or_default();
    if e.code() == Some("ERR") && detail.contains(OVERFLOW) {
        CacheError::Overflow(key.to_owned())
    } else if (e.code() == Some("ERR") && detail.contains(NOT_INTEGER))
        || e.code() == Some("WRONGTYPE")
    {
        CacheError::NotInteger(key.to_owned())
    } else {
        CacheError::Store(store_error(e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ikigai_actors::cache::CacheState;
    use serde_json::{json, Value};

    fn v(x: Value) -> Packed {
        serde::Deserialize::deserialize(x).unwrap()
    }

    /// An engine under a prefix of its own; `clean` removes every key under it.
    struct Fixture {
        engine: RedisEngine,
        cache: RedisCache,
        raw: redis::aio::ConnectionManager,
    }

    impl Fixture {
        async fn new(max_bytes: usize) -> Fixture {
            let prefix = format!("test-{}", uuid::Uuid::new_v4());
            let engine = RedisEngine::connect("redis://127.0.0.1:6379", &prefix)
                .await
                .expect("Redis runs at 127.0.0.1:6379 on this machine");
            let cache = RedisCache::new(&engine, max_bytes);
            let raw = engine.conn();
            Fixture { engine, cache, raw }
        }

        async fn raw<T: redis::FromRedisValue>(&self, cmd: &Cmd) -> T {
            cmd.query_async(&mut self.raw.clone()).await.unwrap()
        }

        async fn clean(self) {
            let pattern = format!("{}:*", self.engine.prefix());
            let keys: Vec<String> = self.raw(redis::cmd("KEYS").arg(pattern)).await;
            if !keys.is_empty() {
                self.raw::<()>(redis::cmd("DEL").arg(keys)).await;
            }
        }
    }

    #[actix_rt::test]
    async fn values_come_back_as_they_were_set() {
        let f = Fixture::new(1 << 20).await;
        let values = [
            json!(42),
            json!(-7),
            json!(0),
            json!(i64::MIN),
            json!(u64::MAX),
            json!(1.5),
            json!(-0.5),
            json!("12"),
            json!(""),
            json!(null),
            json!(true),
            json!([1, "two", {"three": 3.0}]),
            json!({"a": {"b": [null]}, "n": 1}),
        ];
        for (i, value) in values.iter().enumerate() {
            let key = format!("ns/{i}");
            f.cache
                .set(key.clone(), v(value.clone()), None)
                .await
                .unwrap();
            let back = f.cache.get(&key).await.unwrap().expect("set");
            assert_eq!(serde_json::to_value(&back).unwrap(), *value);
        }
        let keys: Vec<String> = ["ns/0", "ns/missing", "ns/7"].map(String::from).into();
        let many = f.cache.get_many(&keys).await.unwrap();
        assert_eq!(many, [Some(v(json!(42))), None, Some(v(json!("12")))]);
        assert_eq!(f.cache.get_many(&[]).await.unwrap(), []);
        assert!(f.cache.delete("ns/0").await.unwrap());
        assert!(!f.cache.delete("ns/0").await.unwrap(), "already gone");
        assert_eq!(f.cache.get("ns/0").await.unwrap(), None);
        f.clean().await;
    }

    #[actix_rt::test]
    async fn integers_are_decimal_text_and_other_values_msgpack() {
        let f = Fixture::new(1 << 20).await;
        f.cache
            .set("ns/n".into(), v(json!(-12)), None)
            .await
            .unwrap();
        f.cache
            .set("ns/s".into(), v(json!("x")), None)
            .await
            .unwrap();
        let n: Vec<u8> = f.raw(redis::cmd("GET").arg(f.cache.key("ns/n"))).await;
        assert_eq!(n, b"-12");
        let incremented: i64 = f
            .raw(redis::cmd("INCRBY").arg(f.cache.key("ns/n")).arg(2))
            .await;
        assert_eq!(incremented, -10, "Redis's own INCRBY counts it");
        let s: Vec<u8> = f.raw(redis::cmd("GET").arg(f.cache.key("ns/s"))).await;
        assert_eq!(s, v(json!("x")).as_bytes());
        for value in [
            json!(1.0),
            json!("7"),
            json!([]),
            json!({}),
            json!(null),
            json!(u64::MAX),
        ] {
            let first = encode(&v(value.clone()))[0];
            assert!(
                (0x80..=0xdf).contains(&first),
                "{value} starts with {first:#x}"
            );
        }
        f.clean().await;
    }

    #[actix_rt::test]
    async fn counters_match_the_in_memory_engine() {
        let f = Fixture::new(1 << 20).await;
        let mut memory = CacheState::new(1 << 20);
        let set = [
            ("ns/f", json!(1.0)),
            ("ns/s", json!("5")),
            ("ns/big", json!(u64::MAX)),
            ("ns/max", json!(i64::MAX)),
            ("ns/min", json!(i64::MIN)),
        ];
        for (key, value) in set {
            f.cache
                .set(key.into(), v(value.clone()), None)
                .await
                .unwrap();
            memory.set(key.into(), v(value), None).unwrap();
        }
        let incrs = [
            ("ns/new", 5),
            ("ns/new", -7),
            ("ns/f", 1),
            ("ns/s", 1),
            ("ns/big", 1),
            ("ns/max", 1),
            ("ns/max", -1),
            ("ns/min", -1),
        ];
        for (key, by) in incrs {
            let expected = memory.incr(key, by, 0);
            assert_eq!(f.cache.incr(key, by).await, expected, "incr {key} by {by}");
        }
        f.raw::<()>(redis::cmd("RPUSH").arg(f.cache.key("ns/list")).arg(1))
            .await;
        let list = f.cache.incr("ns/list", 1).await;
        assert_eq!(list, Err(CacheError::NotInteger("ns/list".into())));
        f.clean().await;
    }

    #[actix_rt::test]
    async fn entries_expire_and_counters_keep_their_time_to_live() {
        let f = Fixture::new(1 << 20).await;
        let short = Some(Duration::from_millis(100));
        f.cache
            .set("ns/t".into(), v(json!(1)), short)
            .await
            .unwrap();
        assert_eq!(f.cache.incr("ns/t", 1).await, Ok(2));
        let pttl: i64 = f.raw(redis::cmd("PTTL").arg(f.cache.key("ns/t"))).await;
        assert!((1..=100).contains(&pttl), "INCRBY kept the TTL: {pttl}");
        f.cache
            .set("ns/zero".into(), v(json!(1)), Some(Duration::ZERO))
            .await
            .unwrap();
        assert_eq!(
            f.cache.get("ns/zero").await.unwrap(),
            None,
            "expired at once"
        );
        f.cache
            .set("ns/long".into(), v(json!(1)), Some(Duration::MAX))
            .await
            .unwrap();
        let pttl: i64 = f.raw(redis::cmd("PTTL").arg(f.cache.key("ns/long"))).await;
        assert!(pttl > 0 && pttl as u64 <= MAX_TTL_MS, "{pttl}");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(f.cache.get("ns/t").await.unwrap(), None);
        assert!(
            !f.cache.delete("ns/t").await.unwrap(),
            "an expired key was not live"
        );
        assert_eq!(
            f.cache.incr("ns/t", 3).await,
            Ok(3),
            "an expired counter starts at 0"
        );
        let pttl: i64 = f.raw(redis::cmd("PTTL").arg(f.cache.key("ns/t"))).await;
        assert_eq!(pttl, -1, "and lives on without a TTL");
        f.clean().await;
    }

    #[actix_rt::test]
    async fn entries_too_large_are_refused_as_in_memory() {
        let max = 200;
        let f = Fixture::new(max).await;
        let mut memory = CacheState::new(max);
        for size in [100, 120, 300] {
            let value = v(json!("x".repeat(size)));
            let expected = memory.set("ns/big".into(), value.clone(), None);
            let got = f.cache.set("ns/big".into(), value, None).await;
            assert_eq!(got, expected, "a {size}-byte string");
        }
        let long = "k".repeat(max);
        assert_eq!(f.cache.incr(&long, 1).await, memory.incr(&long, 1, 0));
        f.clean().await;
    }

    #[actix_rt::test]
    async fn stored_bytes_that_are_no_value_are_undecodable() {
        let f = Fixture::new(1 << 20).await;
        for (key, bytes) in [
            ("ns/text", &b"12x"[..]),
            ("ns/bin", &[0xc4, 0x01, 0x00][..]),
        ] {
            f.raw::<()>(redis::cmd("SET").arg(f.cache.key(key)).arg(bytes))
                .await;
            let got = f.cache.get(key).await;
            assert!(
                matches!(got, Err(CacheError::Store(StoreError::Undecodable(_)))),
                "{got:?}"
            );
        }
        f.clean().await;
    }
}
