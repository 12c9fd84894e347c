//! Counting tokens for the window. Models of OpenAI's `o200k_base` family (gpt-4o, gpt-4.1,
//! gpt-5, the o-series) are counted with that tokenizer itself (tiktoken-rs), built once, on a
//! thread of its own, the first time a prompt needs it (it takes about 50 MB and 0.2 s; until
//! it is ready, prompts use the estimate). Every other model is counted with the estimate of
//! [`super::context::tokens`] times the ratio its provider's reported usage showed.

use super::context::Entry;
use super::provider::Message;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;
use tiktoken_rs::CoreBPE;

static O200K: OnceLock<CoreBPE> = OnceLock::new();
static BUILDING: AtomicBool = AtomicBool::new(false);

/// OpenAI's per-message framing in a chat request, in tokens.
const PER_MESSAGE: u32 = 4;

/// Whether an OpenAI model name belongs to the `o200k_base` family.
fn o200k_family(model: &str) -> bool {
    let families = ["gpt-4o", "gpt-4.1", "gpt-5", "chatgpt-4o", "o1", "o3", "o4"];
    families.iter().any(|f| model.starts_with(f))
}

/// The tokenizer of an OpenAI model when there is one and it is ready (starting to build it
/// otherwise).
pub fn for_openai_model(model: &str) -> Option<&'static CoreBPE> {
    if !o200k_family(model) {
        return None;
    }
    if let Some(bpe) = O200K.get() {
        return Some(bpe);
    }
    if !BUILDING.swap(true, Ordering::SeqCst) {
        let built = std::thread::Builder::new()
            .name("ikigai-tokenizer".into())
            .spawn(|| match tiktoken_rs::o200k_base() {
                Ok(bpe) => {
                    let _ = O200K.set(bpe);
                }
                Err(e) => tracing::warn!(error = %e, "the o200k_base tokenizer failed to load"),
            });
        if let Err(e) = built {
            tracing::warn!(error = %e, "cannot start the tokenizer thread");
        }
    }
    None
}

/// The ready tokenizer, if any (for counting entries ahead of use).
pub fn ready() -> Option<&'static CoreBPE> {
    O200K.get()
}

/// A message's tokens as OpenAI counts a chat message: its text, its tool calls' names and
/// arguments, and the message's framing.
pub fn count(bpe: &CoreBPE, m: &Message) -> u32 {
    let mut n = bpe.encode_ordinary(&m.content).len();
    for call in &m.tool_calls {
        n += bpe.encode_ordinary(&call.name).len();
        n += bpe.encode_ordinary(&call.arguments.to_string()).len();
        n += PER_MESSAGE as usize;
    }
    n as u32 + PER_MESSAGE
}

/// How a call's tokens are counted.
#[derive(Clone, Copy)]
pub enum Meter {
    /// The estimate scaled by the target's ratio.
    Estimate(f64),
    Bpe(&'static CoreBPE),
}

impl Meter {
    pub fn message(&self, m: &Message) -> u64 {
        match self {
            Meter::Estimate(ratio) => scaled(super::context::tokens(m), *ratio),
            Meter::Bpe(bpe) => u64::from(count(bpe, m)),
        }
    }

    pub fn entry(&self, e: &Entry) -> u64 {
        match self {
            Meter::Estimate(ratio) => scaled(e.tokens, *ratio),
            Meter::Bpe(bpe) => u64::from(e.bpe.unwrap_or_else(|| count(bpe, &e.message))),
        }
    }
}

fn scaled(tokens: u32, ratio: f64) -> u64 {
    (f64::from(tokens) * ratio).ceil() as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::provider::Role;

    #[test]
    fn only_the_o200k_family_gets_the_tokenizer() {
        assert!(o200k_family("gpt-4o-mini") && o200k_family("o3") && o200k_family("gpt-4.1"));
        assert!(
            !o200k_family("gpt-3.5-turbo") && !o200k_family("llama-3") && !o200k_family("claude")
        );
    }

    #[test]
    fn a_message_counts_its_text_and_framing() {
        let bpe = tiktoken_rs::o200k_base().unwrap();
        let m = Message {
            role: Role::User,
            content: "hello world".into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            is_error: false,
        };
        assert_eq!(count(&bpe, &m), 2 + PER_MESSAGE);
    }
}
