//! A private NATS server with JetStream for the tests that restart or kill NATS itself: its own
//! port and store directory, so the machine's shared server is never disturbed.

use super::server::{free_port, Engine, Private};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

pub type NatsServer = Private<Nats>;

/// `nats-server -js`.
pub struct Nats;

impl NatsServer {
    /// Starts `nats-server -js` and waits until JetStream answers.
    pub async fn start() -> NatsServer {
        let dir = tempfile::tempdir().expect("a store directory");
        Private::launch(Nats, free_port(), dir).await
    }

    pub fn url(&self) -> String {
        url(self.port)
    }
}

fn url(port: u16) -> String {
    format!("nats://127.0.0.1:{port}")
}

impl Engine for Nats {
    const NAME: &'static str = "nats-server";
    const BOOT: Duration = Duration::from_secs(10);

    fn command(&self, dir: &Path, port: u16) -> Command {
        let mut cmd = Command::new("nats-server");
        cmd.args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd
    }

    async fn answers(&self, port: u16) -> bool {
        let Ok(client) = async_nats::connect(url(port)).await else {
            return false;
        };
        async_nats::jetstream::new(client)
            .query_account()
            .await
            .is_ok()
    }
}
