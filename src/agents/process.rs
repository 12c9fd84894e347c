//! An agent's OS process: started in its service directory, in a process group of its own, with
//! its identity in the environment; named by pid and start time; signalled as a group; watched
//! until it ends (as our child, or adopted after a daemon restart); its output lines forwarded
//! as `log` telemetry events. When a started process ends, what is left of its group is killed.
//!
//! An agent does not die with the daemon: it has its own process group (a signal to the
//! daemon's group misses it) and no parent-death signal. A restarted daemon finds it by pid,
//! start time and working directory (so that no unrelated process is adopted after a reboot)
//! and adopts it; an adopted process is not our child, so its end is seen by polling
//! `/proc/<pid>` every [`ADOPTED_POLL`], its exit status is unknown (counted as abnormal), and
//! its output pipes died with the old daemon (further writes fail with `EPIPE`, or `SIGPIPE`
//! kills a program that does not ignore it).

use super::state::Exit;
use super::store::ProcessId;
use crate::manifest::Manifest;
use ikigai_actors::telemetry::Telemetry;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, BufReader};
use tokio::sync::watch;
use tokio::task::spawn_local;

/// How often an adopted process is looked for.
pub const ADOPTED_POLL: Duration = Duration::from_millis(200);
/// Longest output line forwarded as one event; a longer one continues in the next.
const MAX_LINE: u64 = 8 * 1024;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ended {
    pub exit: Exit,
    pub code: Option<i32>,
    pub signal: Option<i32>,
}

impl Ended {
    /// An end whose status we cannot know.
    pub const UNKNOWN: Ended = Ended {
        exit: Exit::Abnormal,
        code: None,
        signal: None,
    };

    fn of(status: ExitStatus) -> Ended {
        Ended {
            exit: if status.success() {
                Exit::Normal
            } else {
                Exit::Abnormal
            },
            code: status.code(),
            signal: status.signal(),
        }
    }
}

/// A live process and how to learn of its end.
pub struct Running {
    pub id: ProcessId,
    ended: watch::Receiver<Option<Ended>>,
}

/// What a process is started with.
pub struct Launch<'a> {
    pub name: &'a str,
    pub dir: &'a Path,
    pub manifest: &'a Manifest,
    pub token: &'a str,
}

/// Starts the agent's process and the tasks that reap it and forward its output.
pub fn spawn(launch: &Launch<'_>, telemetry: &Telemetry) -> std::io::Result<Running> {
    let mut cmd = command(launch)?;
    if super::isolation::enabled() {
        let uid = super::isolation::user_for(launch.name, launch.dir)?;
        cmd.uid(uid).gid(uid);
    }
    let mut child = cmd.spawn()?;
    let pid = child.id().unwrap_or_default() as i32;
    let id = ProcessId {
        pid,
        started_at: stat(pid).map_or(0, |(_, t)| t),
    };
    if let Some(out) = child.stdout.take() {
        forward(launch.name, "stdout", out, telemetry.clone());
    }
    if let Some(err) = child.stderr.take() {
        forward(launch.name, "stderr", err, telemetry.clone());
    }
    let (tx, ended) = watch::channel(None);
    spawn_local(async move {
        let end = child.wait().await.map_or(Ended::UNKNOWN, Ended::of);
        // What the agent left behind in its group goes with it (as systemd's control-group
        // kill mode). While a member lives the kernel does not reuse the group's id.
        signal_group(pid, libc::SIGKILL);
        let _ = tx.send(Some(end));
    });
    Ok(Running { id, ended })
}

fn command(launch: &Launch<'_>) -> std::io::Result<tokio::process::Command> {
    let Some([program, args @ ..]) = launch.manifest.command.as_deref() else {
        let no_command = "the manifest has no command: the agent connects by itself";
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            no_command,
        ));
    };
    let mut cmd = if program.contains('/') {
        tokio::process::Command::new(launch.dir.join(program))
    } else {
        tokio::process::Command::new(program)
    };
    cmd.args(args)
        .current_dir(launch.dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(false)
        .env_clear()
        .envs(passed_env(launch.dir))
        .envs(&launch.manifest.env)
        .env("IKIGAI_SOCKET", "../../daemon.sock")
        .env("IKIGAI_AGENT", launch.name)
        .env("IKIGAI_TOKEN", launch.token);
    Ok(cmd)
}

