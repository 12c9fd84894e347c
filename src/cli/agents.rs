//! `ikigai deploy <dir>` and `ikigai agents list|get|start|stop|restart|undeploy|logs`.

use super::output::Out;
use crate::manifest::Manifest;
use anyhow::{bail, Context, Result};
use ikigai_client::Client;
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

/// Most bytes of files (hex-encoded) one deploy sends: the request must fit in one frame of the
/// default `max_frame_bytes` (16 MiB) with room to spare.
const MAX_DEPLOY_BYTES: usize = 15 << 20;

/// Reads `<dir>/manifest.json` and every file under `dir`, and deploys them with
/// `agents.deploy`; prints the agent and version.
pub async fn deploy(client: &Client, out: Out, dir: &Path) -> Result<()> {
    let path = dir.join("manifest.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let manifest = Manifest::from_json(&text).with_context(|| path.display().to_string())?;
    let mut files = Vec::new();
    let mut bytes = 0;
    collect(dir, dir, &mut files, &mut bytes)?;
    let args = json!({"manifest": manifest, "files": files});
    let reply = super::call(client, "agents.deploy", &args).await?;
    out.print(&reply, |reply| {
        println!(
            "deployed {} {}",
            reply["name"].as_str().unwrap_or_default(),
            reply["version"].as_str().unwrap_or_default()
        )
    });
    Ok(())
}

/// Adds the regular files under `dir` (recursively, relative to `base`) as wire files.
fn collect(base: &Path, dir: &Path, files: &mut Vec<Value>, bytes: &mut usize) -> Result<()> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))?;
    for entry in entries {
        let path = entry?.path();
        let meta = std::fs::metadata(&path).with_context(|| path.display().to_string())?;
        if meta.is_dir() {
            collect(base, &path, files, bytes)?;
            continue;
        }
        let data = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        *bytes += data.len() * 2;
        if *bytes > MAX_DEPLOY_BYTES {
            bail!(
                "{} holds more than {} MiB of files (hex-encoded), more than one deploy request carries; \
                 copy it to <root>/.ikigai/services/<name>/ and deploy it from there with `ikigai deploy` of a directory holding only manifest.json",
                base.display(),
                MAX_DEPLOY_BYTES >> 20
            );
        }
        let relative = path
            .strip_prefix(base)
            .expect("under base")
            .to_string_lossy()
            .into_owned();
        let executable = meta.permissions().mode() & 0o111 != 0;
        files.push(json!({"path": relative, "hex": hex::encode(&data), "executable": executable}));
    }
    Ok(())
}

/// `ikigai agents <op> <name>`: start, stop, restart or undeploy.
pub async fn manage(client: &Client, out: Out, op: &str, name: &str) -> Result<()> {
    let reply = super::call(client, &format!("agents.{op}"), &json!({ "name": name })).await?;
    out.print(&reply, |_| {});
    Ok(())
}

/// Prints one line per agent.
pub async fn list(client: &Client, out: Out) -> Result<()> {
    let reply = super::call(client, "agents.list", &json!({})).await?;
    out.print(&reply, print_list);
    Ok(())
}

fn print_list(reply: &Value) {
    println!(
        "{:<24} {:<12} {:<8} {:>8} {:>8}  LAST_HEARTBEAT",
        "AGENT", "VERSION", "STATUS", "PID", "RESTARTS"
    );
    for a in reply["agents"].as_array().into_iter().flatten() {
        println!(
            "{:<24} {:<12} {:<8} {:>8} {:>8}  {}",
            a["name"].as_str().unwrap_or_default(),
            a["version"].as_str().unwrap_or_default(),
            a["status"].as_str().unwrap_or_default(),
            a["pid"].as_i64().map_or("-".into(), |p| p.to_string()),
            a["restarts"].to_string(),
            a["last_heartbeat"].as_str().unwrap_or("-"),
        );
    }
}

/// Prints an agent's newest `log` events (its output lines), oldest first, then with `follow`
/// new ones until interrupted; with `--json`, each event as a JSON line.
pub async fn logs(client: &Client, out: Out, name: &str, limit: usize, follow: bool) -> Result<()> {
    let print = |event: &Value| match out.json {
        true => println!("{event}"),
        false => print_log_line(event),
    };
    let args = json!({"agent": name, "event_type": "log", "limit": limit});
    let events = super::telemetry::query(client, &args).await?;
    events.iter().rev().for_each(print);
    if follow {
        super::telemetry::tail(client, Some(name.into()), Some("log".into()), print).await?;
    }
    Ok(())
}

/// `<time> <stream>: <line>` of a `log` event.
fn print_log_line(event: &Value) {
    let payload = &event["payload"];
    println!(
        "{} {}: {}",
        event["created_at"].as_str().unwrap_or_default(),
        payload["stream"].as_str().unwrap_or("-"),
        payload["line"].as_str().unwrap_or_default()
    );
}
