//! What keeps one agent from another's secrets and from the daemon's: when the daemon runs as
//! root, every agent runs under a Unix user of its own (a uid allocated from a fixed range, as
//! systemd's `DynamicUser` does, with no `/etc/passwd` entry) that owns only its service
//! directory, while `.ikigai/` lets agents reach the socket and their directory but read nothing
//! else. When the daemon is not root, agents run as its user and this is all a log line can say.

use crate::root::Root;
use std::fs;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use tracing::{info, warn};

/// The uids agents run under (systemd's range for dynamic users).
const FIRST_UID: u32 = 61184;
const LAST_UID: u32 = 65519;

/// True when agents get users of their own: the daemon runs as root.
pub fn enabled() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Sets the modes that let agents (other uids) traverse `.ikigai/` to the socket and their own
/// directory without listing it or reading any token; says once what isolation there is.
pub fn prepare(root: &Root) -> io::Result<()> {
    if !enabled() {
        info!(
            "agents run as the daemon's own Unix user: they are kept from tokens only by file \
             modes (0600 files in 0700 directories), which a process of that user can change; \
             run the daemon as root to give every agent a user of its own"
        );
        return Ok(());
    }
    fs::create_dir_all(root.services())?;
    fs::create_dir_all(root.tokens())?;
    set_mode(&root.ikigai(), 0o711)?;
    set_mode(&root.services(), 0o711)?;
    set_mode(&root.tokens(), 0o700)?;
    set_mode(&root.socket(), 0o666)?;
    close_to_others(&root.config())?;
    if let Some(blocked) = untraversable_ancestor(root.dir()) {
        warn!(
            dir = %blocked.display(),
            "agents cannot reach their service directories: this directory is not searchable by \
             other users (chmod o+x it, or choose a root outside it)"
        );
    }
    info!(
        first_uid = FIRST_UID,
        last_uid = LAST_UID,
        "each agent runs under a Unix user of its own"
    );
    Ok(())
}

fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
}

/// Takes other users' access to `.ikigai/ikigai.conf` (it may hold the database password), which
/// agents could otherwise open by name through the searchable `.ikigai/`.
fn close_to_others(path: &Path) -> io::Result<()> {
    let Ok(meta) = fs::metadata(path) else {
        return Ok(());
    };
    let mode = meta.mode() & 0o7777;
    if mode & 0o007 != 0 {
        info!(file = %path.display(), "made the configuration unreadable by other users (agents)");
        set_mode(path, mode & !0o007)?;
    }
    Ok(())
}

/// The first directory from `/` down to `dir` that other users cannot search.
fn untraversable_ancestor(dir: &Path) -> Option<&Path> {
    let mut chain: Vec<&Path> = dir.ancestors().collect();
    chain.reverse();
    chain
        .into_iter()
        .find(|d| fs::metadata(d).is_ok_and(|m| m.mode() & 0o001 == 0))
}

/// The uid `name` runs under, owning its service directory `dir` (recursively) from now on: the
/// uid that already owns `dir` when no other service directory has it, else the first free uid
/// from a place fixed by the name.
pub fn user_for(name: &str, dir: &Path) -> io::Result<u32> {
    let services = dir.parent().unwrap_or(dir);
    let taken = owners_except(services, dir)?;
    let current = fs::metadata(dir)?.uid();
    let uid = if in_range(current) && !taken.contains(&current) {
        current
    } else {
        free_uid(name, &taken).ok_or_else(|| io::Error::other("no free agent uid is left"))?
    };
    chown_tree(dir, uid)?;
    Ok(uid)
}

fn in_range(uid: u32) -> bool {
    (FIRST_UID..=LAST_UID).contains(&uid)
}

/// The uids owning the other entries of `services`.
fn owners_except(services: &Path, dir: &Path) -> io::Result<Vec<u32>> {
    let mut owners = Vec::new();
    for entry in fs::read_dir(services)? {
        let entry = entry?;
        if entry.path() != dir {
            owners.push(entry.metadata()?.uid());
        }
    }
    Ok(owners)
}

fn free_uid(name: &str, taken: &[u32]) -> Option<u32> {
    let slots = LAST_UID - FIRST_UID + 1;
    let start = name.bytes().fold(2166136261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16777619)
    }) % slots;
    (0..slots)
        .map(|i| FIRST_UID + (start + i) % slots)
        .find(|uid| !taken.contains(uid))
}

/// Gives `path` and everything below it to `uid` (its group too), links included, not followed.
fn chown_tree(path: &Path, uid: u32) -> io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(uid))?;
    if fs::symlink_metadata(path)?.is_dir() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uid_is_fixed_by_the_name_and_skips_those_taken() {
        let first = free_uid("reviewer", &[]).unwrap();
        assert!(in_range(first));
        assert_eq!(free_uid("reviewer", &[]), Some(first));
        let next = free_uid("reviewer", &[first]).unwrap();
        assert_ne!(next, first);
        assert!(in_range(next));
    }
}
