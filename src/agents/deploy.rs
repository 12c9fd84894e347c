//! Putting a deployment's files in place without ever leaving half of one: the files are checked,
//! written into a staging directory beside the service directories
//! (`.ikigai/services/.staging-<name>-<uuid>`), and renamed into place only once complete; the
//! previous directory is kept aside until the registry has recorded the new version, and put
//! back if it could not.

use crate::manifest::Manifest;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Component, Path, PathBuf};
use thiserror::Error;

/// One file of a deployment.
#[derive(Debug, Clone)]
pub struct File {
    /// Relative to the service directory.
    pub path: String,
    pub data: Vec<u8>,
    pub executable: bool,
}

/// Why the files could not be put in place.
#[derive(Debug, Error)]
pub enum DeployError {
    #[error("files: {path:?}: {reason}")]
    Path { path: String, reason: &'static str },
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DeployError + '_ {
    move |source| DeployError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Most files one deployment may hold.
pub const MAX_FILES: usize = 10_000;

/// A complete deployment waiting to be installed; removed when dropped uninstalled.
#[derive(Debug)]
pub struct Staged {
    dir: Option<PathBuf>,
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(dir) = self.dir.take() {
            let _ = fs::remove_dir_all(dir);
        }
    }
}

/// Checks every path, then writes `files` and `manifest.json` into a staging directory under
/// `services`.
pub fn stage(services: &Path, manifest: &Manifest, files: &[File]) -> Result<Staged, DeployError> {
    if files.len() > MAX_FILES {
        let reason = "too many files (at most 10000)";
        return Err(DeployError::Path {
            path: String::new(),
            reason,
        });
    }
    let paths = files
        .iter()
        .map(|f| check_path(&f.path))
        .collect::<Result<Vec<_>, _>>()?;
    let dir = services.join(format!(
        ".staging-{}-{}",
        manifest.name,
        uuid::Uuid::new_v4().simple()
    ));
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let staged = Staged {
        dir: Some(dir.clone()),
    };
    for (file, path) in files.iter().zip(paths) {
        let mode = if file.executable { 0o755 } else { 0o644 };
        write(&dir.join(path), &file.data, mode)?;
    }
    write_manifest(&dir, manifest)?;
    Ok(staged)
}

/// Writes `manifest.json` into `dir` (atomically: a temporary file renamed over it).
pub fn write_manifest(dir: &Path, manifest: &Manifest) -> Result<(), DeployError> {
    let text = serde_json::to_string_pretty(manifest).expect("a manifest serializes");
    let tmp = dir.join(format!(".manifest.json.{}", uuid::Uuid::new_v4().simple()));
    write(&tmp, text.as_bytes(), 0o644)?;
    let path = dir.join("manifest.json");
    fs::rename(&tmp, &path).map_err(io(&path))
}

fn write(path: &Path, data: &[u8], mode: u32) -> Result<(), DeployError> {
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(io(path))?;
    file.write_all(data).map_err(io(path))
}

/// A relative path that stays inside the service directory: no root, no `..`, no empty or `.`
/// components, no U+0000.
fn check_path(path: &str) -> Result<PathBuf, DeployError> {
    let bad = |reason| {
        Err(DeployError::Path {
            path: path.to_owned(),
            reason,
        })
    };
    if path.is_empty() || path.contains('\0') || path.len() > 4096 {
        return bad("must be 1 to 4096 bytes without U+0000");
    }
    if path.split('/').any(|c| c.is_empty() || c == ".") {
        return bad("empty or . components are not allowed");
    }
    let p = Path::new(path);
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return bad("must be relative and stay inside the service directory (no .. or /)");
    }
    Ok(p.to_path_buf())
}

/// A service directory replaced by a staged one; the previous one is kept aside until
/// [`Installed::commit`] or put back by [`Installed::rollback`].
#[derive(Debug)]
pub struct Installed {
    target: PathBuf,
    previous: Option<PathBuf>,
}

/// Renames `staged` into `services/<name>`, moving a previous directory aside.
pub fn install(services: &Path, name: &str, mut staged: Staged) -> Result<Installed, DeployError> {
    let target = services.join(name);
    let previous = if target.exists() {
        let aside = services.join(format!(".old-{name}-{}", uuid::Uuid::new_v4().simple()));
        fs::rename(&target, &aside).map_err(io(&target))?;
        Some(aside)
    } else {
        None
    };
    let dir = staged.dir.take().expect("staged once");
    if let Err(e) = fs::rename(&dir, &target) {
        staged.dir = Some(dir);
        if let Some(aside) = &previous {
            let _ = fs::rename(aside, &target);
        }
        return Err(io(&target)(e));
    }
    Ok(Installed { target, previous })
}

