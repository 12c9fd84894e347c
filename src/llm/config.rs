//! The `[llm]` sections of `ikigai.conf`: providers (`[llm.provider.<name>]`), model aliases
//! (`[llm.model.<alias>]`, an ordered list of `provider:model` targets with the alias's prices),
//! per-target prices (`[llm.price.<provider>:<model>]`, overriding the alias's), and the tool
//! loop, retry and cool-down tunables (`[llm]`). API keys are read from the environment variable
//! a provider names, at start; they are never written anywhere.

use super::price::Price;
use super::provider::Kind;
use crate::config::{ConfigError, Doc};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Keys of `[llm]`.
pub const LLM_KEYS: &[&str] = &[
    "max_steps",
    "tool_timeout_ms",
    "retries",
    "backoff_ms",
    "max_backoff_ms",
    "cooldown_ms",
    "failures_before_cooldown",
    "default_max_tokens",
    "default_model",
    "reservation_ttl_ms",
    "thread_idle_ms",
    "summary_model",
    "summary_max_tokens",
];
const PROVIDER_KEYS: &[&str] = &[
    "kind",
    "base_url",
    "api_key_env",
    "timeout_ms",
    "connect_timeout_ms",
];
const PRICE_KEYS: &[&str] = &[
    "input_per_mtok",
    "output_per_mtok",
    "cache_read_per_mtok",
    "cache_write_per_mtok",
];
const MODEL_KEYS: &[&str] = &[
    "targets",
    "context_tokens",
    "input_per_mtok",
    "output_per_mtok",
    "cache_read_per_mtok",
    "cache_write_per_mtok",
];

const PROVIDER: &str = "llm.provider.";
const MODEL: &str = "llm.model.";
const PRICE: &str = "llm.price.";

/// The keys a `[llm.*]` section may hold, or `None` when the section is not one of them.
pub fn known_keys(section: &str) -> Option<&'static [&'static str]> {
    let named = |prefix: &str| section.strip_prefix(prefix).is_some_and(|n| !n.is_empty());
    if named(PROVIDER) {
        Some(PROVIDER_KEYS)
    } else if named(MODEL) {
        Some(MODEL_KEYS)
    } else if named(PRICE) {
        Some(PRICE_KEYS)
    } else {
        None
    }
}

/// An API key; its `Debug` never shows it.
#[derive(Clone, PartialEq)]
pub struct ApiKey(pub String);

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey([redacted])")
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct ProviderConfig {
    pub kind: Kind,
    pub base_url: String,
    pub key: Option<ApiKey>,
    /// Longest wait for the next bytes of an answer.
    pub timeout: Duration,
    pub connect_timeout: Duration,
}

/// One `provider:model` of an alias, with its prices.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub provider: String,
    pub model: String,
    pub price: Price,
}

impl Target {
    pub fn label(&self) -> String {
        format!("{}:{}", self.provider, self.model)
    }
}

#[derive(Debug, Clone, PartialEq, Default)]
pub struct LlmConfig {
    pub providers: BTreeMap<String, ProviderConfig>,
    /// Aliases and their targets, in failover order.
    pub models: BTreeMap<String, Vec<Target>>,
    /// Most provider calls one `llm.prompt` makes in its tool loop.
    pub max_steps: usize,
    /// Longest wait for an agent's answer to a custom tool call.
    pub tool_timeout: Duration,
    /// Retries of one target before failing over.
    pub retries: u32,
    pub backoff: Duration,
    pub max_backoff: Duration,
    /// How long a target that kept failing is skipped.
    pub cooldown: Duration,
    pub failures_before_cooldown: u32,
    pub default_max_tokens: u64,
    /// The alias of a prompt that names none, for an agent whose manifest lists no models.
    pub default_model: Option<String>,
    /// How long a quota reservation holds if its daemon dies before settling it.
    pub reservation_ttl: Duration,
    /// How long a thread's actor (its history in memory) lives on unused.
    pub thread_idle: Duration,
    /// Each alias's context size in tokens (`context_tokens`, default 128000): its default
    /// window.
    pub context_tokens: BTreeMap<String, u64>,
    /// The alias that writes summaries (`None`: the caller's default model).
    pub summary_model: Option<String>,
    /// `max_tokens` of a summary.
    pub summary_max_tokens: u64,
}

/// A model's context size when its section names none.
pub const DEFAULT_CONTEXT_TOKENS: u64 = 128_000;

impl LlmConfig {
    /// The alias's window when a thread sets none.
    pub fn context_of(&self, alias: &str) -> u64 {
        self.context_tokens
            .get(alias)
            .copied()
            .unwrap_or(DEFAULT_CONTEXT_TOKENS)
    }

