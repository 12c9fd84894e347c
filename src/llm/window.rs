//! Fitting a thread's context into its window before every provider call: the system part and
//! the running turn always go; earlier exchanges go newest first, whole, while they fit. What
//! does not fit is left out of this call (truncate), or summarised first (summarize, which the
//! prompt does with what [`fit`] reports as left out). Tokens are counted by a [`Meter`]: the
//! model's own tokenizer, or the estimate of [`super::context::tokens`] scaled by
//! [`Calibration`] to what the provider reports; `max_tokens_per_request` is always checked in
//! the estimate's unit, as the quota counts.

use super::context::{exchanges, tokens, Entry};
use super::provider::Message;
use super::tokenizer::Meter;
use super::LlmError;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;
use std::collections::HashMap;

/// What to do with exchanges that do not fit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Strategy {
    #[default]
    Truncate,
    Summarize,
}

impl Strategy {
    pub fn parse(s: &str) -> Result<Strategy, LlmError> {
        match s {
            "truncate" => Ok(Strategy::Truncate),
            "summarize" => Ok(Strategy::Summarize),
            other => Err(LlmError::BadRequest(format!(
                "strategy {other:?} is not truncate or summarize"
            ))),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::Truncate => "truncate",
            Strategy::Summarize => "summarize",
        }
    }
}

/// A thread's window setting.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Window {
    /// `None`: the model's context size.
    pub tokens: Option<u32>,
    pub strategy: Strategy,
}

/// What one call may send: `tokens` as its target counts them (the window less `max_tokens`),
/// and `estimate` in the estimate's unit (what `max_tokens_per_request` allows less
/// `max_tokens`; `u64::MAX` without that limit).
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub tokens: u64,
    pub estimate: u64,
}

/// One call's request, fitted.
pub struct Fitted {
    pub messages: Vec<Message>,
    /// How many of the history's entries (from the oldest) were left out.
    pub left_out: usize,
    /// Tokens of the part that always goes (system, the turn, tools), as the meter counts.
    pub fixed: u64,
}

/// Fits `system`, `history` (in-context entries, oldest first) and `current` (this turn's
/// messages so far) into `budget`, counted by `meter`; the tools take `extra` estimated tokens.
pub fn fit(
    system: Option<&Message>,
    history: &[Entry],
    current: &[Message],
    extra: u64,
    budget: Budget,
    meter: Meter,
) -> Result<Fitted, LlmError> {
    let fixed_parts = system.into_iter().chain(current);
    let (mut real, mut est) = (extra, extra + 2);
    for m in fixed_parts {
        real += meter.message(m);
        est += u64::from(tokens(m));
    }
    if real > budget.tokens || est > budget.estimate {
        return Err(LlmError::BadRequest(format!(
            "this turn needs about {real} tokens without any history (the thread's context, \
             stored assets, summary, tools and the turn's messages), more than the window \
             leaves ({} after max_tokens)",
            budget.tokens.min(budget.estimate)
        )));
    }
    let fixed = real;
    let mut start = history.len();
    for range in exchanges(history).into_iter().rev() {
        let part = &history[range.clone()];
        let size: u64 = part.iter().map(|e| meter.entry(e)).sum();
        let size_est: u64 = part.iter().map(|e| u64::from(e.tokens)).sum();
        if real + size > budget.tokens || est + size_est > budget.estimate {
            break;
        }
        (real, est) = (real + size, est + size_est);
        start = range.start;
    }
    let kept = history[start..].iter().map(|e| (*e.message).clone());
    let messages = system
        .cloned()
        .into_iter()
        .chain(kept)
        .chain(current.iter().cloned());
    Ok(Fitted {
        messages: messages.collect(),
        left_out: start,
        fixed,
    })
}

/// Where the summarize strategy cuts: the first entry of the oldest exchange to keep verbatim,
/// so that what stays fills at most half of `room` tokens (at least the newest exchange stays).
pub fn summary_cut(history: &[Entry], room: u64, meter: Meter) -> usize {
    let ranges = exchanges(history);
    let mut used = 0;
    let mut cut = history.len();
    for (i, range) in ranges.iter().enumerate().rev() {
        let size: u64 = history[range.clone()].iter().map(|e| meter.entry(e)).sum();
        if i + 1 < ranges.len() && used + size > room / 2 {
            break;
        }
        used += size;
        cut = range.start;
    }
    cut
}

