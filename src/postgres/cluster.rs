//! A private Postgres cluster under `.ikigai/postgres/`, started from the system's binaries when
//! no server is configured or found. It listens on a Unix socket only, runs as the `postgres`
//! system user when the daemon runs as root (Postgres refuses root), and stops with the daemon.

use super::DbError;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use tracing::{info, warn};

pub struct PrivateCluster {
    bin: PathBuf,
    dir: PathBuf,
    run_as: Option<String>,
}

impl PrivateCluster {
    /// Initialises the cluster on first use and starts it (or adopts one left running).
    pub fn start(dir: &Path) -> Result<PrivateCluster, DbError> {
        let bin = find_binaries().ok_or_else(|| {
            DbError::Cluster(
                "no PostgreSQL server answers and no PostgreSQL binaries (initdb, pg_ctl) were found; \
                 install them (Debian/Ubuntu: apt-get install postgresql) or set IKIGAI_DATABASE_URL"
                    .into(),
            )
        })?;
        let socket = dir.join(".s.PGSQL.5432");
        if socket.as_os_str().len() > 107 {
            return Err(DbError::Cluster(format!(
                "socket path {} is too long for a Unix socket; use a shorter root",
                socket.display()
            )));
        }
        let run_as = (unsafe { libc::geteuid() } == 0).then(|| "postgres".to_owned());
        let cluster = PrivateCluster {
            bin,
            dir: dir.to_owned(),
            run_as,
        };
        cluster.prepare_dir()?;
        if !cluster.data().join("PG_VERSION").exists() {
            cluster.init()?;
        }
        if cluster.pg_ctl(&["status"]).is_ok() {
            info!(dir = %dir.display(), "adopting the private Postgres cluster left running");
        } else {
            cluster.pg_ctl(&["start", "-w", "-t", "60", "-l", &cluster.log()])?;
            info!(dir = %dir.display(), "private Postgres cluster started");
        }
        Ok(cluster)
    }

    pub fn socket_dir(&self) -> &Path {
        &self.dir
    }

    /// Stops the cluster (fast shutdown: sessions end, committed data is kept).
    pub fn stop(self) {
        match self.pg_ctl(&["stop", "-m", "fast", "-w"]) {
            Ok(()) => info!("private Postgres cluster stopped"),
            Err(e) => warn!(error = %e, "stopping the private Postgres cluster failed"),
        }
    }

    /// Restarts the cluster as after a crash: an immediate shutdown cuts every session without
    /// a checkpoint, and the start recovers from the WAL. The chaos test does this mid-load.
    pub fn crash_restart(&self) -> Result<(), DbError> {
        let log = self.log();
        self.pg_ctl(&["restart", "-m", "immediate", "-w", "-t", "60", "-l", &log])
    }

    fn log(&self) -> String {
        self.dir.join("server.log").to_string_lossy().into_owned()
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn prepare_dir(&self) -> Result<(), DbError> {
        fs::create_dir_all(&self.dir)
            .map_err(|e| DbError::Cluster(format!("{}: {e}", self.dir.display())))?;
        if let Some(user) = &self.run_as {
            let status = Command::new("chown")
                .args(["-R", &format!("{user}:"), &self.dir.to_string_lossy()])
                .status()
                .map_err(|e| DbError::Cluster(format!("chown: {e}")))?;
            if !status.success() {
                return Err(DbError::Cluster(format!(
                    "cannot give {} to user {user}",
                    self.dir.display()
                )));
            }
            let reachable = Command::new("runuser")
                .args(["-u", user, "--", "test", "-w"])
                .arg(&self.dir)
                .status()
                .is_ok_and(|s| s.success());
            if !reachable {
                return Err(DbError::Cluster(format!(
                    "the {user} system user cannot reach {}: make its parent directories traversable \
                     (chmod o+x) or choose a root outside a private home directory",
                    self.dir.display()
                )));
            }
        }
        Ok(())
    }

    fn init(&self) -> Result<(), DbError> {
        let data = self.data();
        let data = data.to_string_lossy();
        self.run(
            "initdb",
            &[
                "-D",
                &data,
                "-U",
                "ikigai",
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-instructions",
            ],
        )?;
        let settings = format!(
            "\n# ikigai-daemon: private cluster, Unix socket only\nlisten_addresses = ''\nunix_socket_directories = '{}'\nport = 5432\n",
            self.dir.display().to_string().replace('\'', "''")
        );
        let conf = self.data().join("postgresql.conf");
        let mut text = fs::read_to_string(&conf)
            .map_err(|e| DbError::Cluster(format!("{}: {e}", conf.display())))?;
        text.push_str(&settings);
        fs::write(&conf, text).map_err(|e| DbError::Cluster(format!("{}: {e}", conf.display())))
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<(), DbError> {
        let data = self.data();
        let mut all = vec!["-D", data.to_str().unwrap_or_default()];
        all.extend_from_slice(args);
        self.run("pg_ctl", &all)
    }

    fn run(&self, tool: &str, args: &[&str]) -> Result<(), DbError> {
        let exe = self.bin.join(tool);
        let mut cmd = match &self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd
            .args(args)
            .current_dir(&self.dir)
            .output()
            .map_err(|e| DbError::Cluster(format!("{}: {e}", exe.display())))?;
        if out.status.success() {
            return Ok(());
        }
        Err(DbError::Cluster(format!(
            "{tool} {} failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        )))
    }
}

/// The directory holding `initdb` and `pg_ctl`: on PATH, else the newest Debian-style install.
fn find_binaries() -> Option<PathBuf> {
    let on_path = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .unwrap_or_default();
    let mut versioned: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .collect()
        })
        .unwrap_or_default();
    versioned.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    on_path
        .into_iter()
        .chain(versioned.into_iter().rev())
        .find(|dir| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file())
}
