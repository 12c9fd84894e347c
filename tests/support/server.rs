//! What the private engine servers share (`redis_server`, `nats_server`, `rabbitmq_server`):
//! a port of its own, a start that waits until the server answers, `kill -9` and a restart on
//! the same port and data directory, so that a test may kill an engine without disturbing the
//! machine's shared one.

use std::future::Future;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// One engine's server program.
pub trait Engine {
    /// The program, for messages.
    const NAME: &'static str;
    /// How long it may take to answer once started.
    const BOOT: Duration;

    /// The server listening on `port`, keeping its data in `dir`.
    fn command(&self, dir: &Path, port: u16) -> Command;

    /// Whether the server on `port` answers.
    fn answers(&self, port: u16) -> impl Future<Output = bool>;

    /// `kill -9` of the server `child` started (by default, the child itself).
    fn kill9(&self, child: &mut Child, _dir: &Path) {
        let _ = child.kill();
    }
}

/// A running private server of engine `E`.
pub struct Private<E: Engine> {
    pub port: u16,
    pub dir: TempDir,
    pub engine: E,
    child: Option<Child>,
}

impl<E: Engine> Private<E> {
    /// Starts `engine` on a free port with its data in `dir`, and waits until it answers.
    pub async fn launch(engine: E, port: u16, dir: TempDir) -> Self {
        let mut server = Private {
            port,
            dir,
            engine,
            child: None,
        };
        server.spawn().await;
        server
    }

    /// `kill -9`: the engine keeps only what it had made durable.
    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            self.engine.kill9(&mut child, self.dir.path());
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and data directory.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let child = self.engine.command(self.dir.path(), self.port).spawn();
        self.child = Some(child.unwrap_or_else(|e| panic!("spawn {}: {e}", E::NAME)));
        let deadline = Instant::now() + E::BOOT;
        while !self.engine.answers(self.port).await {
            assert!(Instant::now() < deadline, "{} did not start", E::NAME);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl<E: Engine> Drop for Private<E> {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A TCP port nothing listens on now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
