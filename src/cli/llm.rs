//! `ikigai llm usage [--since 24h]`: tokens and cost per agent and model, through `llm.usage`.

use super::output::Out;
use anyhow::{bail, Result};
use ikigai_client::Client;
use serde_json::{json, Value};

/// Prints one line per agent and model.
pub async fn usage(client: &Client, out: Out, since: &str) -> Result<()> {
    let args = json!({ "since_ms": parse_duration(since)? });
    out.print(&super::call(client, "llm.usage", &args).await?, print_usage);
    Ok(())
}

fn print_usage(reply: &Value) {
    println!(
        "{:<24} {:<16} {:>7} {:>12} {:>12} {:>12} {:>12} {:>6}",
        "AGENT", "MODEL", "CALLS", "INPUT", "OUTPUT", "TOKENS", "COST_USD", "ERRORS"
    );
    for row in reply["usage"].as_array().into_iter().flatten() {
        let n = |k: &str| row[k].as_i64().unwrap_or(0);
        println!(
            "{:<24} {:<16} {:>7} {:>12} {:>12} {:>12} {:>12.6} {:>6}",
            row["agent"].as_str().unwrap_or_default(),
            row["model"].as_str().unwrap_or_default(),
            n("calls"),
            n("input_tokens"),
            n("output_tokens"),
            n("tokens"),
            row["cost_usd"].as_f64().unwrap_or(0.0),
            n("errors"),
        );
    }
}

/// `90s`, `15m`, `24h`, `7d` as milliseconds.
fn parse_duration(text: &str) -> Result<u64> {
    let (number, unit) = text.split_at(text.trim_end_matches(char::is_alphabetic).len());
    let seconds: u64 = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => bail!("--since {text:?}: use a number with s, m, h or d (e.g. 24h)"),
    };
    match number.parse::<u64>() {
        Ok(n) => Ok(n.saturating_mul(seconds * 1000)),
        Err(_) => bail!("--since {text:?}: use a number with s, m, h or d (e.g. 24h)"),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations() {
        assert_eq!(super::parse_duration("24h").unwrap(), 86_400_000);
        assert_eq!(super::parse_duration("90s").unwrap(), 90_000);
        assert!(super::parse_duration("soon").is_err());
        assert!(super::parse_duration("h").is_err());
    }
}