    /// The largest context of the configured models: how much of a thread that sets no window
    /// its actor keeps in memory.
    pub fn largest_context(&self) -> u64 {
        let sizes = self.models.keys().map(|m| self.context_of(m));
        sizes.max().unwrap_or(DEFAULT_CONTEXT_TOKENS)
    }

    pub(crate) fn parse(doc: &Doc) -> Result<LlmConfig, ConfigError> {
        let providers = doc
            .sections_with_prefix(PROVIDER)
            .into_iter()
            .map(|(name, section)| Ok((name.to_owned(), provider(doc, section)?)))
            .collect::<Result<BTreeMap<_, _>, ConfigError>>()?;
        let models = doc
            .sections_with_prefix(MODEL)
            .into_iter()
            .map(|(alias, section)| Ok((alias.to_owned(), targets(doc, section, &providers)?)))
            .collect::<Result<BTreeMap<_, _>, ConfigError>>()?;
        let default_model = alias(doc, "default_model", &models)?;
        let summary_model = alias(doc, "summary_model", &models)?;
        let context_tokens = models
            .keys()
            .map(|a| {
                let section = format!("{MODEL}{a}");
                let size = doc.number(&section, "context_tokens", DEFAULT_CONTEXT_TOKENS, 256)?;
                Ok((a.clone(), size))
            })
            .collect::<Result<BTreeMap<_, _>, ConfigError>>()?;
        Ok(LlmConfig {
            providers,
            models,
            max_steps: doc.number("llm", "max_steps", 8, 1)?,
            tool_timeout: doc.millis("llm", "tool_timeout_ms", 60_000, 1)?,
            retries: doc.number("llm", "retries", 2, 0)?,
            backoff: doc.millis("llm", "backoff_ms", 200, 0)?,
            max_backoff: doc.millis("llm", "max_backoff_ms", 10_000, 0)?,
            cooldown: doc.millis("llm", "cooldown_ms", 30_000, 0)?,
            failures_before_cooldown: doc.number("llm", "failures_before_cooldown", 3, 1)?,
            default_max_tokens: doc.number("llm", "default_max_tokens", 1024, 1)?,
            default_model,
            reservation_ttl: doc.millis("llm", "reservation_ttl_ms", 600_000, 1000)?,
            thread_idle: doc.millis("llm", "thread_idle_ms", 300_000, 100)?,
            context_tokens,
            summary_model,
            summary_max_tokens: doc.number("llm", "summary_max_tokens", 1024, 16)?,
        })
    }
}

/// `[llm] default_model` or `summary_model`: one of the configured aliases.
fn alias(
    doc: &Doc,
    key: &str,
    models: &BTreeMap<String, Vec<Target>>,
) -> Result<Option<String>, ConfigError> {
    let Some(alias) = doc.get("llm", key).filter(|a| !a.is_empty()) else {
        return Ok(None);
    };
    if !models.contains_key(alias) {
        let known: Vec<&str> = models.keys().map(String::as_str).collect();
        let message = format!("{alias:?} is not a [llm.model.<alias>] (known: {known:?})");
        return Err(doc.error("llm", key, message));
    }
    Ok(Some(alias.to_owned()))
}

fn provider(doc: &Doc, section: &str) -> Result<ProviderConfig, ConfigError> {
    let (kind, default_url) = match doc.get(section, "kind") {
        Some("openai") => (Kind::OpenAi, "https://api.openai.com"),
        Some("anthropic") => (Kind::Anthropic, "https://api.anthropic.com"),
        Some(other) => {
            let message = format!("{other:?} is not openai or anthropic");
            return Err(doc.error(section, "kind", message));
        }
        None => return Err(doc.error(section, "", "kind is required".into())),
    };
    let base_url = doc.get(section, "base_url").unwrap_or(default_url);
    if !(base_url.starts_with("http://") || base_url.starts_with("https://")) {
        let message = format!("{base_url:?} is not an http:// or https:// URL");
        return Err(doc.error(section, "base_url", message));
    }
    Ok(ProviderConfig {
        kind,
        base_url: base_url.to_owned(),
        key: api_key(doc, section)?,
        timeout: doc.millis(section, "timeout_ms", 120_000, 1)?,
        connect_timeout: doc.millis(section, "connect_timeout_ms", 10_000, 1)?,
    })
}

