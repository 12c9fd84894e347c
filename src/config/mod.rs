//! `ikigai.conf`: where it is found, how it is parsed, and what each key means.
//!
//! The file is INI (parsed with `rust-ini`). Every section and key is known here; an unknown
//! one, a bad value, an unknown backend or a backend that is not implemented yet is a
//! [`ConfigError`] naming the file, line and key, and the daemon does not start.

mod doc;

pub(crate) use doc::Doc;
pub use ikigai_actors::store::Backend;
use std::path::Path;
use std::time::Duration;
use thiserror::Error;

/// The shipped default, used when no other file is found.
pub const SHIPPED_DEFAULT: &str = include_str!("../../config/ikigai.conf");

/// A configuration problem, located in its file.
#[derive(Debug, Error)]
#[error("{file}:{line}: {key}: {message}")]
pub struct ConfigError {
    pub file: String,
    pub line: usize,
    pub key: String,
    pub message: String,
}

/// The backend of each service (`[services]`; postgres where not named).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServiceBackends {
    pub queues: Backend,
    pub mailboxes: Backend,
    pub cache: Backend,
    pub pubsub: Backend,
    pub storage: Backend,
    pub telemetry: Backend,
}

impl ServiceBackends {
    /// Each service by its `[services]` key.
    pub fn named(&self) -> [(&'static str, Backend); 6] {
        [
            ("queues", self.queues),
            ("mailboxes", self.mailboxes),
            ("cache", self.cache),
            ("pubsub", self.pubsub),
            ("storage", self.storage),
            ("telemetry", self.telemetry),
        ]
    }
}

/// `[redis]`: where the Redis-backed services keep their data.
#[derive(Debug, Clone, PartialEq)]
pub struct RedisSettings {
    pub url: String,
    /// Every key and channel the daemon uses starts with `<prefix>:`.
    pub prefix: String,
}

/// `[rabbitmq]`: where the RabbitMQ-backed queues are kept.
#[derive(Debug, Clone, PartialEq)]
pub struct RabbitSettings {
    /// An AMQP URL, with the virtual host as its path (`%2f` for `/`).
    pub url: String,
    /// Every queue the daemon declares is named `<prefix>.<kind>.`...
    pub prefix: String,
    /// At most this many deliveries (claimed or not) per queue and daemon at a time.
    pub prefetch: u16,
}

/// `[nats]`: the NATS server (with JetStream) of the NATS-backed services.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsSettings {
    pub url: String,
    /// Every subject starts with `<prefix>.`, every stream and bucket with `<prefix>_`.
    pub prefix: String,
}

