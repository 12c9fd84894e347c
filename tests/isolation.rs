//! Agents cannot become admin or another agent: run as root, the daemon gives every agent a Unix
//! user of its own, so an agent's code reads no token but its own and writes only its directory.

mod support;

use serde_json::json;
use std::time::Duration;
use support::{wait_until, AgentDir, Daemon};

/// What the probe agent tries; each line it prints says whether it could.
const PROBE: &str = r#"
try() { if sh -c "$2" >/dev/null 2>&1; then echo "$1: allowed"; else echo "$1: denied"; fi; }
try admin_token 'cat ../../admin.token'
try token_files 'ls ../../tokens'
try other_agent_dir 'touch ../first/intruder'
try other_environ 'cat /proc/[0-9]*/environ 2>/dev/null | tr "\0" "\n" | grep -qx IKIGAI_AGENT=first'
try own_dir 'touch ./mine'
echo "uid: $(id -u)"
exec sleep 1000
"#;

#[tokio::test]
async fn an_agent_reads_no_token_but_its_own_and_writes_only_its_own_directory() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: per-agent users need the daemon to run as root");
        return;
    }
    let d = Daemon::start().await;
    d.deploy(&AgentDir::script("first", "exec sleep 1000", json!({})));
    wait_until("first runs", Duration::from_secs(20), || async {
        d.entry("first").await["pid"].is_i64()
    })
    .await;
    d.deploy(&AgentDir::script("probe", PROBE, json!({})));
    let lines = support::wait_for("the probe's report", Duration::from_secs(20), || async {
        let logs = d.events("probe", "log").await;
        let lines: Vec<String> = logs
            .iter()
            .filter_map(|e| e["payload"]["line"].as_str().map(str::to_owned))
            .collect();
        lines
            .iter()
            .any(|l| l.starts_with("uid: "))
            .then_some(lines)
    })
    .await;
    for denied in [
        "admin_token",
        "token_files",
        "other_agent_dir",
        "other_environ",
    ] {
        assert!(
            lines.contains(&format!("{denied}: denied")),
            "{denied}: {lines:?}"
        );
    }
    assert!(lines.contains(&"own_dir: allowed".to_owned()), "{lines:?}");
    let uid: u32 = lines
        .iter()
        .find_map(|l| l.strip_prefix("uid: "))
        .and_then(|u| u.parse().ok())
        .expect("the probe printed its uid");
    assert!((61184..=65519).contains(&uid), "agent uid {uid}");
}