/// The daemon's variables an agent inherits: the search path, locale, time zone, terminal and
/// where the CA certificates are, never anything else (the daemon's environment holds the providers' API keys and database
/// URL). An agent under a user of its own gets its service directory as `HOME`.
fn passed_env(dir: &Path) -> Vec<(std::ffi::OsString, std::ffi::OsString)> {
    const PASSED: [&str; 8] = [
        "PATH",
        "LANG",
        "LANGUAGE",
        "TZ",
        "TERM",
        "TMPDIR",
        "SSL_CERT_FILE",
        "SSL_CERT_DIR",
    ];
    let isolated = super::isolation::enabled();
    let mut env: Vec<_> = std::env::vars_os()
        .filter(|(key, _)| {
            let key = key.to_string_lossy();
            PASSED.contains(&key.as_ref())
                || key.starts_with("LC_")
                || (!isolated && ["HOME", "USER", "LOGNAME"].contains(&key.as_ref()))
        })
        .collect();
    if isolated {
        env.push(("HOME".into(), dir.into()));
    }
    env
}

/// The process `id` if it still lives (same pid, same start time) in the service directory
/// `dir`, watched by polling.
pub fn adopt(id: ProcessId, dir: &Path) -> Option<Running> {
    let cwd = std::fs::read_link(format!("/proc/{}/cwd", id.pid)).ok()?;
    if !alive(id) || cwd != dir {
        return None;
    }
    let (tx, ended) = watch::channel(None);
    spawn_local(async move {
        while alive(id) && !tx.is_closed() {
            tokio::time::sleep(ADOPTED_POLL).await;
        }
        let _ = tx.send(Some(Ended::UNKNOWN));
    });
    Some(Running { id, ended })
}

impl Running {
    /// Resolves when the process has ended.
    pub async fn ended(&self) -> Ended {
        let mut ended = self.ended.clone();
        let end = ended.wait_for(Option::is_some).await.map(|end| *end);
        end.ok().flatten().unwrap_or(Ended::UNKNOWN)
    }

    /// SIGTERM to the process group, SIGKILL after `grace`; resolves when the process ended.
    pub async fn terminate(&self, grace: Duration) -> Ended {
        self.signal(libc::SIGTERM);
        if let Ok(end) = tokio::time::timeout(grace, self.ended()).await {
            return end;
        }
        self.signal(libc::SIGKILL);
        self.ended().await
    }

    fn signal(&self, signal: i32) {
        signal_group(self.id.pid, signal);
    }
}

/// Sends `signal` to the process group `pgid` (the agent and its children).
fn signal_group(pgid: i32, signal: i32) {
    if pgid > 0 {
        // SAFETY: kill(2) has no memory effects; a group that is gone yields ESRCH.
        unsafe { libc::kill(-pgid, signal) };
    }
}

/// True when `id` names a live process (not a zombie).
pub fn alive(id: ProcessId) -> bool {
    matches!(stat(id.pid), Some((state, t)) if t == id.started_at && !matches!(state, 'Z' | 'X'))
}

/// The state and the start time in clock ticks after boot (fields 3 and 22 of
/// `/proc/<pid>/stat`).
fn stat(pid: i32) -> Option<(char, u64)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces and parentheses.
    let rest = text.get(text.rfind(')')? + 1..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let state = fields.first()?.chars().next()?;
    Some((state, fields.get(19)?.parse().ok()?))
}

/// Forwards each line of `pipe` as a `log` event of `agent` (dropped while telemetry is full).
fn forward(
    agent: &str,
    stream: &'static str,
    pipe: impl AsyncRead + Unpin + 'static,
    t: Telemetry,
) {
    let agent = agent.to_owned();
    spawn_local(async move {
        let mut reader = BufReader::new(pipe);
        let mut line = Vec::new();
        loop {
            line.clear();
            match (&mut reader)
                .take(MAX_LINE)
                .read_until(b'\n', &mut line)
                .await
            {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let text = String::from_utf8_lossy(line.strip_suffix(b"\n").unwrap_or(&line));
            let payload = serde_json::json!({"stream": stream, "line": text});
            let _ = t.emit(&agent, "log", payload);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_is_alive_under_its_start_time_only() {
        let pid = std::process::id() as i32;
        let (state, started_at) = stat(pid).expect("own stat");
        assert_ne!(state, 'Z');
        assert!(alive(ProcessId { pid, started_at }));
        let other = ProcessId {
            pid,
            started_at: started_at + 1,
        };
        assert!(!alive(other), "a reused pid has another start time");
        assert!(stat(i32::MAX).is_none());
    }
}
