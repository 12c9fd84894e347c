//! Shared test setup: a fresh database per test, the real daemon binary on a temporary root, and
//! connected clients. Everything here talks to real processes over real sockets.
#![allow(dead_code)]

pub mod cluster;
pub mod llm;
pub mod nats_server;
pub mod netns;
pub mod rabbitmq_server;
pub mod redis_server;
pub mod server;

use ikigai_client::{Client, ErrorCode};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio_postgres::NoTls;

pub use ikigai_mock_llm::testdb::server_url;

/// A database created for one test and dropped after it.
pub struct TestDb {
    pub name: String,
    /// The server's URL (key=value form, `dbname=postgres`).
    server: String,
    /// Dropped with this handle (false for a handle from [`TestDb::share`]).
    owner: bool,
}

impl TestDb {
    pub async fn create() -> TestDb {
        TestDb::create_on(&server_url()).await
    }

    /// A database created on the server at `server` (a URL in key=value form naming
    /// `dbname=postgres`, as [`server_url`]).
    pub async fn create_on(server: &str) -> TestDb {
        let name = format!("ikigai_t_{}", uuid::Uuid::new_v4().simple());
        admin_sql(server, &format!("CREATE DATABASE {name}")).await;
        TestDb {
            name,
            server: server.to_owned(),
            owner: true,
        }
    }

    /// Another handle on the same database, which leaves the database in place when dropped.
    pub fn share(&self) -> TestDb {
        TestDb {
            name: self.name.clone(),
            server: self.server.clone(),
            owner: false,
        }
    }

    /// A URL (key=value form) that reaches this database.
    pub fn url(&self) -> String {
        ikigai_mock_llm::testdb::database_url(&self.server, &self.name)
    }

    /// A URL (key=value form) that reaches this database over TCP at `addr`, port 5432, as
    /// this server's user.
    pub fn url_at(&self, addr: std::net::Ipv4Addr) -> String {
        let user = self
            .server
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("user="));
        let user = user.map_or(String::new(), |u| format!(" user={u}"));
        format!("host={addr} port=5432{user} dbname={}", self.name)
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url(), NoTls)
            .await
            .expect("connect to test db");
        tokio::spawn(conn);
        client
    }

    /// Listens on `channel` of this database.
    pub async fn listen(&self, channel: &str) -> Notifications {
        let (client, mut conn) = tokio_postgres::connect(&self.url(), NoTls)
            .await
            .expect("connect to test db");
        let (tx, payloads) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some(Ok(message)) = futures::future::poll_fn(|cx| conn.poll_message(cx)).await
            {
                if let tokio_postgres::AsyncMessage::Notification(n) = message {
                    let _ = tx.send(n.payload().to_owned());
                }
            }
        });
        client
            .batch_execute(&format!("LISTEN {channel}"))
            .await
            .unwrap();
        Notifications {
            _client: client,
            payloads,
        }
    }

    /// The single number a query returns (a `count(*)`, mostly).
    pub async fn count(&self, sql: &str) -> i64 {
        let row = self.client().await.query_one(sql, &[]).await;
        row.unwrap_or_else(|e| panic!("{sql}: {e}")).get(0)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if !self.owner {
            return;
        }
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let (server, prefix) = (self.server.clone(), self.name.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(admin_sql(&server, &sql));
            rt.block_on(drop_redis_keys(&prefix));
            if backend("queues") == "rabbitmq" {
                rt.block_on(drop_rabbitmq_queues(&prefix));
            }
            rt.block_on(drop_nats_streams(&prefix));
        })
        .join();
    }
}

/// The payloads of the notifications a [`TestDb::listen`] receives, in order.
pub struct Notifications {
    _client: tokio_postgres::Client,
    payloads: tokio::sync::mpsc::UnboundedReceiver<String>,
}

impl Notifications {
    /// The next notification's payload; panics after 10 s without one.
    pub async fn next(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(10), self.payloads.recv())
            .await
            .expect("a notification within 10 s")
            .expect("the listening connection is open")
    }
}

