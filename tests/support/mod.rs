//! Shared test setup: a fresh database per test, the real daemon binary on a temporary root, and
//! connected clients. Everything here talks to real processes over real sockets.
#![allow(dead_code)]

use ikigai_client::{Client, ErrorCode};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;
use tokio_postgres::NoTls;

/// The server tests create their databases on (`$IKIGAI_TEST_DATABASE_URL`, default: the local
/// server's Unix socket as the current user).
pub fn server_url() -> String {
    std::env::var("IKIGAI_TEST_DATABASE_URL").unwrap_or_else(|_| {
        let user = std::env::var("USER").unwrap_or_else(|_| "root".into());
        format!("host=/var/run/postgresql user={user} dbname=postgres")
    })
}

/// A database created for one test and dropped after it.
pub struct TestDb {
    pub name: String,
}

impl TestDb {
    pub async fn create() -> TestDb {
        let name = format!("ikigai_t_{}", uuid::Uuid::new_v4().simple());
        admin_sql(&format!("CREATE DATABASE {name}")).await;
        TestDb { name }
    }

    /// A URL (key=value form) that reaches this database.
    pub fn url(&self) -> String {
        format!(
            "{} dbname={}",
            server_url().replace("dbname=postgres", ""),
            self.name
        )
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        let (client, conn) = tokio_postgres::connect(&self.url(), NoTls)
            .await
            .expect("connect to test db");
        tokio::spawn(conn);
        client
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(admin_sql(&sql));
        })
        .join();
    }
}

async fn admin_sql(sql: &str) {
    let (client, conn) = tokio_postgres::connect(&server_url(), NoTls)
        .await
        .expect("connect to the test server");
    tokio::spawn(conn);
    client
        .batch_execute(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

/// A running `ikigai-daemon` on a temporary root.
pub struct Daemon {
    pub db: TestDb,
    pub dir: TempDir,
    child: Option<Child>,
}

impl Daemon {
    /// Starts a daemon on a fresh database with the shipped configuration.
    pub async fn start() -> Daemon {
        Daemon::start_with("").await
    }

    /// Starts a daemon whose `.ikigai/ikigai.conf` is `config`.
    pub async fn start_with(config: &str) -> Daemon {
        let db = TestDb::create().await;
        let dir = tempfile::Builder::new()
            .prefix("ik")
            .tempdir_in("/tmp")
            .unwrap();
        std::fs::create_dir_all(dir.path().join(".ikigai")).unwrap();
        if !config.is_empty() {
            std::fs::write(dir.path().join(".ikigai/ikigai.conf"), config).unwrap();
        }
        let mut daemon = Daemon {
            db,
            dir,
            child: None,
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
        while !self.socket().exists() {
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
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_ikigai-daemon"));
        cmd.arg("--root")
            .arg(self.root())
            .env("IKIGAI_DATABASE_URL", self.db.url())
            .env("IKIGAI_LOG", "info,ikigai=debug")
            .env_remove("IKIGAI_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
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

    /// Runs the `ikigai` CLI against this root.
    pub fn cli(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_ikigai"))
            .arg("--root")
            .arg(self.root())
            .args(args)
            .output()
            .expect("run ikigai")
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
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
