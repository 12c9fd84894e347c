//! The Redis engine: one connection to a Redis server shared by the services kept there
//! ([`RedisCache`], [`RedisPubSub`]), every key under one prefix, and what Redis's persistence
//! settings let a crash of Redis lose ([`Durability`]).
//!
//! Keys and channels are `<prefix>:<service>:<name>`, e.g. `ikigai:cache:<namespace>/<key>` and
//! `ikigai:ps:<topic>`, so that several roots (or tests) can share one Redis under their own
//! prefixes. Redis's errors become [`StoreError`]s in one place, [`store_error`].

mod batch;
mod cache;
mod engine;
mod mailbox;
mod pubsub;
mod queue;

pub use cache::RedisCache;
pub use mailbox::RedisMailboxes;
pub use pubsub::RedisPubSub;
pub use queue::RedisQueues;

use ikigai_actors::store::StoreError;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{Client, ErrorKind, RedisError, RedisResult};
use std::collections::HashMap;
use std::time::Duration;
use thiserror::Error;
use tracing::{info, warn};

/// The prefix of every key when the configuration names none.
pub const DEFAULT_PREFIX: &str = "ikigai";

/// How long [`RedisEngine::connect`] waits for Redis to answer, and each connection attempt.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long a command may wait for its answer before it fails as unavailable.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Attempts after a connection fails (1 to 2 s later: backon's minimum delay, and jitter)
/// before the command waiting for it fails; the next command tries again. One, so that
/// start-up against a Redis that is down fails well within [`CONNECT_TIMEOUT`], and commands
/// fail fast while it is.
const RETRIES: usize = 1;

/// Why the engine could not start.
#[derive(Debug, Error)]
pub enum ConnectError {
    #[error("the Redis URL does not parse: {0}")]
    BadUrl(#[source] RedisError),
    #[error("Redis at {addr} does not answer PING: {source}")]
    NoAnswer { addr: String, source: RedisError },
    #[error("Redis at {addr} did not answer PING within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
}

/// A connected Redis: what the Redis services are built from.
pub struct RedisEngine {
    client: Client,
    conn: ConnectionManager,
    prefix: String,
    durability: Durability,
}

impl RedisEngine {
    /// Connects to `url` (`redis://127.0.0.1:6379`), checks that Redis answers PING, and reads
    /// and logs what its persistence settings let a crash lose. Keys go under `prefix`.
    pub async fn connect(url: &str, prefix: &str) -> Result<RedisEngine, ConnectError> {
        let client = Client::open(url).map_err(ConnectError::BadUrl)?;
        let addr = client.get_connection_info().addr.to_string();
        let mut conn = tokio::time::timeout(CONNECT_TIMEOUT, answering(client.clone()))
            .await
            .map_err(|_| ConnectError::Timeout {
                addr: addr.clone(),
                timeout: CONNECT_TIMEOUT,
            })?
            .map_err(|source| ConnectError::NoAnswer {
                addr: addr.clone(),
                source,
            })?;
        let durability = Durability::read(&mut conn).await;
        durability.log(&addr);
        Ok(RedisEngine {
            client,
            conn,
            prefix: prefix.to_owned(),
            durability,
        })
    }

