//! A private RabbitMQ node for the tests that kill and restart RabbitMQ itself: its own node
//! name, AMQP and distribution ports, data and log directories, and no plugins (the machine's
//! node has the management plugin's port), so the machine's shared RabbitMQ is never
//! disturbed. A node takes a few seconds to boot.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

pub struct RabbitServer {
    pub port: u16,
    dist_port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl RabbitServer {
    pub async fn start() -> RabbitServer {
        let mut server = RabbitServer {
            port: free_port(),
            dist_port: free_port(),
            dir: tempfile::tempdir().expect("a data directory"),
            child: None,
        };
        std::fs::write(server.dir.path().join("enabled_plugins"), "[].\n").unwrap();
        // rabbitmq-server run as root drops to the `rabbitmq` user, which must own the node's
        // directories.
        let owned = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(server.dir.path())
            .status();
        assert!(
            owned.is_ok_and(|s| s.success()),
            "chown the node's directory"
        );
        server.spawn().await;
        server
    }

    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port)
    }

    /// `kill -9` of the node (its Erlang VM, whose pid the node wrote; `rabbitmq-server` is
    /// a script that runs it through `su`): RabbitMQ keeps what it had confirmed.
    pub fn kill9(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid_file = self.dir.path().join("pid");
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            let _ = std::fs::remove_file(&pid_file);
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Starts the node again on the same ports and data directory.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "kill it first");
        self.spawn().await;
    }

    async fn spawn(&mut self) {
        let child = command(self.dir.path(), self.port, self.dist_port)
            .spawn()
            .expect("spawn rabbitmq-server");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.answers().await {
            assert!(Instant::now() < deadline, "rabbitmq-server did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn answers(&self) -> bool {
        let props = lapin::ConnectionProperties::default();
        match lapin::Connection::connect(&self.url(), props).await {
            Ok(conn) => {
                let _ = conn.close(200, "up").await;
                true
            }
            Err(_) => false,
        }
    }
}

impl Drop for RabbitServer {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

fn command(dir: &Path, port: u16, dist_port: u16) -> Command {
    let mut cmd = Command::new("rabbitmq-server");
    let path = |name: &str| dir.join(name).display().to_string();
    cmd.env("RABBITMQ_NODENAME", format!("ikigai-test-{port}@localhost"))
        .env("RABBITMQ_NODE_IP_ADDRESS", "127.0.0.1")
        .env("RABBITMQ_NODE_PORT", port.to_string())
        .env("RABBITMQ_DIST_PORT", dist_port.to_string())
        .env("RABBITMQ_MNESIA_BASE", path("mnesia"))
        .env("RABBITMQ_LOG_BASE", path("log"))
        .env("RABBITMQ_ENABLED_PLUGINS_FILE", path("enabled_plugins"))
        .env("RABBITMQ_PID_FILE", path("pid"))
        .env("RABBITMQ_CONFIG_FILE", path("none"))
        .env(
            "RABBITMQ_ADVANCED_CONFIG_FILE",
            path("none-advanced.config"),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}