/// Real tokens per estimated token, per target, from the providers' reported input tokens.
#[derive(Default)]
pub struct Calibration {
    ratios: RefCell<HashMap<String, f64>>,
}

impl Calibration {
    /// The ratio for `target` (1 until it reported usage), kept between 0.5 and 2.
    pub fn ratio(&self, target: &str) -> f64 {
        self.ratios.borrow().get(target).copied().unwrap_or(1.0)
    }

    /// Learns from one call: `estimated` tokens sent, `reported` counted by the provider.
    pub fn learn(&self, target: &str, estimated: u64, reported: u64) {
        if estimated < 64 || reported == 0 {
            return;
        }
        let seen = (reported as f64 / estimated as f64).clamp(0.5, 2.0);
        let mut ratios = self.ratios.borrow_mut();
        let r = ratios.entry(target.to_owned()).or_insert(seen);
        *r = (*r * 0.8 + seen * 0.2).clamp(0.5, 2.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::provider::Role;
    use uuid::Uuid;

    fn turns(n: u32) -> Vec<Entry> {
        let mut out = Vec::new();
        for t in 0..n {
            let x = Some(Uuid::new_v4());
            for (i, role) in [Role::User, Role::Assistant].into_iter().enumerate() {
                let m = Message {
                    role,
                    content: "x".repeat(30),
                    tool_calls: Vec::new(),
                    tool_call_id: None,
                    is_error: false,
                };
                out.push(Entry::new(t * 2 + i as u32, x, m));
            }
        }
        out
    }

    #[test]
    fn the_newest_whole_exchanges_that_fit_are_kept() {
        let history = turns(10);
        let each: u64 = history[..2].iter().map(|e| u64::from(e.tokens)).sum();
        let budget = Budget {
            tokens: 2 + each * 3 + each / 2,
            estimate: u64::MAX,
        };
        let fitted = fit(None, &history, &[], 0, budget, Meter::Estimate(1.0)).unwrap();
        assert_eq!(fitted.left_out, 14);
        assert_eq!(fitted.messages.len(), 6);
    }

    #[test]
    fn a_turn_that_cannot_fit_alone_is_refused_with_the_sizes() {
        let budget = Budget {
            tokens: 100,
            estimate: u64::MAX,
        };
        let e = fit(None, &turns(1), &[], 500, budget, Meter::Estimate(1.0));
        let e = e.err().unwrap();
        assert!(e.to_string().contains("500 tokens"), "{e}");
    }

    #[test]
    fn max_tokens_per_request_binds_in_the_estimates_unit_whatever_the_meter() {
        let history = turns(10);
        let each: u64 = history[..2].iter().map(|e| u64::from(e.tokens)).sum();
        let budget = Budget {
            tokens: u64::MAX,
            estimate: 2 + each * 2,
        };
        let fitted = fit(None, &history, &[], 0, budget, Meter::Estimate(0.5)).unwrap();
        assert_eq!(fitted.left_out, 16);
    }

    #[test]
    fn the_summary_cut_keeps_half_the_budget_verbatim_and_at_least_one_exchange() {
        let history = turns(10);
        let each: u64 = history[..2].iter().map(|e| u64::from(e.tokens)).sum();
        let meter = Meter::Estimate(1.0);
        assert_eq!(summary_cut(&history, each * 8, meter), 12);
        assert_eq!(summary_cut(&history, 1, meter), 18);
    }

    #[test]
    fn calibration_moves_toward_what_providers_report_within_bounds() {
        let c = Calibration::default();
        assert_eq!(c.ratio("p:m"), 1.0);
        c.learn("p:m", 1000, 750);
        assert!((c.ratio("p:m") - 0.75).abs() < 1e-9);
        for _ in 0..100 {
            c.learn("p:m", 1000, 100_000);
        }
        assert!((c.ratio("p:m") - 2.0).abs() < 1e-6);
    }
}
