//! Routing of one call to an alias's targets: retries with backoff and jitter (honouring
//! `Retry-After`) on retriable errors, failover to the next target, no failover on other 4xx or
//! after the first streamed byte, and a cool-down that skips a target that keeps failing.

use super::config::{LlmConfig, Target};
use super::provider::{ChatRequest, ChatResponse, Deltas, Provider, ProviderError};
use rand::Rng;
use serde::Serialize;
use std::cell::RefCell;
use std::collections::HashMap;
use std::time::{Duration, Instant};
use tracing::{info, warn};

/// One try of one target, as logged with the interaction.
#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub target: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub latency_ms: u64,
}

/// A call that got an answer.
pub struct Routed {
    pub response: ChatResponse,
    pub target: Target,
    pub attempts: Vec<Attempt>,
}

/// A call that got none: the last error, and the target it came from.
pub struct Failed {
    pub error: RouteError,
    pub target: Option<Target>,
    pub attempts: Vec<Attempt>,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum RouteError {
    /// A 4xx other than 429: the request itself is wrong; no other target would take it.
    #[error("{provider} refused the request: {error}")]
    Refused {
        provider: String,
        error: ProviderError,
    },
    /// A stream cut after text reached the agent.
    #[error("{provider}: {error}")]
    Cut {
        provider: String,
        error: ProviderError,
    },
    /// Every target failed (or is cooling down).
    #[error("every target failed; last: {0}")]
    Exhausted(String),
}

/// Consecutive failures of a target, and until when it is skipped.
#[derive(Default)]
struct Circuit {
    failures: u32,
    open_until: Option<Instant>,
}

pub struct Router {
    providers: HashMap<String, Provider>,
    retries: u32,
    backoff: Duration,
    max_backoff: Duration,
    cooldown: Duration,
    failures_before_cooldown: u32,
    circuits: RefCell<HashMap<String, Circuit>>,
}

impl Router {
    pub fn new(config: &LlmConfig) -> Result<Router, String> {
        let mut providers = HashMap::new();
        for (name, p) in &config.providers {
            let key = p.key.as_ref().map(|k| k.0.clone());
            let provider =
                Provider::new(name, p.kind, &p.base_url, key, p.timeout, p.connect_timeout)?;
            providers.insert(name.clone(), provider);
        }
        Ok(Router {
            providers,
            retries: config.retries,
            backoff: config.backoff,
            max_backoff: config.max_backoff,
            cooldown: config.cooldown,
            failures_before_cooldown: config.failures_before_cooldown,
            circuits: RefCell::default(),
        })
    }

    /// Tries `targets` in order until one answers.
    pub async fn call(
        &self,
        targets: &[Target],
        request: &ChatRequest,
        deltas: Option<Deltas<'_>>,
    ) -> Result<Routed, Failed> {
        let mut attempts = Vec::new();
        let mut last = RouteError::Exhausted("every target is cooling down".into());
        let mut last_target = None;
        for target in targets {
            if self.cooling(target) {
                info!(target = %target.label(), "skipping a target in cool-down");
                continue;
            }
            let req = ChatRequest {
                model: target.model.clone(),
                ..request.clone()
            };
            match self.try_target(target, &req, deltas, &mut attempts).await {
                Ok(response) => {
                    let target = target.clone();
                    return Ok(Routed {
                        response,
                        target,
                        attempts,
                    });
                }
                Err(e @ (RouteError::Refused { .. } | RouteError::Cut { .. })) => {
                    let target = Some(target.clone());
                    return Err(Failed {
                        error: e,
                        target,
                        attempts,
                    });
                }
                Err(e) => (last, last_target) = (e, Some(target.clone())),
            }
        }
        Err(Failed {
            error: last,
            target: last_target,
            attempts,
        })
    }

