//! `ikigai-testbed`: the shared test setup of the TypeScript and Python suites. It creates a fresh
//! database, starts the mock LLM provider and the real daemon on a temporary root configured to
//! use it, prints one JSON line (`root`, `socket`, `admin_token`, `database_url`, `mock_url`,
//! `pid`), then obeys commands on stdin, one per line, each answered with a JSON line:
//! `kill9` (the daemon dies at once), `start`, `restart` (kill9 then start), `stop` (SIGTERM).
//! At end of input, or on SIGTERM, it stops the daemon and drops the database and the root.
//!
//! Usage: `ikigai-testbed [--daemon PATH] [--config TEXT]`; `--config` is appended to the
//! generated `ikigai.conf`. The daemon defaults to `ikigai-daemon` beside this binary.

use ikigai_mock_llm::testdb::{self, server_url};
use ikigai_mock_llm::MockLlm;
use serde_json::json;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, BufReader};

const ANTHROPIC_KEY: &str = "sk-ant-TESTBED-never-logged";
const OPENAI_KEY: &str = "sk-oai-TESTBED-never-logged";

struct Bed {
    daemon: PathBuf,
    root: tempfile::TempDir,
    database: String,
    child: Option<Child>,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let (daemon, extra) = arguments()?;
    let mock = MockLlm::start().await;
    let database = format!("ikigai_tb_{}", uuid::Uuid::new_v4().simple());
    admin_sql(&format!("CREATE DATABASE {database}")).await?;
    let root = tempfile::Builder::new().prefix("ikt").tempdir_in("/tmp")?;
    std::fs::set_permissions(
        root.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o711),
    )?;
    std::fs::create_dir_all(root.path().join(".ikigai"))?;
    std::fs::write(
        root.path().join(".ikigai/ikigai.conf"),
        config(&mock.url(), &extra),
    )?;
    let mut bed = Bed {
        daemon,
        root,
        database,
        child: None,
    };
    let outcome = serve(&mut bed, &mock).await;
    bed.stop();
    admin_sql(&format!(
        "DROP DATABASE IF EXISTS {} WITH (FORCE)",
        bed.database
    ))
    .await?;
    outcome
}

async fn serve(bed: &mut Bed, mock: &MockLlm) -> anyhow::Result<()> {
    bed.start().await?;
    let ikigai = bed.root.path().join(".ikigai");
    let token = std::fs::read_to_string(ikigai.join("admin.token"))?;
    println!(
        "{}",
        json!({"root": bed.root.path(), "socket": ikigai.join("daemon.sock"),
            "admin_token": token.trim(), "database_url": database_url(&bed.database),
            "mock_url": mock.url(), "pid": bed.pid()})
    );
    let mut lines = BufReader::new(tokio::io::stdin()).lines();
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let line = tokio::select! {
            line = lines.next_line() => line?,
            _ = term.recv() => None,
        };
        let Some(line) = line else { return Ok(()) };
        let answer = match bed.obey(line.trim()).await {
            Ok(()) => json!({"ok": true, "pid": bed.pid()}),
            Err(e) => json!({"ok": false, "error": e.to_string()}),
        };
        println!("{answer}");
    }
}

impl Bed {
    async fn obey(&mut self, command: &str) -> anyhow::Result<()> {
        match command {
            "kill9" => self.kill9(),
            "start" => self.start().await?,
            "restart" => {
                self.kill9();
                self.start().await?;
            }
            "stop" => self.stop(),
            other => anyhow::bail!("unknown command {other:?} (kill9, start, restart, stop)"),
        }
        Ok(())
    }

    fn socket(&self) -> PathBuf {
        self.root.path().join(".ikigai/daemon.sock")
    }

    fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Runs the daemon and waits until its socket accepts connections.
    async fn start(&mut self) -> anyhow::Result<()> {
        anyhow::ensure!(self.child.is_none(), "the daemon is running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.root.path().join("daemon.log"))?;
        let mut child = Command::new(&self.daemon)
            .arg("--root")
            .arg(self.root.path())
            .env("IKIGAI_DATABASE_URL", database_url(&self.database))
            .env("IKIGAI_TESTBED_ANTHROPIC_KEY", ANTHROPIC_KEY)
            .env("IKIGAI_TESTBED_OPENAI_KEY", OPENAI_KEY)
            .env("PATH", path_with(&self.daemon))
            .env_remove("IKIGAI_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()?;
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::UnixStream::connect(self.socket())
            .await
            .is_err()
        {
            if let Some(status) = child.try_wait()? {
                anyhow::bail!(
                    "daemon exited with {status}; see {}/daemon.log",
                    self.root.path().display()
                );
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "daemon did not listen within 20 s"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        self.child = Some(child);
        Ok(())
    }

    fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
            let _ = child.wait();
        }
    }
}

fn arguments() -> anyhow::Result<(PathBuf, String)> {
    let exe = std::env::current_exe()?;
    let mut daemon = exe.with_file_name("ikigai-daemon");
    let mut extra = String::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args
            .next()
            .ok_or_else(|| anyhow::anyhow!("{arg} needs a value"))?;
        match arg.as_str() {
            "--daemon" => daemon = value.into(),
            "--config" => extra = value,
            other => anyhow::bail!("unknown argument {other} (--daemon PATH, --config TEXT)"),
        }
    }
    Ok((daemon, extra))
}

/// Providers on the mock and the model aliases the design document uses.
fn config(url: &str, extra: &str) -> String {
    format!(
        "[llm]\nbackoff_ms = 10\nretries = 1\ntool_timeout_ms = 5000\n\
         [llm.provider.anth]\nkind = anthropic\nbase_url = {url}\napi_key_env = IKIGAI_TESTBED_ANTHROPIC_KEY\n\
         [llm.provider.oai]\nkind = openai\nbase_url = {url}\napi_key_env = IKIGAI_TESTBED_OPENAI_KEY\n\
         [llm.model.sonnet-4.5]\ntargets = anth:claude-sonnet-4-5\ninput_per_mtok = 3\noutput_per_mtok = 15\n\
         [llm.model.sonnet]\ntargets = anth:claude-sonnet-4-5\ninput_per_mtok = 3\noutput_per_mtok = 15\n\
         [llm.model.haiku]\ntargets = anth:claude-haiku-4-5\ninput_per_mtok = 1\noutput_per_mtok = 5\n\
         [llm.model.gpt]\ntargets = oai:gpt-4o\ninput_per_mtok = 2.5\noutput_per_mtok = 10\n\
         [llm.model.failover]\ntargets = anth:claude-a, oai:gpt-b\n{extra}\n"
    )
}

/// `PATH` with the daemon's directory first, where the example agent `ikigai-echo-agent` is.
fn path_with(daemon: &Path) -> std::ffi::OsString {
    let rest = std::env::var_os("PATH").unwrap_or_default();
    let dirs = daemon.parent().map(Path::to_path_buf).into_iter();
    std::env::join_paths(dirs.chain(std::env::split_paths(&rest))).unwrap_or(rest)
}

fn database_url(name: &str) -> String {
    testdb::database_url(&server_url(), name)
}

async fn admin_sql(sql: &str) -> anyhow::Result<()> {
    let (client, conn) = tokio_postgres::connect(&server_url(), tokio_postgres::NoTls).await?;
    tokio::spawn(conn);
    client.batch_execute(sql).await?;
    Ok(())
}
