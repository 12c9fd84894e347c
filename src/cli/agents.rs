//! `ikigai deploy <dir>` and `ikigai agents list|get|start|stop|restart|undeploy|logs`.

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
pub async fn deploy(client: &Client, dir: &Path) -> Result<()> {
    let path = dir.join("manifest.json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let manifest = Manifest::from_json(&text).with_context(|| path.display().to_string())?;
    let mut files = Vec::new();
    let mut bytes = 0;
    collect(dir, dir, &mut files, &mut bytes)?;
    let args = json!({"manifest": manifest, "files": files});
    let reply: Value = client.call("agents.deploy", &args).await?;
    println!(
        "deployed {} {}",
        reply["name"].as_str().unwrap_or_default(),
        reply["version"].as_str().unwrap_or_default()
    );
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
pub async fn manage(client: &Client, op: &str, name: &str) -> Result<()> {
    let _: Value = client
        .call(&format!("agents.{op}"), &json!({ "name": name }))
        .await?;
    Ok(())
}

/// Prints one line per agent.
pub async fn list(client: &Client) -> Result<()> {
    let reply: Value = client.call("agents.list", &json!({})).await?;
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
    Ok(())
}

/// Prints an agent's newest `log` events (its output lines), oldest first.
pub async fn logs(client: &Client, name: &str, limit: usize) -> Result<()> {
    let args = json!({"agent": name, "event_type": "log", "limit": limit});
    for event in super::telemetry::query(client, &args)
        .await?
        .into_iter()
        .rev()
    {
        let payload = &event["payload"];
        let line = payload["line"].as_str().unwrap_or_default();
        println!(
            "{} {}: {line}",
            event["created_at"].as_str().unwrap_or_default(),
            payload["stream"].as_str().unwrap_or("-")
        );
    }
    Ok(())
}