    /// What a crash of Redis can lose, as read at start-up.
    pub fn durability(&self) -> &Durability {
        &self.durability
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The shared connection (reconnecting by itself); cheap to clone.
    fn conn(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// For connections of their own (pub/sub).
    fn client(&self) -> &Client {
        &self.client
    }

    /// The start of every key of `service`: `<prefix>:<service>:`.
    fn namespace(&self, service: &str) -> String {
        namespace(&self.prefix, service)
    }
}

fn namespace(prefix: &str, service: &str) -> String {
    format!("{prefix}:{service}:")
}

/// A connection manager to a Redis that answered PING.
async fn answering(client: Client) -> RedisResult<ConnectionManager> {
    let config = ConnectionManagerConfig::new()
        .set_number_of_retries(RETRIES)
        .set_connection_timeout(CONNECT_TIMEOUT)
        .set_response_timeout(RESPONSE_TIMEOUT);
    let mut conn = ConnectionManager::new_with_config(client, config).await?;
    redis::cmd("PING").query_async::<String>(&mut conn).await?;
    Ok(conn)
}

/// What a `kill -9` (or crash) of Redis can lose of the writes it acknowledged, by its
/// `appendonly`, `appendfsync` and `save` settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durability {
    /// `appendonly yes`, `appendfsync always`: each write is fsynced before Redis answers.
    Fsynced,
    /// `appendonly yes`, `appendfsync everysec`.
    EverySecond,
    /// `appendonly yes`, `appendfsync no`: the OS writes the AOF to disk when it likes.
    OsFlush,
    /// No AOF; RDB snapshots by these `save` rules.
    Snapshots(String),
    /// No AOF and no snapshots (`save ""`): the data lives in memory only.
    MemoryOnly,
    /// The settings could not be read (CONFIG disabled or renamed), or are not known here.
    Unknown(String),
}

impl Durability {
    /// From the values of `CONFIG GET appendonly`, `appendfsync` and `save`.
    pub fn from_settings(appendonly: &str, appendfsync: &str, save: &str) -> Durability {
        let aof = appendonly.eq_ignore_ascii_case("yes");
        match (aof, appendfsync.to_ascii_lowercase().as_str()) {
            (true, "always") => Durability::Fsynced,
            (true, "everysec") => Durability::EverySecond,
            (true, "no") => Durability::OsFlush,
            (true, other) => Durability::Unknown(format!("appendfsync {other:?}")),
            (false, _) if save.trim().is_empty() => Durability::MemoryOnly,
            (false, _) => Durability::Snapshots(save.to_owned()),
        }
    }

    /// Reads the settings; [`Durability::Unknown`] when Redis refuses CONFIG.
    async fn read(conn: &mut ConnectionManager) -> Durability {
        let mut pipe = redis::pipe();
        for name in ["appendonly", "appendfsync", "save"] {
            pipe.cmd("CONFIG").arg("GET").arg(name);
        }
        type Settings = (
            HashMap<String, String>,
            HashMap<String, String>,
            HashMap<String, String>,
        );
        let (a, f, s) = match pipe.query_async::<Settings>(conn).await {
            Ok(settings) => settings,
            Err(e) => return Durability::Unknown(format!("CONFIG GET failed: {e}")),
        };
        match (a.get("appendonly"), f.get("appendfsync"), s.get("save")) {
            (Some(a), Some(f), Some(s)) => Durability::from_settings(a, f, s),
            _ => Durability::Unknown("CONFIG GET did not name every setting".into()),
        }
    }

    /// Whether a crash of Redis can lose writes it acknowledged.
    pub fn can_lose_writes(&self) -> bool {
        *self != Durability::Fsynced
    }

    /// In plain words, what a `kill -9` of Redis loses.
    pub fn describe(&self) -> String {
        let loses = match self {
            Durability::Fsynced => {
                "nothing it acknowledged (appendonly yes, appendfsync always: each write is \
                 fsynced before Redis answers)"
                    .to_owned()
            }
            Durability::EverySecond => {
                "up to about one second of acknowledged writes (appendonly yes, appendfsync \
                 everysec; up to two when the disk lags)"
                    .to_owned()
            }
            Durability::OsFlush => {
                "the acknowledged writes the OS has not yet written to disk, typically up to \
                 30 seconds of them (appendonly yes, appendfsync no)"
                    .to_owned()
            }
            Durability::Snapshots(save) => format!(
                "every write acknowledged since the last RDB snapshot (appendonly no, \
                 save {save:?})"
            ),
            Durability::MemoryOnly => "everything: appendonly no and save \"\", Redis keeps the \
                 data in memory only"
                .to_owned(),
            Durability::Unknown(why) => {
                format!("an unknown amount, assume everything ({why})")
            }
        };
        format!("a kill -9 of Redis loses {loses}")
    }

