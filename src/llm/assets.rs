//! Stored assets: named, persistent sections of an agent's context (protocol section 18), the
//! rules of their labels and limits, and the block every prompt on the agent's threads carries.
//! Each change is a new version in Postgres; nothing is cut to fit: a value over its limit is
//! refused with both numbers.

use super::LlmError;
use crate::postgres::assets::{self as store, Next, Version};
use deadpool_postgres::Pool;

/// Most live assets an agent may have.
pub const MAX_ASSETS: usize = 64;
/// Largest `limit`, in characters.
pub const MAX_LIMIT: u32 = 100_000;
const MAX_LABEL: usize = 64;

/// What an update changes.
#[derive(Default)]
pub struct Change {
    pub value: Option<String>,
    pub limit: Option<u32>,
    pub description: Option<String>,
}

pub struct Assets {
    pool: Pool,
}

impl Assets {
    pub fn new(pool: Pool) -> Assets {
        Assets { pool }
    }

    pub async fn create(
        &self,
        agent: &str,
        label: &str,
        value: String,
        limit: u32,
        description: Option<String>,
    ) -> Result<Version, LlmError> {
        check_label(label)?;
        check_limit(limit)?;
        check_value(label, &value, limit)?;
        store::write(&self.pool, agent, label, |newest, live| {
            if newest.is_some_and(|v| !v.deleted) {
                return Err(LlmError::Conflict(format!("asset {label:?} exists")));
            }
            if live >= MAX_ASSETS {
                return Err(LlmError::BadRequest(format!(
                    "an agent has at most {MAX_ASSETS} stored assets"
                )));
            }
            Ok(Next {
                value,
                limit,
                description,
                deleted: false,
                reborn: true,
            })
        })
        .await
    }

    pub async fn update(&self, agent: &str, label: &str, c: Change) -> Result<Version, LlmError> {
        if c.value.is_none() && c.limit.is_none() && c.description.is_none() {
            return Err(LlmError::BadRequest(
                "give at least one of value, limit and description".into(),
            ));
        }
        c.limit.map(check_limit).transpose()?;
        store::write(&self.pool, agent, label, |newest, _| {
            let current = live(label, newest)?;
            let value = c.value.unwrap_or_else(|| current.value.clone());
            let limit = c.limit.unwrap_or(current.limit);
            check_value(label, &value, limit)?;
            Ok(Next {
                value,
                limit,
                description: c.description.or_else(|| current.description.clone()),
                deleted: false,
                reborn: false,
            })
        })
        .await
    }

    /// Appends a line to the value (the model's `memory_write` with `mode: "append"`).
    pub async fn append(&self, agent: &str, label: &str, line: &str) -> Result<Version, LlmError> {
        store::write(&self.pool, agent, label, |newest, _| {
            let current = live(label, newest)?;
            let value = match current.value.is_empty() {
                true => line.to_owned(),
                false => format!("{}\n{line}", current.value),
            };
            check_value(label, &value, current.limit)?;
            Ok(Next {
                value,
                limit: current.limit,
                description: current.description.clone(),
                deleted: false,
                reborn: false,
            })
        })
        .await
    }

    /// The asset and up to `history` earlier versions, newest first.
    pub async fn get(
        &self,
        agent: &str,
        label: &str,
        history: u32,
    ) -> Result<(Version, Vec<Version>), LlmError> {
        let mut versions = store::versions(&self.pool, agent, label, history + 1).await?;
        if versions.first().is_none_or(|v| v.deleted) {
            return Err(not_found(label));
        }
        let current = versions.remove(0);
        Ok((current, versions))
    }

    pub async fn list(&self, agent: &str) -> Result<Vec<Version>, LlmError> {
        Ok(store::list(&self.pool, agent).await?)
    }

    pub async fn delete(&self, agent: &str, label: &str) -> Result<(), LlmError> {
        store::write::<LlmError>(&self.pool, agent, label, |newest, _| {
            let current = live(label, newest)?;
            Ok(Next {
                value: String::new(),
                limit: current.limit,
                description: None,
                deleted: true,
                reborn: false,
            })
        })
        .await?;
        Ok(())
    }

    /// The block of the agent's assets that prompts carry, `None` without assets.
    pub async fn block(&self, agent: &str) -> Result<Option<String>, LlmError> {
        let assets = self.list(agent).await?;
        Ok((!assets.is_empty()).then(|| render(&assets)))
    }
}

/// The assets as the model sees them.
pub fn render(assets: &[Version]) -> String {
    let mut out = String::from("<stored_assets>\n");
    for a in assets {
        out += &format!(
            "<asset label=\"{}\" chars=\"{}\" limit=\"{}\">\n",
            a.label,
            chars(&a.value),
            a.limit
        );
        if let Some(d) = &a.description {
            out += &format!("<description>{d}</description>\n");
        }
        out += &a.value;
        out += "\n</asset>\n";
    }
    out + "</stored_assets>"
}

/// The length `limit` counts: Unicode scalar values.
pub fn chars(s: &str) -> usize {
    s.chars().count()
}

fn live<'a>(label: &str, newest: Option<&'a Version>) -> Result<&'a Version, LlmError> {
    newest
        .filter(|v| !v.deleted)
        .ok_or_else(|| not_found(label))
}

fn not_found(label: &str) -> LlmError {
    LlmError::NotFound(format!("no stored asset {label:?}"))
}

fn check_label(label: &str) -> Result<(), LlmError> {
    let ok = (1..=MAX_LABEL).contains(&label.chars().count())
        && label
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
    match ok {
        true => Ok(()),
        false => Err(LlmError::BadRequest(format!(
            "label {label:?} must be 1 to {MAX_LABEL} characters of A-Z a-z 0-9 _ - ."
        ))),
    }
}

fn check_limit(limit: u32) -> Result<(), LlmError> {
    match (1..=MAX_LIMIT).contains(&limit) {
        true => Ok(()),
        false => Err(LlmError::BadRequest(format!(
            "limit must be 1 to {MAX_LIMIT} characters"
        ))),
    }
}

fn check_value(label: &str, value: &str, limit: u32) -> Result<(), LlmError> {
    let n = chars(value);
    match n <= limit as usize {
        true => Ok(()),
        false => Err(LlmError::BadRequest(format!(
            "value is {n} characters, over the limit of {limit} of asset {label:?}"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn an_over_limit_value_is_refused_with_both_numbers() {
        let e = check_value("working_state", &"é".repeat(2417), 2000).unwrap_err();
        assert_eq!(
            e.to_string(),
            "value is 2417 characters, over the limit of 2000 of asset \"working_state\""
        );
        check_value("w", &"é".repeat(2000), 2000).unwrap();
    }

    #[test]
    fn labels_are_short_and_plain() {
        check_label("working_state-1.2").unwrap();
        for bad in ["", "a b", "ä", &"x".repeat(65), "a\"b"] {
            assert!(check_label(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn the_block_lists_assets_in_order_with_their_sizes() {
        let v = |label: &str, value: &str, d: Option<&str>| Version {
            label: label.into(),
            version: 1,
            value: value.into(),
            limit: 100,
            description: d.map(Into::into),
            deleted: false,
            at: Utc::now(),
        };
        let block = render(&[v("b", "two", Some("second")), v("a", "one", None)]);
        assert_eq!(
            block,
            "<stored_assets>\n<asset label=\"b\" chars=\"3\" limit=\"100\">\n\
             <description>second</description>\ntwo\n</asset>\n\
             <asset label=\"a\" chars=\"3\" limit=\"100\">\none\n</asset>\n</stored_assets>"
        );
    }
}
