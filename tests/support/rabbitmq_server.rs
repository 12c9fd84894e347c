//! A private RabbitMQ node for the tests that kill and restart RabbitMQ itself: its own node
//! name, AMQP and distribution ports, data and log directories, and no plugins (the machine's
//! node has the management plugin's port), so the machine's shared RabbitMQ is never
//! disturbed. A node takes a few seconds to boot.

use super::server::{free_port, Engine, Private};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub type RabbitServer = Private<Rabbit>;

/// A `rabbitmq-server` node, with the Erlang distribution port it also needs.
pub struct Rabbit {
    dist_port: u16,
}

impl RabbitServer {
    pub async fn start() -> RabbitServer {
        let dir = tempfile::tempdir().expect("a data directory");
        std::fs::write(dir.path().join("enabled_plugins"), "[].\n").unwrap();
        // rabbitmq-server run as root drops to the `rabbitmq` user, which must own the node's
        // directories.
        let owned = Command::new("chown")
            .args(["-R", "rabbitmq:rabbitmq"])
            .arg(dir.path())
            .status();
        assert!(
            owned.is_ok_and(|s| s.success()),
            "chown the node's directory"
        );
        let node = Rabbit {
            dist_port: free_port(),
        };
        Private::launch(node, free_port(), dir).await
    }

    pub fn url(&self) -> String {
        url(self.port)
    }
}

fn url(port: u16) -> String {
    format!("amqp://guest:guest@127.0.0.1:{port}/%2f")
}

impl Engine for Rabbit {
    const NAME: &'static str = "rabbitmq-server";
    const BOOT: Duration = Duration::from_secs(60);

    fn command(&self, dir: &Path, port: u16) -> Command {
        let dist_port = self.dist_port;
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

    async fn answers(&self, port: u16) -> bool {
        let props = lapin::ConnectionProperties::default();
        match lapin::Connection::connect(&url(port), props).await {
            Ok(conn) => {
                let _ = conn.close(200, "up").await;
                true
            }
            Err(_) => false,
        }
    }

    /// The node's Erlang VM, whose pid the node wrote (`rabbitmq-server` is a script that runs
    /// it through `su`), then the script.
    fn kill9(&self, child: &mut Child, dir: &Path) {
        let pid_file = dir.join("pid");
        if let Ok(pid) = std::fs::read_to_string(&pid_file) {
            let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            let _ = std::fs::remove_file(&pid_file);
        }
        let _ = child.kill();
    }
}