    fn log(&self, addr: &str) {
        if self.can_lose_writes() {
            warn!(redis = %addr, durability = %self.describe(), "Redis can lose acknowledged writes");
        } else {
            info!(redis = %addr, durability = %self.describe(), "Redis fsyncs every write");
        }
    }
}

/// `s` matching only itself in a Redis glob (`PSUBSCRIBE`, `SCAN MATCH`).
pub(crate) fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '?' | '*' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The one mapping of Redis's errors: connection and I/O failures, and Redis answering that it
/// cannot serve yet (loading its data, failing over), are `Unavailable`; the rest `Rejected`.
pub(crate) fn store_error(e: RedisError) -> StoreError {
    let passing = e.is_io_error()
        || matches!(
            e.kind(),
            ErrorKind::BusyLoadingError
                | ErrorKind::TryAgain
                | ErrorKind::ClusterDown
                | ErrorKind::MasterDown
        )
        || e.code() == Some("BUSY");
    if passing {
        StoreError::Unavailable(e.to_string())
    } else {
        StoreError::Rejected(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io;

    #[test]
    fn each_persistence_setting_says_what_a_crash_loses() {
        let cases = [
            (("yes", "always", ""), Durability::Fsynced, "loses nothing"),
            (
                ("yes", "everysec", "3600 1"),
                Durability::EverySecond,
                "one second",
            ),
            (
                ("YES", "no", ""),
                Durability::OsFlush,
                "not yet written to disk",
            ),
            (
                ("no", "everysec", "3600 1 300 100"),
                Durability::Snapshots("3600 1 300 100".into()),
                "since the last RDB snapshot",
            ),
            (
                ("no", "always", ""),
                Durability::MemoryOnly,
                "loses everything",
            ),
            (
                ("no", "everysec", " "),
                Durability::MemoryOnly,
                "memory only",
            ),
            (
                ("yes", "sometimes", ""),
                Durability::Unknown("appendfsync \"sometimes\"".into()),
                "assume everything",
            ),
        ];
        for ((appendonly, appendfsync, save), expected, words) in cases {
            let d = Durability::from_settings(appendonly, appendfsync, save);
            assert_eq!(d, expected, "{appendonly} {appendfsync} {save:?}");
            assert!(d.describe().contains(words), "{}", d.describe());
            assert!(d.describe().starts_with("a kill -9 of Redis loses "));
            assert_eq!(d.can_lose_writes(), d != Durability::Fsynced);
        }
    }

    #[test]
    fn connection_failures_are_unavailable_and_refusals_rejected() {
        let dropped = RedisError::from(io::Error::from(io::ErrorKind::ConnectionReset));
        assert!(matches!(store_error(dropped), StoreError::Unavailable(_)));
        let loading = RedisError::from((ErrorKind::BusyLoadingError, "loading"));
        assert!(matches!(store_error(loading), StoreError::Unavailable(_)));
        let wrong = RedisError::from((ErrorKind::TypeError, "WRONGTYPE"));
        assert!(matches!(store_error(wrong), StoreError::Rejected(_)));
        let oom = RedisError::from((ErrorKind::ResponseError, "OOM", "maxmemory".into()));
        assert!(matches!(store_error(oom), StoreError::Rejected(_)));
    }

    #[test]
    fn keys_live_under_the_prefix() {
        assert_eq!(namespace(DEFAULT_PREFIX, "cache"), "ikigai:cache:");
    }

    #[tokio::test]
    async fn connecting_reads_the_persistence_settings() {
        let engine = RedisEngine::connect("redis://127.0.0.1:6379", "t").await;
        let engine = engine.expect("Redis runs at 127.0.0.1:6379 on this machine");
        assert!(
            !matches!(engine.durability(), Durability::Unknown(_)),
            "{:?}",
            engine.durability()
        );
        assert_eq!(engine.prefix(), "t");
    }

    #[tokio::test]
    async fn a_redis_that_does_not_answer_is_named() {
        let port = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap().port()
        };
        let url = format!("redis://127.0.0.1:{port}");
        let err = RedisEngine::connect(&url, "t").await.err().unwrap();
        assert!(
            matches!(&err, ConnectError::NoAnswer { addr, .. } if *addr == format!("127.0.0.1:{port}")),
            "{err}"
        );
        assert!(err.to_string().contains(&format!("127.0.0.1:{port}")));
        assert!(matches!(
            RedisEngine::connect("nope://", "t").await,
            Err(ConnectError::BadUrl(_))
        ));
    }
}
