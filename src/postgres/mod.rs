//! The Postgres engine: finding or starting a server, the schema, and the store implementations
//! of each service (`MailboxStore`, `TelemetrySink` ...). Nothing outside this folder writes SQL.

pub mod assets;
pub mod cache;
mod cluster;
pub mod context;
mod engine;
mod feed;
pub mod identity;
mod journal;
pub mod listen;
pub mod llm;
pub mod mailbox;
pub mod maintenance;
pub mod pubsub;
pub mod queue;
pub mod registry;
pub mod rows;
mod schema;
pub mod storage;
pub mod telemetry;
mod unit;

pub use cache::PgCacheStore;
pub use cluster::PrivateCluster;
pub use engine::PgEngine;
pub use journal::PgJournal;
pub use mailbox::PgMailboxStore;
pub use pubsub::PgPubSub;
pub use queue::PgQueueStore;
pub use registry::PgRegistryStore;
pub use schema::SCHEMA_VERSION;
pub use storage::PgDocumentStore;
pub use telemetry::PgTelemetrySink;

use crate::config::{PostgresConfig, ServerMode};
use crate::root::Root;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolBuilder, RecyclingMethod};
use ikigai_actors::store::StoreError;
use std::path::Path;
use thiserror::Error;
use tokio_postgres::NoTls;
use tracing::{info, warn};

/// Why the database could not be opened.
#[derive(Debug, Error)]
pub enum DbError {
    #[error("cannot connect to Postgres at {target}: {source}")]
    Connect {
        target: String,
        #[source]
        source: tokio_postgres::Error,
    },
    #[error("invalid Postgres URL: {0}")]
    Url(String),
    #[error("private Postgres cluster: {0}")]
    Cluster(String),
    #[error("schema: {0}")]
    Schema(String),
    #[error("cannot start the journal thread: {0}")]
    Journal(String),
}

/// An open database: the pool, and the private cluster when the daemon started one.
pub struct Database {
    pub pool: Pool,
    /// How to open a dedicated connection (e.g. for `LISTEN`, which cannot use the pool).
    pub config: tokio_postgres::Config,
    /// Where the daemon's data lives, for logs and `ikigai status`.
    pub target: String,
    cluster: Option<PrivateCluster>,
}

impl Database {
    /// Connects as configured (see `[postgres]` in `ikigai.conf`) and applies `schema.sql`.
    pub async fn open(config: &PostgresConfig, root: &Root) -> Result<Database, DbError> {
        let (pg, target, cluster) = locate(config, root).await?;
        let pool = pool(&pg, config.pool_size)?;
        schema::apply(&pool).await?;
        info!(target = %target, "database ready");
        Ok(Database {
            pool,
            config: pg,
            target,
            cluster,
        })
    }

    /// Stops the private cluster, if the daemon started one.
    pub fn close(self) {
        self.pool.close();
        if let Some(cluster) = self.cluster {
            cluster.stop();
        }
    }
}

/// A pool of up to `size` connections to `pg`. Connections are made, and their I/O driven, on
/// the runtime of the task that first asks for them.
pub fn pool(pg: &tokio_postgres::Config, size: usize) -> Result<Pool, DbError> {
    pool_builder(pg, size)
        .build()
        .map_err(|e| DbError::Url(e.to_string()))
}

/// The builder of [`pool`], for a pool that prepares each new connection (`post_create`).
pub fn pool_builder(pg: &tokio_postgres::Config, size: usize) -> PoolBuilder {
    let manager = Manager::from_config(
        pg.clone(),
        NoTls,
        ManagerConfig {
            recycling_method: RecyclingMethod::Fast,
        },
    );
    Pool::builder(manager).max_size(size)
}

type Located = (tokio_postgres::Config, String, Option<PrivateCluster>);

async fn locate(config: &PostgresConfig, root: &Root) -> Result<Located, DbError> {
    if let Some(url) = &config.url {
        let pg: tokio_postgres::Config = url.parse().map_err(|e| DbError::Url(format!("{e}")))?;
        check(&pg, &redact(url)).await?;
        return Ok((pg, redact(url), None));
    }
    if config.server == ServerMode::Auto {
        if let Some(dir) = local_socket_dir() {
            match ensure_database(socket_config(&dir, &os_user())).await {
                Ok(pg) => return Ok((pg, format!("local server at {}", dir.display()), None)),
                Err(e) => warn!(error = %e, "local Postgres refused; starting a private cluster"),
            }
        }
    }
    let cluster = PrivateCluster::start(&root.postgres())?;
    let pg = ensure_database(socket_config(cluster.socket_dir(), "ikigai")).await?;
    let target = format!("private cluster in {}", root.postgres().display());
    Ok((pg, target, Some(cluster)))
}

async fn check(pg: &tokio_postgres::Config, target: &str) -> Result<(), DbError> {
    let (client, conn) = pg.connect(NoTls).await.map_err(|source| DbError::Connect {
        target: target.into(),
        source,
    })?;
    tokio::spawn(conn);
    drop(client);
    Ok(())
}

/// Connects to database `ikigai` through `pg`, creating it when the server lacks it.
async fn ensure_database(
    mut pg: tokio_postgres::Config,
) -> Result<tokio_postgres::Config, DbError> {
    let target = format!("{:?}", pg.get_hosts());
    pg.dbname("postgres");
    let (client, conn) = pg.connect(NoTls).await.map_err(|source| DbError::Connect {
        target: target.clone(),
        source,
    })?;
    tokio::spawn(conn);
    let exists = client
        .query_opt("SELECT 1 FROM pg_database WHERE datname = 'ikigai'", &[])
        .await
        .map_err(|source| DbError::Connect {
            target: target.clone(),
            source,
        })?;
    if exists.is_none() {
        if let Err(source) = client.batch_execute("CREATE DATABASE ikigai").await {
            // Another daemon may have created it meanwhile.
            if source.code() != Some(&tokio_postgres::error::SqlState::DUPLICATE_DATABASE) {
                return Err(DbError::Connect { target, source });
            }
        }
    }
    pg.dbname("ikigai");
    Ok(pg)
}