/// Whether the daemon may use a server it finds, or always runs its own cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ServerMode {
    Auto,
    Private,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DaemonConfig {
    pub max_frame_bytes: usize,
    pub max_connections: usize,
    pub max_in_flight: usize,
    pub shutdown_grace: Duration,
    /// Longest a transaction may stay open before it is rolled back.
    pub tx_timeout: Duration,
    /// How deeply the values of a request's args may nest.
    pub max_depth: usize,
    /// Connections that have not said `hello` yet; the oldest is closed to make room.
    pub max_unauthenticated: usize,
    /// How long after accepting a connection `hello` must have succeeded.
    pub hello_timeout: Duration,
    /// How long a frame may take to arrive once it started.
    pub frame_timeout: Duration,
    /// Bytes of replies and pushes one connection may have waiting to be written.
    pub max_reply_bytes: usize,
    /// Bytes of requests one connection may have being served at once.
    pub max_in_flight_bytes: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PostgresConfig {
    pub url: Option<String>,
    pub server: ServerMode,
    pub pool_size: usize,
    /// How often the maintenance pass runs (`crate::postgres::maintenance`).
    pub maintenance: Duration,
    /// Whether it vacuums the churning tables when autovacuum does not.
    pub vacuum: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct MailboxSettings {
    pub visibility: Duration,
    pub max_receive: usize,
    pub max_wait: Duration,
    pub max_buffered: usize,
    /// How long this daemon's claim to serve a mailbox lasts unless renewed.
    pub lease: Duration,
    /// How long an unused mailbox's actor lives on (see `MailboxConfig::idle`).
    pub idle: Duration,
    /// How long read messages stay in `mailbox` before they are archived; `None`: forever.
    pub retain_read: Option<Duration>,
    /// How long archived messages are kept; `None`: forever.
    pub archive: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueueSettings {
    /// Lease of a claim that names none.
    pub lease: Duration,
    pub max_lease: Duration,
    pub max_claim: usize,
    pub max_wait: Duration,
    /// `max_attempts` of a task that names none.
    pub max_attempts: i32,
    /// Claimable tasks kept in memory per queue.
    pub window: usize,
    /// How often the safety sweep releases leases abandoned by dead daemons.
    pub sweep: Duration,
    /// How long an unused queue's actor lives on (see `QueueConfig::idle`).
    pub idle: Duration,
    /// How long completed tasks stay in `task_queue` before they are archived; `None`: forever.
    pub retain_completed: Option<Duration>,
    /// The same for dead tasks.
    pub retain_dead: Option<Duration>,
    /// How long archived tasks are kept; `None`: forever.
    pub archive: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    pub max_bytes: usize,
    pub sweep_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PubSubSettings {
    pub subscriber_buffer: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct TelemetrySettings {
    /// 0 keeps events forever.
    pub retention_days: u64,
    pub max_buffered: usize,
}

/// The whole configuration, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where it was read from (`<shipped default>` for the built-in file).
    pub source: String,
    pub daemon: DaemonConfig,
    pub postgres: PostgresConfig,
    pub services: ServiceBackends,
    pub redis: RedisSettings,
    pub rabbitmq: RabbitSettings,
    pub nats: NatsSettings,
    pub mailboxes: MailboxSettings,
    pub queues: QueueSettings,
    pub cache: CacheSettings,
    pub pubsub: PubSubSettings,
    pub telemetry: TelemetrySettings,
    pub llm: crate::llm::config::LlmConfig,
    pub fault_injection: bool,
}

use Backend::{Influxdb, Nats, Postgres, Rabbitmq, Redis, Timescaledb};

/// A service, the backends it may name (implemented or planned), and those this build has.
type ServiceRule = (&'static str, &'static [Backend], &'static [Backend]);

const SERVICES: [ServiceRule; 6] = [
    (
        "queues",
        &[Postgres, Redis, Rabbitmq],
        &[Postgres, Redis, Rabbitmq],
    ),
    (
        "mailboxes",
        &[Postgres, Redis, Nats],
        &[Postgres, Redis, Nats],
    ),
    ("cache", &[Postgres, Redis], &[Postgres, Redis]),
    ("pubsub", &[Postgres, Redis, Nats], &[Postgres, Redis, Nats]),
    ("storage", &[Postgres], &[Postgres]),
    ("telemetry", &[Postgres, Timescaledb, Influxdb], &[Postgres]),
];

impl Config {
    /// Finds and loads the configuration: `explicit` (from `--config` or `$IKIGAI_CONFIG`), else
    /// `<root>/.ikigai/ikigai.conf`, else the shipped default. `$IKIGAI_DATABASE_URL` overrides
    /// `[postgres] url`.
    pub fn locate(explicit: Option<&Path>, root_conf: &Path) -> Result<Config, ConfigError> {
        let mut config = match explicit {
            Some(path) => Config::load_file(path)?,
            None if root_conf.exists() => Config::load_file(root_conf)?,
            None => Config::parse(SHIPPED_DEFAULT, "<shipped default>")?,
        };
        if let Ok(url) = std::env::var("IKIGAI_DATABASE_URL") {
            if !url.is_empty() {
                config.postgres.url = Some(url);
            }
        }
        Ok(config)
    }

    pub fn load_file(path: &Path) -> Result<Config, ConfigError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: file.clone(),
            line: 0,
            key: "-".into(),
            message: format!("cannot read: {e}"),
        })?;
        Config::parse(&text, &file)
    }

    /// Parses and validates `text`, reporting errors against `file`.
    pub fn parse(text: &str, file: &str) -> Result<Config, ConfigError> {
        let ini = ini::Ini::load_from_str(text).map_err(|e| ConfigError {
            file: file.into(),
            line: e.line,
            key: "-".into(),
            message: e.msg.to_string(),
        })?;
        let doc = Doc {
            text,
            file,
            ini: &ini,
        };
        doc.check_known()?;
        let services = doc.services()?;
        doc.check_order(
            ("queues", "lease_ms", 30_000),
            ("queues", "max_lease_ms", 3_600_000),
        )?;
        Ok(Config {
            source: file.into(),
            daemon: DaemonConfig {
                max_frame_bytes: doc.number("daemon", "max_frame_bytes", 16 << 20, 64)?,
                max_connections: doc.number("daemon", "max_connections", 1024, 1)?,
                max_in_flight: doc.number("daemon", "max_in_flight", 1024, 1)?,
                shutdown_grace: doc.millis("daemon", "shutdown_grace_ms", 10_000, 0)?,
                tx_timeout: doc.millis("daemon", "tx_timeout_ms", 30_000, 1)?,
                max_depth: doc.max_depth()?,
                max_unauthenticated: doc.number("daemon", "max_unauthenticated", 128, 1)?,
                hello_timeout: doc.millis("daemon", "hello_timeout_ms", 5_000, 1)?,
                frame_timeout: doc.millis("daemon", "frame_timeout_ms", 30_000, 1)?,
                max_reply_bytes: doc.number("daemon", "max_reply_bytes", 64 << 20, 64 << 10)?,
                max_in_flight_bytes: doc.number(
                    "daemon",
                    "max_in_flight_bytes",
                    64 << 20,
                    64 << 10,
                )?,
            },
            postgres: PostgresConfig {
                url: doc
                    .get("postgres", "url")
                    .filter(|u| !u.is_empty())
                    .map(str::to_owned),
                server: doc.server_mode()?,
                pool_size: doc.number("postgres", "pool_size", 8, 2)?,
                maintenance: doc.millis("postgres", "maintenance_ms", 60_000, 100)?,
                vacuum: doc.boolean("postgres", "vacuum", true)?,
            },
            services,
            redis: RedisSettings {
                url: doc
                    .get("redis", "url")
                    .unwrap_or("redis://127.0.0.1:6379")
                    .to_owned(),
                prefix: doc.get("redis", "prefix").unwrap_or("ikigai").to_owned(),
            },
            rabbitmq: RabbitSettings {
                url: doc
                    .get("rabbitmq", "url")
                    .unwrap_or("amqp://guest:guest@127.0.0.1:5672/%2f")
                    .to_owned(),
                prefix: doc.get("rabbitmq", "prefix").unwrap_or("ikigai").to_owned(),
                prefetch: doc.number("rabbitmq", "prefetch", 1000u16, 1)?,
            },
            nats: NatsSettings {
                url: doc
                    .get("nats", "url")
                    .unwrap_or("nats://127.0.0.1:4222")
                    .to_owned(),
                prefix: doc.get("nats", "prefix").unwrap_or("ikigai").to_owned(),
            },
            mailboxes: MailboxSettings {
                visibility: doc.millis("mailboxes", "visibility_ms", 30_000, 1)?,
                max_receive: doc.number("mailboxes", "max_receive", 1000, 1)?,
                max_wait: doc.millis("mailboxes", "max_wait_ms", 300_000, 0)?,
                max_buffered: doc.number("mailboxes", "max_buffered", 10_000, 16)?,
                lease: doc.millis("mailboxes", "lease_ms", 10_000, 200)?,
                idle: doc.millis("mailboxes", "idle_ms", 300_000, 1)?,
                retain_read: doc.keep_for("mailboxes", "retain_read_ms", MINUTE_MS, MS)?,
                archive: doc.keep_for("mailboxes", "archive_days", 30, DAY)?,
            },
            queues: QueueSettings {
                lease: doc.millis("queues", "lease_ms", 30_000, 1)?,
                max_lease: doc.millis("queues", "max_lease_ms", 3_600_000, 1)?,
                max_claim: doc.number("queues", "max_claim", 1000, 1)?,
                max_wait: doc.millis("queues", "max_wait_ms", 300_000, 0)?,
                max_attempts: doc.number("queues", "max_attempts", 5, 1)?,
                window: doc.number("queues", "window", 10_000, 16)?,
                sweep: doc.millis("queues", "sweep_ms", 5_000, 100)?,
                idle: doc.millis("queues", "idle_ms", 300_000, 1)?,
                retain_completed: doc.keep_for("queues", "retain_completed_ms", MINUTE_MS, MS)?,
                retain_dead: doc.keep_for("queues", "retain_dead_ms", 7 * DAY_MS, MS)?,
                archive: doc.keep_for("queues", "archive_days", 30, DAY)?,
            },
            cache: CacheSettings {
                max_bytes: doc.number("cache", "max_bytes", 256 << 20, 1024)?,
                sweep_interval: doc.millis("cache", "sweep_interval_ms", 1000, 10)?,
            },
            pubsub: PubSubSettings {
                subscriber_buffer: doc.number("pubsub", "subscriber_buffer", 1024, 1)?,
            },
            telemetry: TelemetrySettings {
                retention_days: doc.number("telemetry", "retention_days", 30, 0)?,
                max_buffered: doc.number("telemetry", "max_buffered", 100_000, 1)?,
            },
            llm: crate::llm::config::LlmConfig::parse(&doc)?,
            fault_injection: doc.boolean("debug", "fault_injection", false)?,
        })
    }
}

/// A day in milliseconds, the default retention of finished work.
const DAY_MS: u64 = 86_400_000;
const MINUTE_MS: u64 = 60_000;

const MS: Duration = Duration::from_millis(1);
const DAY: Duration = Duration::from_secs(86_400);

/// The largest `[daemon] max_depth`.
const MAX_DEPTH: usize = 100;

/// The sections and keys this build understands.
const KNOWN: &[(&str, &[&str])] = &[
    (
        "daemon",
        &[
            "max_frame_bytes",
            "max_connections",
            "max_in_flight",
            "shutdown_grace_ms",
            "tx_timeout_ms",
            "max_depth",
            "max_unauthenticated",
            "hello_timeout_ms",
            "frame_timeout_ms",
            "max_reply_bytes",
            "max_in_flight_bytes",
        ],
    ),
    (
        "postgres",
        &["url", "server", "pool_size", "maintenance_ms", "vacuum"],
    ),
    ("redis", &["url", "prefix"]),
    ("rabbitmq", &["url", "prefix", "prefetch"]),
    ("nats", &["url", "prefix"]),
    (
        "services",
        &[
            "queues",
            "mailboxes",
            "cache",
            "pubsub",
            "storage",
            "telemetry",
        ],
    ),
    (
        "mailboxes",
        &[
            "visibility_ms",
            "max_receive",
            "max_wait_ms",
            "max_buffered",
            "lease_ms",
            "idle_ms",
            "retain_read_ms",
            "archive_days",
        ],
    ),
    (
        "queues",
        &[
            "lease_ms",
            "max_lease_ms",
            "max_claim",
            "max_wait_ms",
            "max_attempts",
            "window",
            "sweep_ms",
            "idle_ms",
            "retain_completed_ms",
            "retain_dead_ms",
            "archive_days",
        ],
    ),
    ("cache", &["max_bytes", "sweep_interval_ms"]),
    ("pubsub", &["subscriber_buffer"]),
    ("telemetry", &["retention_days", "max_buffered"]),
    ("debug", &["fault_injection"]),
    ("llm", crate::llm::config::LLM_KEYS),
];

impl Doc<'_> {
    fn check_known(&self) -> Result<(), ConfigError> {
        for (section, props) in self.ini.iter() {
            let Some(section) = section else {
                if let Some((key, _)) = props.iter().next() {
                    return Err(self.error("", key, "key outside any [section]".into()));
                }
                continue;
            };
            let keys = KNOWN
                .iter()
                .find(|(s, _)| *s == section)
                .map(|(_, keys)| *keys)
                .or_else(|| crate::llm::config::known_keys(section));
            let Some(keys) = keys else {
                let known: Vec<&str> = KNOWN.iter().map(|(s, _)| *s).collect();
                let message = format!("unknown section (known: {})", known.join(", "));
                return Err(self.error(section, "", message));
            };
            for (key, _) in props.iter() {
                if !keys.contains(&key) {
                    let message = format!("unknown key (known: {})", keys.join(", "));
                    return Err(self.error(section, key, message));
                }
            }
        }
        Ok(())
    }

    /// `[services]`: every value a backend the service may name and this build implements.
    fn services(&self) -> Result<ServiceBackends, ConfigError> {
        let mut chosen = [Postgres; 6];
        for ((service, allowed, implemented), backend) in SERVICES.iter().zip(&mut chosen) {
            let Some(value) = self.get("services", service) else {
                continue;
            };
            let message = match Backend::parse(value).filter(|b| allowed.contains(b)) {
                None => format!("unknown backend {value:?} for {service}"),
                Some(b) if !implemented.contains(&b) => {
                    let names: Vec<&str> = implemented.iter().map(|b| b.name()).collect();
                    format!(
                        "backend {value:?} is not implemented yet for {service} (implemented: {})",
                        names.join(", ")
                    )
                }
                Some(b) => {
                    *backend = b;
                    continue;
                }
            };
            return Err(self.error("services", service, message));
        }
        let [queues, mailboxes, cache, pubsub, storage, telemetry] = chosen;
        Ok(ServiceBackends {
            queues,
            mailboxes,
            cache,
            pubsub,
            storage,
            telemetry,
        })
    }

    /// `[daemon] max_depth`: 64 by default, at most [`MAX_DEPTH`], so that every reader (serde_json
    /// stops at 128 levels) can decode whatever a request stored, wrapped in its own envelope.
    fn max_depth(&self) -> Result<usize, ConfigError> {
        let depth = self.number("daemon", "max_depth", 64, 1)?;
        if depth > MAX_DEPTH {
            let message = format!("must be at most {MAX_DEPTH}, below what readers decode (128)");
            return Err(self.error("daemon", "max_depth", message));
        }
        Ok(depth)
    }

    fn server_mode(&self) -> Result<ServerMode, ConfigError> {
        match self.get("postgres", "server") {
            None | Some("auto") => Ok(ServerMode::Auto),
            Some("private") => Ok(ServerMode::Private),
            Some(other) => Err(self.error(
                "postgres",
                "server",
                format!("{other:?} is not auto or private"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(text: &str) -> String {
        Config::parse(text, "t.conf").unwrap_err().to_string()
    }

    #[test]
    fn the_shipped_default_is_valid() {
        let c = Config::parse(SHIPPED_DEFAULT, "default").unwrap();
        assert_eq!(c.daemon.max_frame_bytes, 16 * 1024 * 1024);
        assert_eq!(c.postgres.url, None);
        assert_eq!(c.mailboxes.visibility, Duration::from_secs(30));
    }

    #[test]
    fn unknown_keys_and_sections_name_file_line_and_key() {
        assert_eq!(
            err("[daemon]\nmax_frame_bytes = 100\nmax_frames = 3\n"),
            "t.conf:3: [daemon] max_frames: unknown key (known: max_frame_bytes, max_connections, max_in_flight, shutdown_grace_ms, tx_timeout_ms, max_depth, max_unauthenticated, hello_timeout_ms, frame_timeout_ms, max_reply_bytes, max_in_flight_bytes)"
        );
        assert!(err("\n[dameon]\n").starts_with("t.conf:2: [dameon]: unknown section"));
    }

    #[test]
    fn unknown_and_unimplemented_backends_are_refused() {
        assert_eq!(
            err("[services]\nmailboxes = kafka\n"),
            "t.conf:2: [services] mailboxes: unknown backend \"kafka\" for mailboxes"
        );
        assert!(err("[services]\nqueues = postgres\nstorage = redis\n")
            .starts_with("t.conf:3: [services] storage: unknown backend \"redis\""));
        assert!(err("[services]\ntelemetry = influxdb\n").starts_with(
            "t.conf:2: [services] telemetry: backend \"influxdb\" is not implemented yet"
        ));
    }

    #[test]
    fn queues_may_live_in_rabbitmq() {
        let text = "[services]\nqueues = rabbitmq\n[rabbitmq]\nprefix = t\nprefetch = 64\n";
        let c = Config::parse(text, "t.conf").unwrap();
        assert_eq!(c.services.queues, Backend::Rabbitmq);
        assert_eq!((c.rabbitmq.prefix.as_str(), c.rabbitmq.prefetch), ("t", 64));
        assert!(c.rabbitmq.url.starts_with("amqp://"));
        assert!(err("[rabbitmq]\nprefetch = 0\n").contains("prefetch"));
        assert!(err("[services]\nmailboxes = rabbitmq\n").contains("unknown backend"));
    }

    #[test]
    fn retentions_default_to_a_minute_a_week_and_a_month_and_zero_keeps_forever() {
        for c in [
            Config::parse(SHIPPED_DEFAULT, "default").unwrap(),
            Config::parse("", "empty").unwrap(),
        ] {
            let (minute, day) = (Duration::from_secs(60), Duration::from_secs(86_400));
            assert_eq!(c.queues.retain_completed, Some(minute));
            assert_eq!(c.queues.retain_dead, Some(7 * day));
            assert_eq!(c.mailboxes.retain_read, Some(minute));
        }
        let c = Config::parse(SHIPPED_DEFAULT, "default").unwrap();
        let day = Duration::from_secs(86_400);
        assert_eq!(c.queues.archive, Some(30 * day));
        assert_eq!(c.mailboxes.archive, Some(30 * day));
        assert!(c.postgres.vacuum);
        let c =
            Config::parse("[queues]\nretain_completed_ms = 0\narchive_days = 0\n", "t").unwrap();
        assert_eq!((c.queues.retain_completed, c.queues.archive), (None, None));
    }

    #[test]
    fn a_bad_retention_or_vacuum_names_its_line() {
        assert_eq!(
            err("[queues]\nretain_completed_ms = soon\n"),
            "t.conf:2: [queues] retain_completed_ms: \"soon\" is not a whole number"
        );
        assert_eq!(
            err("[mailboxes]\narchive_days = 99999\n"),
            "t.conf:2: [mailboxes] archive_days: is over 100 years"
        );
        assert_eq!(
            err("[postgres]\nvacuum = sometimes\n"),
            "t.conf:2: [postgres] vacuum: \"sometimes\" is not true or false"
        );
    }

    #[test]
    fn inline_comments_are_not_part_of_the_value() {
        let text = "[daemon]\nmax_connections = 10   # ten\nmax_in_flight = 20 ; twenty\n\
            [services]\nqueues = postgres          # ACID transactions matter here\n";
        let c = Config::parse(text, "t.conf").unwrap();
        assert_eq!((c.daemon.max_connections, c.daemon.max_in_flight), (10, 20));
        assert!(err("[services]\nstorage = redis   # faster\n").contains("backend \"redis\""));
        let c = Config::parse("[services]\ncache = redis   # shared\n", "t.conf").unwrap();
        assert_eq!((c.services.cache, c.services.queues), (Redis, Postgres));
    }

    #[test]
    fn nats_serves_pubsub_and_mailboxes() {
        let text =
            "[services]\npubsub = nats\nmailboxes = nats\n[nats]\nurl = nats://h:1\nprefix = p\n";
        let c = Config::parse(text, "t.conf").unwrap();
        assert_eq!((c.services.pubsub, c.services.mailboxes), (Nats, Nats));
        assert_eq!(
            (c.nats.url.as_str(), c.nats.prefix.as_str()),
            ("nats://h:1", "p")
        );
        let d = Config::parse("", "t.conf").unwrap().nats;
        assert_eq!(
            (d.url.as_str(), d.prefix.as_str()),
            ("nats://127.0.0.1:4222", "ikigai")
        );
        assert!(err("[services]\nqueues = nats\n").contains("queues"));
        assert!(err("[nats]\nsubject = x\n").contains("unknown key"));
    }

    #[test]
    fn a_default_lease_longer_than_the_longest_is_refused() {
        let e = err("[queues]\nlease_ms = 5000\nmax_lease_ms = 1000\n");
        assert!(
            e.starts_with("t.conf:2: [queues] lease_ms: 5000 is more than"),
            "{e}"
        );
    }

    #[test]
    fn nesting_deeper_than_readers_decode_cannot_be_configured() {
        assert_eq!(Config::parse("", "t").unwrap().daemon.max_depth, 64);
        assert_eq!(
            err("[daemon]\nmax_depth = 101\n"),
            "t.conf:2: [daemon] max_depth: must be at most 100, below what readers decode (128)"
        );
    }

    #[test]
    fn bad_values_are_refused() {
        assert!(
            err("[mailboxes]\nvisibility_ms = soon\n").contains("\"soon\" is not a whole number")
        );
        assert!(err("[postgres]\nserver = remote\n").contains("[postgres] server"));
        assert!(err("[debug]\nfault_injection = yes\n").contains("not true or false"));
    }
}