/// Reads the key from the environment variable the section names.
fn api_key(doc: &Doc, section: &str) -> Result<Option<ApiKey>, ConfigError> {
    let Some(var) = doc.get(section, "api_key_env").filter(|v| !v.is_empty()) else {
        return Ok(None);
    };
    match std::env::var(var) {
        Ok(key) if !key.is_empty() => Ok(Some(ApiKey(key))),
        _ => {
            let message = format!("environment variable {var} is not set");
            Err(doc.error(section, "api_key_env", message))
        }
    }
}

fn targets(
    doc: &Doc,
    section: &str,
    providers: &BTreeMap<String, ProviderConfig>,
) -> Result<Vec<Target>, ConfigError> {
    let alias_price = price(doc, section)?;
    let list = doc.get(section, "targets").unwrap_or("");
    let mut targets = Vec::new();
    for item in list.split(',').map(str::trim).filter(|t| !t.is_empty()) {
        let bad = |message: String| doc.error(section, "targets", message);
        let (provider, model) = item
            .split_once(':')
            .filter(|(p, m)| !p.is_empty() && !m.is_empty())
            .ok_or_else(|| bad(format!("{item:?} is not provider:model")))?;
        if !providers.contains_key(provider) {
            return Err(bad(format!("no [llm.provider.{provider}] section")));
        }
        let own = format!("{PRICE}{item}");
        let price = match doc.has_section(&own) {
            true => price(doc, &own)?,
            false => alias_price,
        };
        targets.push(Target {
            provider: provider.to_owned(),
            model: model.to_owned(),
            price,
        });
    }
    if targets.is_empty() {
        return Err(doc.error(section, "targets", "at least one provider:model".into()));
    }
    Ok(targets)
}

/// The prices of a section; cache reads and writes cost as much as input unless priced.
fn price(doc: &Doc, section: &str) -> Result<Price, ConfigError> {
    let input = doc.number(section, "input_per_mtok", 0.0, 0.0)?;
    Ok(Price {
        input,
        output: doc.number(section, "output_per_mtok", 0.0, 0.0)?,
        cache_read: doc.number(section, "cache_read_per_mtok", input, 0.0)?,
        cache_write: doc.number(section, "cache_write_per_mtok", input, 0.0)?,
    })
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    const BASE: &str = "[llm.provider.a]\nkind = anthropic\nbase_url = http://127.0.0.1:9\n\
        [llm.provider.o]\nkind = openai\n";

    #[test]
    fn targets_keep_their_order_and_prices() {
        let text = format!(
            "{BASE}[llm.model.sonnet]\ntargets = a:claude, o:gpt\ninput_per_mtok = 3\n\
             output_per_mtok = 15\n[llm.price.o:gpt]\ninput_per_mtok = 1\n"
        );
        let c = Config::parse(&text, "t.conf").unwrap();
        let t = &c.llm.models["sonnet"];
        assert_eq!(
            (t[0].label(), t[1].label()),
            ("a:claude".into(), "o:gpt".into())
        );
        assert_eq!((t[0].price.input, t[0].price.output), (3.0, 15.0));
        assert_eq!(
            (t[1].price.input, t[1].price.output, t[1].price.cache_read),
            (1.0, 0.0, 1.0)
        );
    }

    #[test]
    fn errors_name_the_section_and_key() {
        let cases = [
            ("[llm.provider.x]\nkind = gemini\n", "[llm.provider.x] kind"),
            (
                "[llm.provider.x]\nkind = openai\ncolour = 1\n",
                "[llm.provider.x] colour",
            ),
            (
                &format!("{BASE}[llm.model.m]\ntargets = nobody:x\n"),
                "[llm.model.m] targets",
            ),
            (
                &format!("{BASE}[llm.model.m]\ntargets = a\n"),
                "[llm.model.m] targets",
            ),
            (
                "[llm.provider.x]\nkind = openai\napi_key_env = IKIGAI_NO_SUCH_VAR\n",
                "[llm.provider.x] api_key_env",
            ),
            ("[llm]\nmax_steps = 0\n", "[llm] max_steps"),
        ];
        for (text, key) in cases {
            let e = Config::parse(text, "t.conf").unwrap_err();
            assert_eq!(e.key, key, "{text}: {e}");
            assert!(e.line > 0, "{e}");
        }
    }

    #[test]
    fn the_key_never_shows_in_debug_output() {
        std::env::set_var("IKIGAI_TEST_KEY_DEBUG", "sk-very-secret");
        let text = "[llm.provider.x]\nkind = openai\napi_key_env = IKIGAI_TEST_KEY_DEBUG\n";
        let c = Config::parse(text, "t.conf").unwrap();
        assert!(!format!("{c:?}").contains("sk-very-secret"));
    }
}