fn socket_config(dir: &Path, user: &str) -> tokio_postgres::Config {
    let mut pg = tokio_postgres::Config::new();
    pg.host_path(dir).port(5432).user(user);
    pg
}

/// The directory of the local server's default Unix socket, when one exists.
fn local_socket_dir() -> Option<std::path::PathBuf> {
    ["/var/run/postgresql", "/run/postgresql", "/tmp"]
        .iter()
        .map(std::path::PathBuf::from)
        .find(|d| d.join(".s.PGSQL.5432").exists())
}

fn os_user() -> String {
    std::env::var("USER").unwrap_or_else(|_| {
        if unsafe { libc::geteuid() } == 0 {
            "root".into()
        } else {
            "postgres".into()
        }
    })
}

/// The connection string without its password, fit for logs and replies: the URL form's
/// `user:password@` and any `password=` setting (key=value form, or a URL's query).
pub fn redact(url: &str) -> String {
    let url = match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    };
    redact_password_settings(&url)
}

/// Every `password=value` (the value bare, up to a space or `&`, or single-quoted) as
/// `password=***`.
fn redact_password_settings(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.to_ascii_lowercase().find("password") {
        let (before, from) = rest.split_at(at);
        out.push_str(before);
        let after_key = from["password".len()..].trim_start();
        let Some(value) = after_key.strip_prefix('=') else {
            out.push_str(&from[.."password".len()]);
            rest = &from["password".len()..];
            continue;
        };
        let value = value.trim_start();
        out.push_str("password=***");
        rest = match value.strip_prefix('\'') {
            Some(quoted) => quoted_end(quoted),
            None => value.trim_start_matches(|c: char| !c.is_whitespace() && c != '&'),
        };
    }
    out.push_str(rest);
    out
}

/// What follows a single-quoted libpq value (backslash escapes the next character).
fn quoted_end(quoted: &str) -> &str {
    let mut chars = quoted.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '\\' => {
                chars.next();
            }
            '\'' => return &quoted[i + 1..],
            _ => {}
        }
    }
    ""
}

/// A `SELECT` of the `unnest` rows whose `table` row (same `id`) meets `condition`, locking
/// those rows: each id drives a lateral lookup, and the row's other conditions are wrapped in
/// `(...) IS TRUE`, so the planner can only walk the arrays and reach each row through the
/// primary key. Left free, it trusts statistics taken when the table looked different (in a
/// healthy queue or mailbox nearly every row is finished, so the partial indexes look empty)
/// and scans a whole partial index per group or even per id (seen: 190,000 index entries
/// scanned, and 600 million rows joined, to claim 20,000 tasks). `condition` names the row `t`
/// and the arrays' row `u`; `lock` may add `SKIP LOCKED`.
pub(crate) fn locked_by_id(
    table: &str,
    args: &str,
    columns: &str,
    condition: &str,
    lock: &str,
) -> String {
    format!(
        "SELECT u.* FROM unnest({args}) AS u({columns}) \
         CROSS JOIN LATERAL (SELECT 1 FROM {table} t WHERE t.id = u.id \
                             AND ({condition}) IS TRUE FOR UPDATE {lock}) AS locked"
    )
}

/// Maps a driver or pool error to what actors understand: passing failures are retriable.
pub fn store_error(e: impl Into<PgFailure>) -> StoreError {
    match e.into() {
        PgFailure::Pool(msg) => StoreError::Unavailable(msg),
        PgFailure::Driver(e) => {
            let message = match e.as_db_error() {
                Some(db) => format!("{} ({}): {}", db.severity(), db.code().code(), db.message()),
                None => e.to_string(),
            };
            match e.code().map(|c| c.code()) {
                Some(code) if !is_transient(code) => StoreError::Rejected(message),
                _ => StoreError::Unavailable(message),
            }
        }
    }
}

fn is_transient(code: &str) -> bool {
    code.starts_with("08") // connection exception
        || code.starts_with("53") // insufficient resources
        || code.starts_with("57P") // operator intervention (shutdown)
        || code == "40001" // serialization failure
        || code == "40P01" // deadlock detected
}

/// A failure from the driver or the pool.
pub enum PgFailure {
    Driver(tokio_postgres::Error),
    Pool(String),
}

impl From<tokio_postgres::Error> for PgFailure {
    fn from(e: tokio_postgres::Error) -> Self {
        PgFailure::Driver(e)
    }
}

impl From<deadpool_postgres::PoolError> for PgFailure {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        match e {
            deadpool_postgres::PoolError::Backend(e) => PgFailure::Driver(e),
            other => PgFailure::Pool(other.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_reach_logs() {
        assert_eq!(redact("postgres://u:secret@h/db"), "postgres://u:***@h/db");
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("host=/tmp dbname=x"), "host=/tmp dbname=x");
        assert_eq!(
            redact("host=h password=s3cret user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(
            redact("host=h password = 'a \\' b' user=u"),
            "host=h password=*** user=u"
        );
        assert_eq!(
            redact("postgres://h/db?user=u&password=pw&sslmode=off"),
            "postgres://h/db?user=u&password=***&sslmode=off"
        );
    }
}
