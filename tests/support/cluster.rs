//! A private Postgres cluster for one test, in a temporary directory, which the test may crash
//! and restart: the shared server is never touched. It is the daemon's own private cluster
//! (`ikigai::postgres::PrivateCluster`: the system's binaries, a Unix socket only, run as the
//! `postgres` user when the tests run as root), stopped when the handle is dropped.

use ikigai::postgres::PrivateCluster;
use tempfile::TempDir;

pub struct PrivatePostgres {
    cluster: Option<PrivateCluster>,
    dir: TempDir,
}

impl PrivatePostgres {
    /// Initialises and starts a cluster (a few seconds: `initdb` runs first).
    pub fn start() -> PrivatePostgres {
        let dir = super::temp_root();
        let cluster = PrivateCluster::start(dir.path())
            .unwrap_or_else(|e| panic!("private Postgres cluster: {e}"));
        PrivatePostgres {
            cluster: Some(cluster),
            dir,
        }
    }

    /// The URL of the cluster's `postgres` database, for [`super::TestDb::create_on`].
    pub fn url(&self) -> String {
        format!(
            "host={} user=ikigai dbname=postgres",
            self.dir.path().display()
        )
    }

    /// `pg_ctl restart -m immediate`: every session is cut, as by a crash, and the cluster
    /// recovers from its WAL; returns once it accepts connections again.
    pub fn crash_restart(&self) {
        let cluster = self.cluster.as_ref().expect("cluster running");
        cluster
            .crash_restart()
            .unwrap_or_else(|e| panic!("restarting the private cluster: {e}"));
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        if let Some(cluster) = self.cluster.take() {
            cluster.stop();
        }
    }
}
