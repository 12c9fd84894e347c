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
try config 'cat ../../ikigai.conf'
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
    // A configuration as operators write it, readable by all, holding the database password.
    let d = Daemon::start_with("[postgres]\npool_size = 4\n# password=hunter2\n").await;
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
        "config",
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

#[tokio::test]
async fn an_agent_inherits_none_of_the_daemons_secrets_only_its_manifest_env_and_identity() {
    // The daemon inherits this process's environment; agents must not.
    std::env::set_var("ANTHROPIC_API_KEY", "sk-ant-daemon-only");
    std::env::set_var("PGPASSWORD", "daemon-only");
    let d = Daemon::start().await;
    let dump = "env | sort; echo end-of-env; exec sleep 1000";
    d.deploy(&AgentDir::script(
        "dumper",
        dump,
        json!({"env": {"MY_SETTING": "from-manifest"}}),
    ));
    let lines = support::wait_for(
        "the agent's environment",
        Duration::from_secs(20),
        || async {
            let logs = d.events("dumper", "log").await;
            let lines: Vec<String> = logs
                .iter()
                .filter_map(|e| e["payload"]["line"].as_str().map(str::to_owned))
                .collect();
            lines.iter().any(|l| l == "end-of-env").then_some(lines)
        },
    )
    .await;
    let names: Vec<&str> = lines
        .iter()
        .filter_map(|l| l.split_once('='))
        .map(|(k, _)| k)
        .collect();
    for secret in [
        "ANTHROPIC_API_KEY",
        "PGPASSWORD",
        "IKIGAI_DATABASE_URL",
        "IKIGAI_LOG",
    ] {
        assert!(
            !names.contains(&secret),
            "{secret} reached the agent: {names:?}"
        );
    }
    for given in ["PATH", "IKIGAI_AGENT", "IKIGAI_TOKEN", "IKIGAI_SOCKET"] {
        assert!(names.contains(&given), "{given} missing: {names:?}");
    }
    assert!(
        lines.contains(&"MY_SETTING=from-manifest".to_owned()),
        "{lines:?}"
    );
}
