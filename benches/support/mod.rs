//! Shared by the benchmarks: scratch databases, the real daemon binary, pipelining, and the
//! report of one measured path.
#![allow(dead_code)]

use futures::stream::{FuturesUnordered, StreamExt};
use ikigai_client::Client;
use serde_json::json;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio_postgres::NoTls;

pub fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One path's result.
pub struct Run {
    pub name: &'static str,
    pub messages: usize,
    pub elapsed: Duration,
    pub latencies_us: Vec<u64>,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.messages as f64 / self.elapsed.as_secs_f64()
    }

    pub fn percentile(&mut self, p: f64) -> u64 {
        percentile(&mut self.latencies_us, p)
    }

    /// Prints one line: `unit` counts what moved (msgs, tasks), `latency` names what the
    /// latencies measure (send->receive, push->claim).
    pub fn report(&mut self, unit: &str, latency: &str) {
        let (p50, p99) = (self.percentile(0.50), self.percentile(0.99));
        println!(
            "{:<10} {:>8} {unit} in {:>6.2} s = {:>9.0} {unit}/s   {latency} p50 {:>7} us  p99 {:>7} us",
            self.name,
            self.messages,
            self.elapsed.as_secs_f64(),
            self.rate(),
            p50,
            p99
        );
    }
}

/// Prints the CPU time each named process spent per `unit` (op, task) over `count` of them.
pub fn report_cpu(cpu: &[(&str, Duration)], count: usize, unit: &str) {
    let per = |t: &Duration| t.as_secs_f64() * 1e6 / count.max(1) as f64;
    let line: Vec<String> = cpu
        .iter()
        .map(|(who, t)| format!("{who} {:.2}", per(t)))
        .collect();
    println!("        cpu us/{unit}: {}", line.join(", "));
}

/// Runs `make(0..n)` with at most `window` of them in flight at once, on the calling task.
pub async fn pipelined<F, Fut>(n: usize, window: usize, mut make: F)
where
    F: FnMut(usize) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut in_flight = FuturesUnordered::new();
    for i in 0..n {
        if in_flight.len() >= window {
            in_flight.next().await;
        }
        in_flight.push(make(i));
    }
    while in_flight.next().await.is_some() {}
}

pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64
}

pub use ikigai_mock_llm::testdb::server_url;

pub async fn sql(url: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(url, NoTls)
        .await
        .expect("connect to Postgres");
    tokio::spawn(conn);
    client
}

/// A scratch database, dropped at the end of the run.
pub struct Db {
    pub name: String,
}

impl Db {
    pub async fn create(tag: &str) -> Db {
        let name = format!("ikigai_bench_{tag}_{}", std::process::id());
        let admin = sql(&server_url()).await;
        admin
            .batch_execute(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .await
            .unwrap();
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .await
            .unwrap();
        Db { name }
    }

    /// A scratch database with `schema.sql` applied, for the seed's plain SQL paths.
    pub async fn with_schema(tag: &str) -> Db {
        let db = Db::create(tag).await;
        let client = sql(&db.url()).await;
        client
            .batch_execute(include_str!("../../schema.sql"))
            .await
            .unwrap();
        db
    }

    pub fn url(&self) -> String {
        ikigai_mock_llm::testdb::database_url(&server_url(), &self.name)
    }

    pub async fn drop_now(self) {
        let admin = sql(&server_url()).await;
        let _ = admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .await;
    }
}

pub struct Daemon {
    child: Child,
    root: tempfile::TempDir,
}

impl Daemon {
    /// Starts a daemon with the shipped configuration, or with `BENCH_CONFIG` (the text of an
    /// `ikigai.conf`) when it is set, to measure other settings.
    pub async fn start(db: &Db) -> Daemon {
        let config = std::env::var("BENCH_CONFIG").unwrap_or_default();
        Daemon::start_with(db, &config.replace("\\n", "\n")).await
    }

