//! Typed calls for the cache: `client.cache()` (the caller's namespace) and
//! `client.shared_cache()` (the platform-wide one), `get/get_many/set/delete/incr`.

use crate::{Client, ClientError};
use serde::{Deserialize, Serialize};
use serde_json::Value as Json;
use std::collections::HashMap;

/// One cache namespace, as `client.cache()` or, inside a transaction, `tx.cache()` gives it:
/// `set` then takes effect when the transaction commits; nothing else runs inside it.
#[derive(Clone, Copy)]
pub struct Cache<'a> {
    pub(crate) client: &'a Client,
    pub(crate) shared: bool,
    pub(crate) tx: Option<&'a str>,
}

#[derive(Serialize)]
struct Key<'a> {
    key: &'a str,
    shared: bool,
}

impl Cache<'_> {
    fn key<'k>(&self, key: &'k str) -> Key<'k> {
        Key {
            key,
            shared: self.shared,
        }
    }

    /// The value at `key`, if set and not expired.
    pub async fn get(&self, key: &str) -> Result<Option<Json>, ClientError> {
        #[derive(Deserialize)]
        struct Found {
            found: bool,
            value: Json,
        }
        let got: Found = self.client.call("cache.get", &self.key(key)).await?;
        Ok(got.found.then_some(got.value))
    }

    /// The values of those `keys` that are set.
    pub async fn get_many(&self, keys: &[&str]) -> Result<HashMap<String, Json>, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            keys: &'a [&'a str],
            shared: bool,
        }
        #[derive(Deserialize)]
        struct Values {
            values: HashMap<String, Json>,
        }
        let args = Args {
            keys,
            shared: self.shared,
        };
        let got: Values = self.client.call("cache.get_many", &args).await?;
        Ok(got.values)
    }

    /// Sets `key` to `value`, without expiry.
    pub async fn set(&self, key: &str, value: &Json) -> Result<(), ClientError> {
        self.set_with_ttl(key, value, None).await
    }

    /// Sets `key` to `value`, expiring after `ttl_ms` when given.
    pub async fn set_with_ttl(
        &self,
        key: &str,
        value: &Json,
        ttl_ms: Option<u64>,
    ) -> Result<(), ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            #[serde(flatten)]
            key: Key<'a>,
            value: &'a Json,
            ttl_ms: Option<u64>,
            tx: Option<&'a str>,
        }
        let args = Args {
            key: self.key(key),
            value,
            ttl_ms,
            tx: self.tx,
        };
        self.client.call_unit("cache.set", &args).await
    }

    /// Removes `key`; false when it was absent or expired.
    pub async fn delete(&self, key: &str) -> Result<bool, ClientError> {
        #[derive(Deserialize)]
        struct Deleted {
            deleted: bool,
        }
        let got: Deleted = self.client.call("cache.delete", &self.key(key)).await?;
        Ok(got.deleted)
    }

    /// Adds `by` to the integer at `key` (absent counts as 0); returns the new value.
    pub async fn incr(&self, key: &str, by: i64) -> Result<i64, ClientError> {
        #[derive(Serialize)]
        struct Args<'a> {
            #[serde(flatten)]
            key: Key<'a>,
            by: i64,
        }
        #[derive(Deserialize)]
        struct Counter {
            value: i64,
        }
        let args = Args {
            key: self.key(key),
            by,
        };
        let got: Counter = self.client.call("cache.incr", &args).await?;
        Ok(got.value)
    }
}

impl Client {
    /// The cache namespace of the caller's agent.
    pub fn cache(&self) -> Cache<'_> {
        Cache {
            client: self,
            shared: false,
            tx: None,
        }
    }

    /// The one platform-wide cache namespace (`shared: true`).
    pub fn shared_cache(&self) -> Cache<'_> {
        Cache {
            client: self,
            shared: true,
            tx: None,
        }
    }
}
