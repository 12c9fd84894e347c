//! The daemon's root directory and what lives in `.ikigai/`: the socket, the lock that makes one
//! daemon own a root, the token files and the private Postgres cluster.

use std::fs::{self, File, OpenOptions};
use std::io::{Read, Seek, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use thiserror::Error;

#[derive(Debug, Error)]
pub enum RootError {
    #[error("another ikigai-daemon (pid {pid}) already owns {root}")]
    Owned { root: String, pid: String },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "socket path {0} is longer than the 107 bytes a Unix socket allows; use a shorter root"
    )]
    SocketPathTooLong(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> RootError + '_ {
    move |source| RootError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Paths under one root.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
}

impl Root {
    /// The root at `dir`, made absolute (resolved when it exists, else against the working
    /// directory): the private cluster and agents run in other working directories.
    pub fn new(dir: impl Into<PathBuf>) -> Root {
        let dir = dir.into();
        let dir = fs::canonicalize(&dir)
            .or_else(|_| std::path::absolute(&dir))
            .unwrap_or(dir);
        Root { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn ikigai(&self) -> PathBuf {
        self.dir.join(".ikigai")
    }

    pub fn socket(&self) -> PathBuf {
        self.ikigai().join("daemon.sock")
    }

    pub fn config(&self) -> PathBuf {
        self.ikigai().join("ikigai.conf")
    }

    pub fn admin_token(&self) -> PathBuf {
        self.ikigai().join("admin.token")
    }

    pub fn tokens(&self) -> PathBuf {
        self.ikigai().join("tokens")
    }

    /// Where deployed agents live, one directory each.
    pub fn services(&self) -> PathBuf {
        self.ikigai().join("services")
    }

    pub fn postgres(&self) -> PathBuf {
        self.ikigai().join("postgres")
    }

    /// This root's daemon identity (`.ikigai/daemon.id`, created on first start): it names the
    /// claims this daemon takes, so that its next life can release them.
    pub fn daemon_id(&self) -> Result<String, RootError> {
        let path = self.ikigai().join("daemon.id");
        if let Ok(id) = fs::read_to_string(&path) {
            if !id.trim().is_empty() {
                return Ok(id.trim().to_owned());
            }
        }
        let id = format!("{}-{}", hostname(), uuid::Uuid::new_v4().simple());
        fs::write(&path, &id).map_err(io(&path))?;
        Ok(id)
    }

    /// Creates `.ikigai/` and takes the root's lock, or says which daemon holds it.
    pub fn lock(&self) -> Result<RootLock, RootError> {
        let dir = self.ikigai();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        let path = dir.join("daemon.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        if file.try_lock().is_err() {
            let mut pid = String::new();
            let _ = file.read_to_string(&mut pid);
            return Err(RootError::Owned {
                root: self.dir.display().to_string(),
                pid: pid.trim().to_owned(),
            });
        }
        file.set_len(0).map_err(io(&path))?;
        file.rewind().map_err(io(&path))?;
        write!(file, "{}", std::process::id()).map_err(io(&path))?;
        Ok(RootLock { _file: file })
    }

    /// Binds `.ikigai/daemon.sock` with mode 0600, replacing a stale socket. Call with the lock
    /// held: a socket left behind then belongs to a dead daemon.
    pub fn bind(&self, _lock: &RootLock) -> Result<UnixListener, RootError> {
        let socket = self.socket();
        if socket.as_os_str().len() > 107 {
            return Err(RootError::SocketPathTooLong(socket.display().to_string()));
        }
        let staging = self
            .ikigai()
            .join(format!("daemon.sock.{}", std::process::id()));
        let _ = fs::remove_file(&staging);
        let listener = UnixListener::bind(&staging).map_err(io(&staging))?;
        fs::set_permissions(&staging, fs::Permissions::from_mode(0o600)).map_err(io(&staging))?;
        fs::rename(&staging, &socket).map_err(io(&socket))?;
        Ok(listener)
    }

    /// Removes the socket (at shutdown).
    pub fn unbind(&self) {
        let _ = fs::remove_file(self.socket());
    }
}

/// This host's name (`/etc/hostname`, else `host`).
pub fn hostname() -> String {
    fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "host".into())
}

/// Held for the daemon's lifetime; the OS releases it if the process dies.
#[derive(Debug)]
pub struct RootLock {
    _file: File,
}

/// Writes `contents` to `path` with mode 0600, creating parents.
pub fn write_secret(path: &Path, contents: &str) -> Result<(), RootError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(io(path))?;
    file.write_all(contents.as_bytes()).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_root_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let held = root.lock().unwrap();
        let err = root.lock().unwrap_err().to_string();
        assert!(err.contains(&std::process::id().to_string()), "{err}");
        drop(held);
        root.lock().unwrap();
    }

    #[test]
    fn bind_replaces_a_stale_socket_and_sets_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::new(dir.path());
        let lock = root.lock().unwrap();
        drop(UnixListener::bind(root.socket()).unwrap());
        let _listener = root.bind(&lock).unwrap();
        let mode = fs::metadata(root.socket()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