    /// Starts a daemon whose `.ikigai/ikigai.conf` is `config` (the shipped one when empty).
    pub async fn start_with(db: &Db, config: &str) -> Daemon {
        let root = tempfile::Builder::new()
            .prefix("ikb")
            .tempdir_in("/tmp")
            .unwrap();
        if !config.is_empty() {
            std::fs::create_dir_all(root.path().join(".ikigai")).unwrap();
            std::fs::write(root.path().join(".ikigai/ikigai.conf"), config).unwrap();
        }
        let mut child = Command::new(daemon_binary())
            .arg("--root")
            .arg(root.path())
            .env("IKIGAI_DATABASE_URL", db.url())
            .env(
                "IKIGAI_LOG",
                std::env::var("BENCH_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdout(Stdio::null())
            .spawn()
            .expect("start ikigai-daemon");
        let socket = root.path().join(".ikigai/daemon.sock");
        while tokio::net::UnixStream::connect(&socket).await.is_err() {
            if let Some(status) = child.try_wait().unwrap() {
                panic!("ikigai-daemon exited with {status} before listening (its log is above)");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        Daemon { child, root }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Clients of agents `<prefix>0` to `<prefix>{n - 1}`, one connection each.
    pub async fn clients(&self, prefix: &str, n: usize) -> Vec<Client> {
        let mut clients = Vec::with_capacity(n);
        for i in 0..n {
            clients.push(self.client(&format!("{prefix}{i}")).await);
        }
        clients
    }

    pub async fn client(&self, agent: &str) -> Client {
        let token = self.token(agent).await;
        Client::connect_as(self.socket(), agent, &token)
            .await
            .unwrap()
    }

    pub fn socket(&self) -> std::path::PathBuf {
        self.root.path().join(".ikigai/daemon.sock")
    }

    /// The token of `agent`, issued through the admin op.
    pub async fn token(&self, agent: &str) -> String {
        let token = std::fs::read_to_string(self.root.path().join(".ikigai/admin.token")).unwrap();
        let admin = Client::connect_as(self.socket(), "admin", token.trim())
            .await
            .unwrap();
        let reply: serde_json::Value = admin
            .call("agents.token", &json!({"name": agent}))
            .await
            .unwrap();
        reply["token"].as_str().unwrap().to_owned()
    }
}

/// The daemon the benchmarks start: this build's, or the one `BENCH_DAEMON` names (another
/// build, to compare two in one run).
fn daemon_binary() -> std::ffi::OsString {
    std::env::var_os("BENCH_DAEMON").unwrap_or_else(|| env!("CARGO_BIN_EXE_ikigai-daemon").into())
}

impl Drop for Daemon {
    fn drop(&mut self) {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        let _ = self.child.wait();
    }
}

/// Waits for a baseline's `tasks`, drops its database, and returns its run, begun at `started`.
pub async fn finish(
    name: &'static str,
    messages: usize,
    started: std::time::Instant,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    latencies: &std::sync::Mutex<Vec<u64>>,
    db: Db,
) -> Run {
    for t in tasks {
        t.await.unwrap();
    }
    let elapsed = started.elapsed();
    db.drop_now().await;
    let latencies_us = std::mem::take(&mut *latencies.lock().unwrap());
    Run {
        name,
        messages,
        elapsed,
        latencies_us,
    }
}

/// The value at quantile `p` (0 to 1) of `values`, which it sorts.
pub fn percentile(values: &mut [u64], p: f64) -> u64 {
    values.sort_unstable();
    let i = ((values.len() as f64 - 1.0) * p).round() as usize;
    values.get(i).copied().unwrap_or(0)
}

/// CPU time a process has used (user + system), from `/proc/<pid>/stat`; zero if it is gone.
pub fn cpu_time(pid: u32) -> Duration {
    stat_ticks(pid, &[11, 12])
}

/// The CPU time of every Postgres server process, and of those that ended (their time is the
/// postmaster's children's): connections that open and close during a run count too.
pub fn postgres_cpu() -> Duration {
    let pids = pids_of("postgres");
    pids.iter().map(|&p| stat_ticks(p, &[11, 12, 13, 14])).sum()
}

/// The sum of the `/proc/<pid>/stat` time fields at `fields` (counted after the command name).
fn stat_ticks(pid: u32, fields: &[usize]) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name (which may hold spaces), closed by the last ')'.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let values: Vec<&str> = after.split_whitespace().collect();
    let ticks: u64 = fields
        .iter()
        .filter_map(|i| values.get(*i)?.parse::<u64>().ok())
        .sum();
    Duration::from_micros(ticks * 1_000_000 / clock_ticks())
}

/// The first process whose command name is `comm`.
pub fn pid_of(comm: &str) -> Option<u32> {
    pids_of(comm).into_iter().next()
}

/// Every process whose command name is `comm`.
pub fn pids_of(comm: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| {
            let pid = entry.file_name().to_str()?.parse().ok()?;
            let name = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            (name.trim() == comm).then_some(pid)
        })
        .collect()
}

/// Time the machine's CPUs have spent idle (idle and iowait, all CPUs together), from
/// `/proc/stat`.
pub fn machine_idle() -> Duration {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let ticks: u64 = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .enumerate()
        .filter(|(i, _)| matches!(i, 3 | 4))
        .filter_map(|(_, t)| t.parse::<u64>().ok())
        .sum();
    Duration::from_micros(ticks * 1_000_000 / clock_ticks())
}

fn clock_ticks() -> u64 {
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64
}

/// The CPU time of this process's children that have ended and been waited for.
pub fn children_cpu() -> Duration {
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut usage) };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// This process's CPU time (the benchmark's clients).
pub fn client_cpu() -> (&'static str, Duration) {
    ("client", cpu_time(std::process::id()))
}

/// The CPU time named processes spend between [`Cpu::start`] and [`Cpu::spent`].
pub struct Cpu<F: Fn() -> Vec<(&'static str, Duration)>> {
    read: F,
    before: Vec<Duration>,
}

impl<F: Fn() -> Vec<(&'static str, Duration)>> Cpu<F> {
    pub fn start(read: F) -> Self {
        let before = read().into_iter().map(|(_, t)| t).collect();
        Cpu { read, before }
    }

    pub fn spent(self) -> Vec<(&'static str, Duration)> {
        let after = (self.read)();
        let before = self.before.into_iter();
        after
            .into_iter()
            .zip(before)
            .map(|((who, a), b)| (who, a.saturating_sub(b)))
            .collect()
    }
}

/// The CPU time of several processes together.
pub fn cpu_times(pids: &[u32]) -> Duration {
    pids.iter().map(|p| cpu_time(*p)).sum()
}

/// The server processes serving connections to database `name`.
pub async fn backends(name: &str) -> Vec<u32> {
    let admin = sql(&server_url()).await;
    let rows = admin
        .query(
            "SELECT pid FROM pg_stat_activity WHERE datname = $1",
            &[&name],
        )
        .await
        .unwrap();
    rows.iter().map(|r| r.get::<_, i32>(0) as u32).collect()
}
