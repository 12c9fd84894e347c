//! The setup of the client's tests against the real daemon, as the TypeScript and Python suites
//! do it: one `ikigai-testbed` (a fresh database, the mock LLM provider and the daemon;
//! `$IKIGAI_TESTBED`, else `ikigai-testbed` of the target directory, built by `scripts/test`)
//! for the test binary, clients of agents it deploys with LLM permissions, and the mock scripted
//! over HTTP. Its tests take turns (the mock's script is one queue); the testbed stops the
//! daemon and drops its database when the test binary exits and its stdin closes.

use ikigai_client::{AgentFile, Client};
use serde_json::{json, Value as Json};
use std::io::BufRead;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{Mutex, MutexGuard};

/// The running testbed.
pub struct Testbed {
    _child: Child,
    socket: String,
    admin_token: String,
    mock: String,
}

/// The testbed, and this test's turn at it.
pub async fn testbed() -> (MutexGuard<'static, ()>, &'static Testbed) {
    static BED: OnceLock<Testbed> = OnceLock::new();
    static TURN: Mutex<()> = Mutex::const_new(());
    let turn = TURN.lock().await;
    (turn, BED.get_or_init(Testbed::start))
}

fn binary() -> PathBuf {
    if let Some(path) = std::env::var_os("IKIGAI_TESTBED") {
        return path.into();
    }
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target = std::env::var_os("CARGO_TARGET_DIR").map_or(repo.join("target"), PathBuf::from);
    target.join("debug/ikigai-testbed")
}

impl Testbed {
    fn start() -> Testbed {
        let binary = binary();
        let mut child = Command::new(&binary)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("{}: {e} (run scripts/test, or build it)", binary.display())
            });
        let mut line = String::new();
        let stdout = child.stdout.take().unwrap();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        let bed: Json = serde_json::from_str(&line).expect("the testbed's JSON line");
        Testbed {
            _child: child,
            socket: bed["socket"].as_str().unwrap().into(),
            admin_token: bed["admin_token"].as_str().unwrap().into(),
            mock: bed["mock_url"]
                .as_str()
                .unwrap()
                .trim_start_matches("http://")
                .into(),
        }
    }

    pub async fn admin(&self) -> Client {
        Client::connect_as(&self.socket, "admin", &self.admin_token)
            .await
            .unwrap()
    }

    /// A client of a new agent whose manifest grants `llm` (its program exits at once and is
    /// never restarted).
    pub async fn llm_agent(&self, llm: Json) -> Client {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("memory-{n}");
        let admin = self.admin().await;
        let manifest = json!({"name": name, "version": "1", "command": ["true"],
            "restart": "temporary", "permissions": {"llm": llm}});
        let files = [AgentFile::new("README", b"run by the test itself\n", false)];
        admin
            .agents()
            .deploy(&manifest, Some(&files))
            .await
            .unwrap();
        // Its start issues a token: done before ours.
        admin.agents().stop(&name).await.unwrap();
        let token = admin.agents().token(&name).await.unwrap().token;
        Client::connect_as(&self.socket, &name, &token)
            .await
            .unwrap()
    }

    /// Queues answers of the mock provider (`{"text": ..}`, with `"delay_ms"` to wait first).
    pub async fn script(&self, replies: &[Json]) {
        let body: Vec<Json> = replies
            .iter()
            .map(|r| {
                let mut r = r.clone();
                r["api"] = json!("anthropic");
                r
            })
            .collect();
        let response = self.http("POST", "/mock/replies", &json!(body)).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    }

    /// The body of the last request the mock provider received, as text.
    pub async fn last_sent(&self) -> String {
        let response = self.http("GET", "/mock/received", &json!(null)).await;
        let (_, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        let received: Vec<Json> = serde_json::from_str(body).unwrap();
        received.last().expect("a request")["body"].to_string()
    }

    /// One HTTP/1.1 request to the mock, the whole response as text.
    async fn http(&self, method: &str, path: &str, body: &Json) -> String {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let mut stream = TcpStream::connect(&self.mock).await.unwrap();
        let head = format!(
            "{method} {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\n\
             content-length: {}\r\nconnection: close\r\n\r\n",
            self.mock,
            body.len()
        );
        stream.write_all(head.as_bytes()).await.unwrap();
        stream.write_all(body.as_bytes()).await.unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).await.unwrap();
        response
    }
}
