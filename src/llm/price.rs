//! Cost arithmetic: a target's prices per million tokens applied to normalised usage.
//!
//! Usage counts the whole prompt in `input_tokens` (the adapters normalise OpenAI, whose
//! `prompt_tokens` include cached tokens, and Anthropic, whose `input_tokens` exclude cache reads
//! and writes), so the uncached input is `input - cache_read - cache_write`, priced at `input`;
//! the cached parts are priced at their own rates.

use super::provider::Usage;

/// USD per million tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Price {
    pub input: f64,
    pub output: f64,
    pub cache_read: f64,
    pub cache_write: f64,
}

impl Price {
    /// The cost of `usage` in USD, rounded to the micro-dollar (the column's precision).
    pub fn cost(&self, usage: &Usage) -> f64 {
        let cached = usage.cache_read_tokens + usage.cache_write_tokens;
        let uncached = usage.input_tokens.saturating_sub(cached);
        let micro = uncached as f64 * self.input
            + usage.cache_read_tokens as f64 * self.cache_read
            + usage.cache_write_tokens as f64 * self.cache_write
            + usage.output_tokens as f64 * self.output;
        micro.round() / 1e6
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SONNET: Price = Price {
        input: 3.0,
        output: 15.0,
        cache_read: 0.3,
        cache_write: 3.75,
    };

    #[test]
    fn plain_input_and_output() {
        let u = Usage {
            input_tokens: 1_000,
            output_tokens: 500,
            ..Usage::default()
        };
        // 1000 * 3 / 1e6 + 500 * 15 / 1e6 = 0.003 + 0.0075
        assert_eq!(SONNET.cost(&u), 0.0105);
    }

    #[test]
    fn cached_parts_are_priced_apart_from_the_rest_of_the_input() {
        let u = Usage {
            input_tokens: 10_000,
            output_tokens: 100,
            cache_read_tokens: 8_000,
            cache_write_tokens: 1_000,
        };
        // 1000 * 3 + 8000 * 0.3 + 1000 * 3.75 + 100 * 15 = 3000 + 2400 + 3750 + 1500 micro-$
        assert_eq!(SONNET.cost(&u), 0.01065);
    }
}