async fn admin_sql(server: &str, sql: &str) {
    let (client, conn) = tokio_postgres::connect(server, NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(conn);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// The backends the behavioural suites run against, from `IKIGAI_TEST_SERVICES` (e.g.
/// `cache=redis,pubsub=redis`); empty: every service on Postgres. `scripts/test` runs the
/// suites once per engine.
pub fn test_services() -> Vec<(String, String)> {
    let named = std::env::var("IKIGAI_TEST_SERVICES").unwrap_or_default();
    named
        .split(',')
        .filter_map(|pair| pair.split_once('='))
        .map(|(service, backend)| (service.trim().to_owned(), backend.trim().to_owned()))
        .collect()
}

/// The backend `service` runs on in this test run (`postgres` unless `IKIGAI_TEST_SERVICES`
/// names another): tests that also check an engine's own storage check it only there.
pub fn backend(service: &str) -> String {
    let named = test_services().into_iter().find(|(s, _)| s == service);
    named.map_or_else(|| "postgres".to_owned(), |(_, backend)| backend)
}

/// `[services]` pinning `service` to Postgres, for a test of that engine's own storage.
pub fn on_postgres(service: &str) -> String {
    format!("[services]\n{service} = postgres\n")
}

/// The Redis the tests use: `IKIGAI_TEST_REDIS_URL`, else the machine's on loopback.
pub fn redis_url() -> String {
    std::env::var("IKIGAI_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// The NATS server the tests use: `IKIGAI_TEST_NATS_URL`, else the machine's on loopback.
pub fn nats_url() -> String {
    std::env::var("IKIGAI_TEST_NATS_URL").unwrap_or_else(|_| "nats://127.0.0.1:4222".into())
}

/// `config` with the test run's `[services]` and, for Redis and NATS, a `[redis]` and a
/// `[nats]` section whose prefix is the database's name: daemons sharing a database share
/// their Redis keys and NATS streams too, and no two tests see each other's.
fn with_test_services(config: &str, db: &TestDb) -> String {
    let services = test_services();
    if services.is_empty() || config.contains("[services]") {
        return config.to_owned();
    }
    let mut out = format!("{config}\n[services]\n");
    for (service, backend) in &services {
        out.push_str(&format!("{service} = {backend}\n"));
    }
    if !config.contains("[rabbitmq]") {
        let url = rabbitmq_url();
        out.push_str(&format!("[rabbitmq]\nurl = {url}\nprefix = {}\n", db.name));
    }
    if !config.contains("[redis]") {
        out.push_str(&format!(
            "[redis]\nurl = {}\nprefix = {}\n",
            redis_url(),
            db.name
        ));
    }
    if !config.contains("[nats]") {
        out.push_str(&format!(
            "[nats]\nurl = {}\nprefix = {}\n",
            nats_url(),
            db.name
        ));
    }
    out
}

/// Deletes the JetStream streams (and so the buckets) under `prefix`.
async fn drop_nats_streams(prefix: &str) {
    let Ok(client) = async_nats::connect(nats_url()).await else {
        return;
    };
    let js = async_nats::jetstream::new(client);
    for stream in [format!("{prefix}_mailboxes"), format!("KV_{prefix}_mbmeta")] {
        let _ = js.delete_stream(&stream).await;
    }
}

/// Deletes every Redis key under `prefix`.
async fn drop_redis_keys(prefix: &str) {
    let Ok(client) = redis::Client::open(redis_url()) else {
        return;
    };
    let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
        return;
    };
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut conn)
        .await
        .unwrap_or_default();
    if !keys.is_empty() {
        let _: redis::RedisResult<()> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
    }
}

/// The RabbitMQ the tests use: `IKIGAI_TEST_RABBITMQ_URL`, else the machine's on loopback.
pub fn rabbitmq_url() -> String {
    std::env::var("IKIGAI_TEST_RABBITMQ_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Deletes every queue of the machine's RabbitMQ named under `prefix` (AMQP cannot list
/// queues: `rabbitmqctl` does). A test database's drop calls it when this run keeps queues in
/// RabbitMQ.
pub async fn drop_rabbitmq_queues(prefix: &str) {
    let listed = std::process::Command::new("rabbitmqctl")
        .args(["list_queues", "-q", "--no-table-headers", "name"])
        .output();
    let Ok(listed) = listed else { return };
    let names = String::from_utf8_lossy(&listed.stdout).into_owned();
    let ours: Vec<&str> = names
        .lines()
        .map(str::trim)
        .filter(|n| n.starts_with(&format!("{prefix}.")))
        .collect();
    let props = lapin::ConnectionProperties::default();
    let Ok(conn) = lapin::Connection::connect(&rabbitmq_url(), props).await else {
        return;
    };
    if let Ok(channel) = conn.create_channel().await {
        for name in ours {
            let _ = channel.queue_delete(name, Default::default()).await;
        }
    }
    let _ = conn.close(200, "cleaned").await;
}

/// A running `ikigai-daemon` on a temporary root.
pub struct Daemon {
    pub db: TestDb,
    pub dir: TempDir,
    child: Option<Child>,
    /// The network namespace the daemon runs in and its database URL from there, when it runs
    /// on a host of its own ([`netns::Host`]).
    host: Option<(String, String)>,
}

impl Daemon {
    /// Starts a daemon on a fresh database with the shipped configuration.
    pub async fn start() -> Daemon {
        Daemon::start_with("").await
    }

    /// Starts a daemon whose `.ikigai/ikigai.conf` is `config`.
    pub async fn start_with(config: &str) -> Daemon {
        Daemon::start_on(TestDb::create().await, config).await
    }

    /// Starts another daemon, on its own root, on this daemon's database.
    pub async fn beside(&self) -> Daemon {
        Daemon::start_on(self.db.share(), "").await
    }

    /// Starts a daemon on `db` whose `.ikigai/ikigai.conf` is `config`.
    pub async fn start_on(db: TestDb, config: &str) -> Daemon {
        Daemon::start_placed(db, config, None).await
    }

    /// Starts a daemon inside `host`, reaching `db` (and every engine `config` names) across
    /// the host's link.
    pub async fn start_in(host: &netns::Host, db: TestDb, config: &str) -> Daemon {
        let url = db.url_at(host.gateway);
        Daemon::start_placed(db, config, Some((host.netns.clone(), url))).await
    }

    async fn start_placed(db: TestDb, config: &str, host: Option<(String, String)>) -> Daemon {
        let dir = tempfile::Builder::new()
            .prefix("ik")
            .tempdir_in("/tmp")
            .unwrap();
        // Searchable by others: agents run under users of their own and must reach their directory.
        let searchable = std::os::unix::fs::PermissionsExt::from_mode(0o711);
        std::fs::set_permissions(dir.path(), searchable).unwrap();
        std::fs::create_dir_all(dir.path().join(".ikigai")).unwrap();
        let config = with_test_services(config, &db);
        if !config.is_empty() {
            std::fs::write(dir.path().join(".ikigai/ikigai.conf"), config).unwrap();
        }
        let mut daemon = Daemon {
            db,
            dir,
            child: None,
            host,
        };
        daemon.spawn().await;
        daemon
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn socket(&self) -> PathBuf {
        self.root().join(".ikigai/daemon.sock")
    }

    /// Runs the daemon binary and waits until it listens.
    pub async fn spawn(&mut self) {
        let _ = std::fs::remove_file(self.log_path().with_extension("prev"));
        let _ = std::fs::rename(self.log_path(), self.log_path().with_extension("prev"));
        let mut child = self.command().spawn().expect("spawn ikigai-daemon");
        let deadline = Instant::now() + Duration::from_secs(20);
        // A socket left by a killed daemon exists but refuses connections: wait for a live one.
        while tokio::net::UnixStream::connect(self.socket())
            .await
            .is_err()
        {
            if let Some(status) = child.try_wait().unwrap() {
                panic!(
                    "daemon exited with {status} before listening:\n{}",
                    self.log()
                );
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not listen within 20 s:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.child = Some(child);
    }

    /// The daemon command for this root, not yet started.
    pub fn command(&self) -> Command {
        let netns = self.host.as_ref().map(|(netns, _)| netns.as_str());
        let url = self
            .host
            .as_ref()
            .map_or_else(|| self.db.url(), |(_, url)| url.clone());
        let mut cmd = daemon_command_in(self.root(), netns);
        cmd.env("IKIGAI_DATABASE_URL", url)
            .stderr(std::fs::File::create(self.log_path()).unwrap());
        cmd
    }

    fn log_path(&self) -> PathBuf {
        self.root().join("daemon.log")
    }

    /// What the daemon has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("daemon running").id()
    }

    /// CPU time the daemon has used so far (user + system, `/proc/<pid>/stat` fields 14 and
    /// 15, in clock ticks).
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // The fields after the command name, which may hold spaces and ends at the last ')'.
        let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after.split_whitespace().collect();
        let ticks: u64 = [11, 12]
            .iter()
            .map(|i| fields[*i].parse::<u64>().unwrap())
            .sum();
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as u64;
        Duration::from_micros(ticks * 1_000_000 / per_second)
    }

    /// `kill -9`: the daemon dies at once, leaving its socket behind.
    pub fn kill9(&mut self) {
        let mut child = self.child.take().expect("daemon running");
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// SIGTERM, then waits for a clean exit; returns the exit code.
    pub fn terminate(&mut self) -> i32 {
        let mut child = self.child.take().expect("daemon running");
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let status = child.wait().unwrap();
        status.code().unwrap_or(-1)
    }

    /// Restarts after a kill or a shutdown, on the same root and database.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the daemon first");
        self.spawn().await;
    }

    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.root().join(".ikigai/admin.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    pub async fn admin(&self) -> Client {
        Client::connect_as(self.socket(), "admin", &self.admin_token())
            .await
            .expect("admin connects")
    }

    /// Asserts the daemon answers a `ping` as admin.
    pub async fn assert_serving(&self) {
        let reply = self
            .admin()
            .await
            .call_value("ping", &serde_json::json!({}))
            .await;
        reply.expect("the daemon answers ping");
    }

    /// The token of `agent`, issued through the admin op.
    pub async fn token(&self, agent: &str) -> String {
        let reply: serde_json::Value = self
            .admin()
            .await
            .call("agents.token", &serde_json::json!({ "name": agent }))
            .await
            .expect("token issued");
        reply["token"].as_str().unwrap().to_owned()
    }

    /// A client authenticated as `agent`.
    pub async fn agent(&self, agent: &str) -> Client {
        let token = self.token(agent).await;
        Client::connect_as(self.socket(), agent, &token)
            .await
            .expect("agent connects")
    }

    /// Registers `manifest` in `agent_registry`, as a deploy would (status `running`).
    pub async fn register_manifest(&self, manifest: serde_json::Value) {
        let name = manifest["name"].as_str().expect("manifest name").to_owned();
        let version = manifest["version"].as_str().unwrap_or("1").to_owned();
        self.db
            .client()
            .await
            .execute(
                "INSERT INTO agent_registry (name, version, manifest, deployed_at, status) \
                 VALUES ($1, $2, $3, now(), 'running') ON CONFLICT (name) DO UPDATE \
                 SET version = $2, manifest = $3",
                &[&name, &version, &manifest],
            )
            .await
            .expect("register the manifest");
    }

    /// Registers `agent` with `llm` as its `permissions.llm` block.
    pub async fn register_llm(&self, agent: &str, llm: serde_json::Value) {
        let manifest = serde_json::json!({"name": agent, "version": "1",
            "command": ["./run"], "permissions": {"llm": llm}});
        self.register_manifest(manifest).await;
    }

    /// Runs the `ikigai` CLI against this root.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_ikigai"))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .output()
            .expect("run ikigai")
    }

    /// Starts `ikigai <args>` against this root with its stdout and stderr piped, for the
    /// commands that run until interrupted (read them with [`Lines`]).
    pub fn spawn_cli(&self, args: &[&str]) -> std::process::Child {
        Command::new(env!("CARGO_BIN_EXE_ikigai"))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run ikigai")
    }

    /// The standard output of `ikigai <args>`, which must succeed (else its stderr is shown).
    #[track_caller]
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let out = self.cli(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "ikigai {args:?}: {err}");
        String::from_utf8(out.stdout).unwrap()
    }
}

/// The lines a spawned command writes to one of its pipes, read on a thread of their own.
pub struct Lines(tokio::sync::mpsc::UnboundedReceiver<String>);

impl Lines {
    pub fn of(pipe: impl std::io::Read + Send + 'static) -> Lines {
        use std::io::BufRead;
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(pipe).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Lines(rx)
    }

    /// The next line (without its newline), waited for up to 10 s.
    pub async fn next(&mut self) -> String {
        tokio::time::timeout(Duration::from_secs(10), self.0.recv())
            .await
            .expect("a line within 10 s")
            .expect("a line before the pipe closed")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // Agents outlive a killed daemon by design: end this root's, with their groups.
        let services = self.root().join(".ikigai/services");
        for pid in processes_where(|cwd| cwd.starts_with(&services)) {
            unsafe { libc::kill(-pid, libc::SIGKILL) };
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

/// Asserts that `result` failed with the server error `code`.
#[track_caller]
pub fn assert_code<T: std::fmt::Debug>(
    result: Result<T, ikigai_client::ClientError>,
    code: ErrorCode,
) {
    match result {
        Err(e) => assert_eq!(e.code(), Some(code), "expected {code}, got {e}"),
        Ok(v) => panic!("expected {code}, got Ok({v:?})"),
    }
}

/// A raw connection for feeding the daemon arbitrary bytes.
pub struct Raw {
    stream: tokio::net::UnixStream,
    reader: Vec<u8>,
}

impl Raw {
    pub async fn connect(d: &Daemon) -> Raw {
        let stream = tokio::net::UnixStream::connect(d.socket())
            .await
            .expect("connect");
        Raw {
            stream,
            reader: Vec::new(),
        }
    }

    /// Connects and authenticates as admin with a real `hello` frame.
    pub async fn hello(d: &Daemon) -> Raw {
        Raw::hello_as(d, "admin", &d.admin_token()).await
    }

    /// Connects and authenticates as `agent` with a real `hello` frame.
    pub async fn hello_as(d: &Daemon, agent: &str, token: &str) -> Raw {
        let mut raw = Raw::connect(d).await;
        let args = serde_json::json!({"protocol": 1, "agent": agent, "token": token});
        raw.request(1, "hello", &args).await;
        let reply = raw.frame().await.expect("hello reply");
        assert!(reply.get("ok").is_some(), "hello failed: {reply}");
        raw
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await.expect("write");
    }

    pub async fn request(&mut self, id: u64, op: &str, args: &(impl serde::Serialize + ?Sized)) {
        let frame = ikigai_protocol::encode_request(id, op, args).unwrap();
        self.send(&frame).await;
    }

    /// Writes `bytes`, then closes the writing half, as a client that sends its last frames
    /// does; an error (the daemon closed the connection first) is returned, not raised.
    pub async fn send_last(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use tokio::io::AsyncWriteExt;
        self.stream.write_all(bytes).await?;
        self.stream.shutdown().await
    }

    /// Closes the writing half, as a client that stops mid-frame does.
    pub async fn finish_writing(&mut self) {
        use tokio::io::AsyncWriteExt;
        self.stream.shutdown().await.expect("shutdown");
    }

    /// The next frame as JSON, or `None` once the daemon closed the connection.
    pub async fn frame(&mut self) -> Option<serde_json::Value> {
        let body = self.body().await?;
        let value: rmpv::Value = rmpv::decode::read_value(&mut &body[..]).unwrap();
        Some(ikigai_protocol::from_value(value).unwrap())
    }

    /// The next frame's body as it came, or `None` once the daemon closed the connection (or
    /// the connection broke).
    pub async fn body(&mut self) -> Option<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        loop {
            if self.reader.len() >= 4 {
                let len = u32::from_be_bytes(self.reader[..4].try_into().unwrap()) as usize;
                if self.reader.len() >= 4 + len {
                    return Some(self.reader.drain(..4 + len).skip(4).collect());
                }
            }
            let mut buf = [0u8; 4096];
            let read = tokio::time::timeout(Duration::from_secs(10), self.stream.read(&mut buf))
                .await
                .expect("daemon answered within 10 s");
            match read {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.reader.extend_from_slice(&buf[..n]),
            }
        }
    }

    /// The next `n` frames, by id: pipelined requests may be answered in any order.
    pub async fn frames_by_id(
        &mut self,
        n: usize,
    ) -> std::collections::HashMap<u64, serde_json::Value> {
        let mut frames = std::collections::HashMap::new();
        for _ in 0..n {
            let frame = self
                .frame()
                .await
                .expect("a reply, not a closed connection");
            let id = frame["id"].as_u64().expect("a reply with an id");
            assert!(frames.insert(id, frame).is_none(), "one reply per id");
        }
        frames
    }

    /// Asserts the next frame is an error with `code` for request `id`.
    #[track_caller]
    pub fn assert_err(frame: Option<serde_json::Value>, id: u64, code: &str) {
        let frame = frame.expect("an error frame, not a closed connection");
        assert_eq!(frame["id"], serde_json::json!(id), "{frame}");
        assert_eq!(frame["err"]["code"], serde_json::json!(code), "{frame}");
    }
}

/// The daemon command for `root`, without a database URL and with its config lookup untouched.
pub fn daemon_command(root: &Path) -> Command {
    daemon_command_in(root, None)
}

/// [`daemon_command`], inside network namespace `netns` when one is named.
fn daemon_command_in(root: &Path, netns: Option<&str>) -> Command {
    let daemon = env!("CARGO_BIN_EXE_ikigai-daemon");
    let mut cmd = match netns {
        None => Command::new(daemon),
        Some(netns) => {
            let mut ip = Command::new("ip");
            ip.args(["netns", "exec", netns, daemon]);
            ip
        }
    };
    cmd.arg("--root")
        .arg(root)
        .env("IKIGAI_LOG", "info,ikigai=debug")
        .env_remove("IKIGAI_DATABASE_URL")
        .env_remove("IKIGAI_CONFIG")
        .env("PATH", path_with_echo_agent())
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    cmd
}

/// `PATH` with the example agent's directory first: a manifest names it as a bare program.
fn path_with_echo_agent() -> std::ffi::OsString {
    let echo = Path::new(env!("CARGO_BIN_EXE_ikigai-echo-agent"));
    let dirs = echo.parent().into_iter().map(Path::to_path_buf);
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(dirs.chain(std::env::split_paths(&rest))).expect("PATH entries")
}

/// A temporary root directory under /tmp (short enough for Unix socket paths).
pub fn temp_root() -> TempDir {
    tempfile::Builder::new()
        .prefix("ik")
        .tempdir_in("/tmp")
        .unwrap()
}

/// Runs a daemon command that is expected to exit on its own; returns its exit code and stderr.
pub fn run_to_exit(mut cmd: Command) -> (i32, String) {
    let out = cmd
        .stderr(Stdio::piped())
        .output()
        .expect("run ikigai-daemon");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// How many actors of `kind` (`"queues"`, `"mailboxes"`, `"threads"`) the daemon runs now, from
/// `daemon.status`.
pub async fn running(c: &Client, kind: &str) -> u64 {
    let status: serde_json::Value = c
        .call("daemon.status", &serde_json::json!({}))
        .await
        .unwrap();
    status[format!("{kind}_running")].as_u64().unwrap()
}

/// Waits until the daemon runs `n` actors of `kind`, then checks that it still runs `n` 600 ms
/// later (longer than the idle time the test configured): the others stopped, these stay.
pub async fn running_settles_at(c: &Client, kind: &str, n: u64, why: &str) {
    let what = format!("{n} {kind} actors run");
    wait_until(&what, Duration::from_secs(10), || async {
        running(c, kind).await == n
    })
    .await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(running(c, kind).await, n, "{why}");
}

/// Polls `check` every 50 ms until it holds; panics naming `what` after `timeout`.
pub async fn wait_until<F, Fut>(what: &str, timeout: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    wait_for(what, timeout, || {
        let holds = check();
        async move { holds.await.then_some(()) }
    })
    .await
}

/// Polls `check` every 50 ms until it gives a value; panics naming `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An agent's service directory, prepared outside the daemon's root to be deployed.
pub struct AgentDir {
    pub name: String,
    dir: TempDir,
}

impl AgentDir {
    /// A directory holding `manifest.json` (name, version 1, `command`, then `extra`'s fields).
    pub fn new(name: &str, command: &[&str], extra: serde_json::Value) -> AgentDir {
        let dir = temp_root();
        let mut manifest = serde_json::json!({"name": name, "version": "1", "command": command});
        for (k, v) in extra.as_object().into_iter().flatten() {
            manifest[k] = v.clone();
        }
        std::fs::write(dir.path().join("manifest.json"), manifest.to_string()).unwrap();
        AgentDir {
            name: name.to_owned(),
            dir,
        }
    }

    /// A shell agent: `run.sh` holds `script`.
    pub fn script(name: &str, script: &str, extra: serde_json::Value) -> AgentDir {
        let agent = AgentDir::new(name, &["./run.sh"], extra);
        agent.file("run.sh", &format!("#!/bin/sh\n{script}\n"), true);
        agent
    }

    /// The example Rust agent (`ikigai-echo-agent`) answering mail as `version`.
    pub fn echo(name: &str, version: &str, extra: serde_json::Value) -> AgentDir {
        let mut fields = serde_json::json!({
            "version": version,
            "env": {"ECHO_VERSION": version, "ECHO_HEARTBEAT_MS": "200"},
        });
        for (k, v) in extra.as_object().into_iter().flatten() {
            fields[k] = v.clone();
        }
        AgentDir::new(name, &["ikigai-echo-agent"], fields)
    }

    pub fn file(&self, path: &str, contents: &str, executable: bool) {
        use std::os::unix::fs::PermissionsExt;
        let path = self.dir.path().join(path);
        std::fs::write(&path, contents).unwrap();
        let mode = if executable { 0o755 } else { 0o644 };
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Daemon {
    /// `ikigai deploy <dir>`; asserts it succeeded.
    pub fn deploy(&self, agent: &AgentDir) {
        let out = self.cli(&["deploy", agent.path().to_str().unwrap()]);
        assert!(
            out.status.success(),
            "deploy failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The answer to `op` with `args` as admin; panics on an error.
    pub async fn call(&self, op: &str, args: serde_json::Value) -> serde_json::Value {
        let reply = self.admin().await.call(op, &args).await;
        reply.unwrap_or_else(|e| panic!("{op} {args}: {e}"))
    }

    /// The registry entry of `agent` (`agents.get` as admin).
    pub async fn entry(&self, agent: &str) -> serde_json::Value {
        self.call("agents.get", serde_json::json!({ "name": agent }))
            .await
    }

    /// The pid of `agent`'s process once it runs one other than `not`.
    pub async fn agent_pid(&self, agent: &str, not: Option<i32>) -> i32 {
        let what = format!("{agent} runs a new process");
        wait_for(&what, Duration::from_secs(20), || {
            let entry = self.entry(agent);
            async move {
                let entry = entry.await;
                let pid = entry["pid"].as_i64()? as i32;
                (entry["status"] == "running" && Some(pid) != not).then_some(pid)
            }
        })
        .await
    }

    /// The telemetry events of `agent` of type `event_type`, newest first.
    pub async fn events(&self, agent: &str, event_type: &str) -> Vec<serde_json::Value> {
        let args = serde_json::json!({"agent": agent, "event_type": event_type, "limit": 1000});
        let mut reply = self.call("telemetry.query", args).await;
        match reply["events"].take() {
            serde_json::Value::Array(events) => events,
            _ => Vec::new(),
        }
    }

    /// The directory `agent` runs in.
    pub fn service_dir(&self, agent: &str) -> PathBuf {
        self.root().join(".ikigai/services").join(agent)
    }
}

/// True while process `pid` lives (a zombie counts as dead).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit(')').next().map(|r| r.trim_start().to_owned()))
        .is_some_and(|rest| !rest.starts_with('Z') && !rest.starts_with('X'))
}

/// The value of `key` in the environment of process `pid`.
pub fn environ(pid: i32, key: &str) -> Option<String> {
    let env = std::fs::read(format!("/proc/{pid}/environ")).ok()?;
    env.split(|b| *b == 0)
        .filter_map(|kv| std::str::from_utf8(kv).ok())
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")).map(str::to_owned))
}

/// The live processes whose working directory is `dir`.
pub fn processes_in(dir: &Path) -> Vec<i32> {
    let dir = std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf());
    processes_where(|cwd| cwd == dir)
}

/// The live processes whose working directory passes `check`.
fn processes_where(check: impl Fn(&Path) -> bool) -> Vec<i32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| {
            let cwd = std::fs::read_link(format!("/proc/{pid}/cwd"));
            cwd.is_ok_and(|cwd| check(&cwd))
        })
        .filter(|pid| alive(*pid))
        .collect()
}

impl Daemon {
    /// A field of the daemon's `/proc/<pid>/status` given in kB (`VmRSS`, `VmHWM`), in bytes.
    pub fn status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let line = status.lines().find_map(|l| l.strip_prefix(field));
        let kib = line.and_then(|l| l.trim_start_matches(':').split_whitespace().next());
        kib.and_then(|k| k.parse::<u64>().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc/<pid>/status"))
            * 1024
    }

    /// The daemon's resident memory now.
    pub fn rss(&self) -> u64 {
        self.status_bytes("VmRSS")
    }

    /// The daemon's peak resident memory since start or the last [`Daemon::reset_peak_rss`].
    pub fn peak_rss(&self) -> u64 {
        self.status_bytes("VmHWM")
    }

    /// Makes the peak resident memory the current one (`/proc/<pid>/clear_refs`, value 5).
    pub fn reset_peak_rss(&self) {
        std::fs::write(format!("/proc/{}/clear_refs", self.pid()), "5").unwrap();
    }

    /// Asserts that nothing panicked in the daemon and no request was answered `internal`.
    #[track_caller]
    pub fn assert_no_panic_nor_internal(&self) {
        let log = self.log();
        let bad: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("panicked at") || l.contains("code=internal"))
            .collect();
        assert!(
            bad.is_empty(),
            "panics or internal replies:\n{}",
            bad.join("\n")
        );
    }
}

impl Raw {
    /// Connects as the Unix user `uid`, as the daemon sees it (`SO_PEERCRED`). Needs root: the
    /// connect runs on a thread of its own whose effective uid alone is changed.
    pub async fn connect_as_user(d: &Daemon, uid: u32) -> Raw {
        let socket = d.socket();
        let connected = std::thread::spawn(move || {
            // SAFETY: the raw syscall changes the credentials of the calling thread only (the
            // libc wrapper would change every thread's); this thread ends after connecting.
            let changed = unsafe {
                libc::syscall(libc::SYS_setresuid, u32::MAX, uid, u32::MAX) // -1: unchanged
            };
            assert_eq!(changed, 0, "setresuid: {}", std::io::Error::last_os_error());
            std::os::unix::net::UnixStream::connect(socket)
        });
        let stream = connected.join().unwrap().expect("connect");
        stream.set_nonblocking(true).unwrap();
        Raw {
            stream: tokio::net::UnixStream::from_std(stream).unwrap(),
            reader: Vec::new(),
        }
    }

    /// Writes `bytes` one at a time, `every` apart (a slowloris), until all are written or the
    /// daemon closes the connection; how many were written.
    pub async fn drip(&mut self, bytes: &[u8], every: Duration) -> usize {
        use tokio::io::AsyncWriteExt;
        for (written, byte) in bytes.iter().enumerate() {
            if self.stream.write_all(&[*byte]).await.is_err() {
                return written;
            }
            tokio::time::sleep(every).await;
        }
        bytes.len()
    }

    /// Writes as much of `bytes` as the daemon takes, until a write makes no progress for
    /// `stall` (it stopped reading); how many were written.
    pub async fn send_until_stalled(&mut self, bytes: &[u8], stall: Duration) -> usize {
        use tokio::io::AsyncWriteExt;
        let mut written = 0;
        while written < bytes.len() {
            let end = bytes.len().min(written + (64 << 10));
            match tokio::time::timeout(stall, self.stream.write(&bytes[written..end])).await {
                Ok(Ok(n)) if n > 0 => written += n,
                _ => break,
            }
        }
        written
    }
}

/// Connections that never send a byte (an attacker's), held as plain blocking sockets outside
/// any runtime: a connect blocks while the daemon's listen backlog is full.
pub struct Silent(Vec<std::os::unix::net::UnixStream>);

impl Silent {
    pub fn open(d: &Daemon, n: usize) -> Silent {
        raise_open_files_limit();
        let connect = |_| std::os::unix::net::UnixStream::connect(d.socket()).expect("connect");
        let streams: Vec<_> = (0..n).map(connect).collect();
        for s in &streams {
            s.set_nonblocking(true).unwrap();
        }
        Silent(streams)
    }

    /// How many of these connections the daemon has closed.
    pub fn closed(&self) -> usize {
        use std::io::Read;
        let mut buf = [0u8; 64];
        let mut closed = |mut s: &std::os::unix::net::UnixStream| !matches!(s.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock);
        self.0.iter().filter(|s| closed(s)).count()
    }
}

/// Raises this process's soft limit of open files to its hard limit (tests that hold thousands
/// of connections).
pub fn raise_open_files_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed to them.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
        limit.rlim_cur = limit.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
    }
}