impl Installed {
    /// Removes the previous directory.
    pub fn commit(self) {
        if let Some(previous) = &self.previous {
            let _ = fs::remove_dir_all(previous);
        }
    }

    /// Removes the new directory and puts the previous one back.
    pub fn rollback(self) {
        let _ = fs::remove_dir_all(&self.target);
        if let Some(previous) = &self.previous {
            let _ = fs::rename(previous, &self.target);
        }
    }
}

/// At start, finishes what a crash interrupted: a staging directory is removed; a previous
/// directory kept aside is put back if its agent's directory is missing, else removed.
pub fn recover(services: &Path) {
    let Ok(entries) = fs::read_dir(services) else {
        return;
    };
    for entry in entries.flatten() {
        let (path, file_name) = (entry.path(), entry.file_name());
        let file_name = file_name.to_string_lossy();
        if file_name.starts_with(".staging-") {
            let _ = fs::remove_dir_all(&path);
        } else if let Some(rest) = file_name.strip_prefix(".old-") {
            // `.old-<name>-<32 hex digits>`
            let name = rest
                .get(..rest.len().saturating_sub(33))
                .unwrap_or_default();
            let target = services.join(name);
            if name.is_empty() || target.exists() {
                let _ = fs::remove_dir_all(&path);
            } else {
                let _ = fs::rename(&path, &target);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest(version: &str) -> Manifest {
        let json = format!(r#"{{"name":"a","version":"{version}","command":["./run"]}}"#);
        Manifest::from_json(&json).unwrap()
    }

    fn file(path: &str, data: &str) -> File {
        File {
            path: path.into(),
            data: data.into(),
            executable: true,
        }
    }

    #[test]
    fn paths_must_stay_inside_the_service_directory() {
        for ok in ["run", "lib/x.py", "a.b/c"] {
            assert!(check_path(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "a/../../x",
            "a//b",
            "./a",
            "a/.",
            "a\0b",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_bad_path_writes_nothing() {
        let services = tempfile::tempdir().unwrap();
        let files = [file("run", "x"), file("../escape", "y")];
        assert!(stage(services.path(), &manifest("1"), &files).is_err());
        assert_eq!(fs::read_dir(services.path()).unwrap().count(), 0);
    }

    #[test]
    fn install_replaces_the_directory_and_rollback_restores_it() {
        let services = tempfile::tempdir().unwrap();
        let first = stage(services.path(), &manifest("1"), &[file("run", "one")]).unwrap();
        install(services.path(), "a", first).unwrap().commit();
        let run = services.path().join("a/run");
        assert_eq!(fs::read_to_string(&run).unwrap(), "one");
        let second = stage(services.path(), &manifest("2"), &[file("run", "two")]).unwrap();
        let installed = install(services.path(), "a", second).unwrap();
        assert_eq!(fs::read_to_string(&run).unwrap(), "two");
        installed.rollback();
        assert_eq!(fs::read_to_string(&run).unwrap(), "one");
        assert_eq!(
            fs::read_dir(services.path()).unwrap().count(),
            1,
            "nothing left aside"
        );
    }

    #[test]
    fn recovery_removes_staging_and_puts_back_an_interrupted_replacement() {
        let services = tempfile::tempdir().unwrap();
        let first = stage(services.path(), &manifest("1"), &[file("run", "one")]).unwrap();
        install(services.path(), "a", first).unwrap().commit();
        let second = stage(services.path(), &manifest("2"), &[file("run", "two")]).unwrap();
        std::mem::forget(install(services.path(), "a", second).unwrap());
        // A crash between moving the old directory aside and moving the new one in:
        fs::remove_dir_all(services.path().join("a")).unwrap();
        std::mem::forget(stage(services.path(), &manifest("3"), &[file("run", "x")]).unwrap());

        recover(services.path());
        let run = services.path().join("a/run");
        assert_eq!(fs::read_to_string(run).unwrap(), "one");
        assert_eq!(fs::read_dir(services.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_staged_deployment_dropped_uninstalled_is_removed() {
        let services = tempfile::tempdir().unwrap();
        drop(stage(services.path(), &manifest("1"), &[file("run", "x")]).unwrap());
        assert_eq!(fs::read_dir(services.path()).unwrap().count(), 0);
    }
}
