//! A private Redis server for the tests that restart or kill Redis itself: its own port, data
//! directory and persistence settings, so the machine's shared Redis is never disturbed.

use super::server::{free_port, Engine, Private};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

pub type RedisServer = Private<Redis>;

/// `redis-server` with its own persistence arguments.
pub struct Redis {
    args: Vec<String>,
}

impl RedisServer {
    /// Starts `redis-server` with `args` (e.g. `--appendonly yes --appendfsync always`).
    pub async fn start(args: &[&str]) -> RedisServer {
        let args = args.iter().map(|a| a.to_string()).collect();
        let dir = tempfile::tempdir().expect("a data directory");
        Private::launch(Redis { args }, free_port(), dir).await
    }

    pub fn url(&self) -> String {
        url(self.port)
    }
}

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}")
}

impl Engine for Redis {
    const NAME: &'static str = "redis-server";
    const BOOT: Duration = Duration::from_secs(10);

    fn command(&self, dir: &Path, port: u16) -> Command {
        let mut cmd = Command::new("redis-server");
        cmd.args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(dir)
        .args(&self.args)
        .stdout(Stdio::null())
        .stderr(Stdio::null());
        cmd
    }

    async fn answers(&self, port: u16) -> bool {
        let Ok(client) = redis::Client::open(url(port)) else {
            return false;
        };
        let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
            return false;
        };
        let pong: redis::RedisResult<String> = redis::cmd("PING").query_async(&mut conn).await;
        pong.is_ok()
    }
}