    /// One target with its retries; `Exhausted` means: fail over.
    async fn try_target(
        &self,
        target: &Target,
        req: &ChatRequest,
        deltas: Option<Deltas<'_>>,
        attempts: &mut Vec<Attempt>,
    ) -> Result<ChatResponse, RouteError> {
        let Some(provider) = self.providers.get(&target.provider) else {
            return Err(RouteError::Exhausted(format!(
                "no provider {}",
                target.provider
            )));
        };
        let mut tries = 0;
        loop {
            let started = Instant::now();
            let result = provider.chat(req, deltas).await;
            attempts.push(attempt(target, &result, started));
            let error = match result {
                Ok(response) => {
                    self.circuits.borrow_mut().remove(&target.label());
                    return Ok(response);
                }
                Err(e) => e,
            };
            warn!(target = %target.label(), try_ = tries, error = %error, "provider call failed");
            let named = |error| (provider.name.clone(), error);
            if error.streamed() {
                let (provider, error) = named(error);
                return Err(RouteError::Cut { provider, error });
            }
            if !error.retriable() {
                let (provider, error) = named(error);
                return Err(RouteError::Refused { provider, error });
            }
            match self.delay(tries, &error).filter(|_| tries < self.retries) {
                Some(delay) => tokio::time::sleep(delay).await,
                None => {
                    self.failed(target);
                    let message = format!("{}: {error}", target.label());
                    return Err(RouteError::Exhausted(message));
                }
            }
            tries += 1;
        }
    }

    /// How long to wait before try `tries + 1`: the provider's `Retry-After` if it fits within
    /// `max_backoff` (else `None`: fail over now), or exponential backoff with ±25% jitter.
    fn delay(&self, tries: u32, error: &ProviderError) -> Option<Duration> {
        if let Some(after) = error.retry_after() {
            return (after <= self.max_backoff).then_some(after);
        }
        let base = self
            .backoff
            .saturating_mul(1 << tries.min(16))
            .min(self.max_backoff);
        let jitter = rand::rng().random_range(0.75..=1.25);
        Some(base.mul_f64(jitter))
    }

    fn cooling(&self, target: &Target) -> bool {
        let circuits = self.circuits.borrow();
        let open = circuits.get(&target.label()).and_then(|c| c.open_until);
        open.is_some_and(|until| Instant::now() < until)
    }

    /// Counts a target's failed request; enough in a row start its cool-down.
    fn failed(&self, target: &Target) {
        let mut circuits = self.circuits.borrow_mut();
        let circuit = circuits.entry(target.label()).or_default();
        circuit.failures += 1;
        if circuit.failures >= self.failures_before_cooldown {
            warn!(target = %target.label(), cooldown_ms = self.cooldown.as_millis() as u64,
                "target keeps failing; cooling down");
            circuit.open_until = Some(Instant::now() + self.cooldown);
            circuit.failures = 0;
        }
    }
}

fn attempt(
    target: &Target,
    result: &Result<ChatResponse, ProviderError>,
    started: Instant,
) -> Attempt {
    let (status, error) = match result {
        Ok(_) => (Some(200), None),
        Err(ProviderError::Status {
            status, message, ..
        }) => (Some(*status), Some(message.clone())),
        Err(e) => (None, Some(e.to_string())),
    };
    let latency_ms = started.elapsed().as_millis() as u64;
    info!(target = %target.label(), ?status, latency_ms, "provider attempt");
    Attempt {
        target: target.label(),
        status,
        error,
        latency_ms,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn router() -> Router {
        let config = LlmConfig {
            retries: 2,
            backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(1),
            ..LlmConfig::default()
        };
        Router::new(&config).unwrap()
    }

    fn status(status: u16, retry_after: Option<u64>) -> ProviderError {
        let retry_after = retry_after.map(Duration::from_secs);
        ProviderError::Status {
            status,
            message: String::new(),
            retry_after,
        }
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let r = router();
        for (tries, base) in [(0, 100), (1, 200), (2, 400), (5, 1000)] {
            let d = r.delay(tries, &status(500, None)).unwrap().as_millis() as u64;
            assert!(
                (base * 3 / 4..=base * 5 / 4).contains(&d),
                "try {tries}: {d} ms"
            );
        }
    }

    #[test]
    fn retry_after_is_honoured_unless_it_exceeds_the_cap() {
        let r = router();
        assert_eq!(
            r.delay(0, &status(429, Some(1))),
            Some(Duration::from_secs(1))
        );
        assert_eq!(r.delay(0, &status(429, Some(30))), None);
    }

    #[test]
    fn what_is_retried() {
        assert!(status(429, None).retriable() && status(529, None).retriable());
        assert!(status(500, None).retriable() && ProviderError::Timeout.retriable());
        assert!(!status(400, None).retriable() && !status(404, None).retriable());
        let cut = |streamed| ProviderError::StreamCut {
            message: String::new(),
            streamed,
        };
        assert!(cut(false).retriable() && !cut(true).retriable());
    }
}
