//! The supervision rules of one agent as a plain struct: whether an exit is restarted (OTP's
//! `permanent`/`transient`/`temporary`), the restart intensity (at most `max_restarts` restarts
//! within `restart_window_s`, else the agent has failed) and the backoff between restarts.

use crate::manifest::{Manifest, Restart};
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Exit status 0.
    Normal,
    /// A non-zero status, a signal, a kill for missing heartbeats, a failed start, or the end of
    /// an adopted process (whose status only its parent can see).
    Abnormal,
}

/// What the supervisor does after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Start it again after this delay.
    Restart(Duration),
    /// The restart rule says no: the agent is stopped.
    Stop,
    /// Too many restarts in the window: the agent has failed.
    Fail,
}

/// First restart delay; each further restart within the window doubles it.
pub const BACKOFF_MIN: Duration = Duration::from_millis(100);
/// Longest restart delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// The restart bookkeeping of one agent.
#[derive(Debug, Clone)]
pub struct Supervision {
    rule: Restart,
    max_restarts: usize,
    window: Duration,
    /// When each restart within the window was decided, oldest first.
    recent: VecDeque<Instant>,
}

impl Supervision {
    pub fn new(manifest: &Manifest) -> Self {
        Supervision {
            rule: manifest.restart,
            max_restarts: manifest.max_restarts as usize,
            window: Duration::from_secs(manifest.restart_window_s),
            recent: VecDeque::new(),
        }
    }

    /// Decides what follows an exit at `now`, recording the restart it allows.
    pub fn on_exit(&mut self, exit: Exit, now: Instant) -> Decision {
        let restart = match self.rule {
            Restart::Permanent => true,
            Restart::Transient => exit == Exit::Abnormal,
            Restart::Temporary => false,
        };
        if !restart {
            return Decision::Stop;
        }
        while let Some(&oldest) = self.recent.front() {
            if now.duration_since(oldest) < self.window {
                break;
            }
            self.recent.pop_front();
        }
        if self.recent.len() >= self.max_restarts {
            return Decision::Fail;
        }
        let delay = backoff(self.recent.len() as u32);
        self.recent.push_back(now);
        Decision::Restart(delay)
    }

    /// Forgets past restarts (an operator's `agents.start` after a failure, a redeploy).
    pub fn reset(&mut self) {
        self.recent.clear();
    }
}

/// The delay before the restart that follows `earlier` restarts within the window: 100 ms
/// doubling, at most 30 s.
pub fn backoff(earlier: u32) -> Duration {
    BACKOFF_MIN
        .saturating_mul(1u32.checked_shl(earlier).unwrap_or(u32::MAX))
        .min(BACKOFF_MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn supervision(rule: &str, max: u32, window_s: u64) -> Supervision {
        let json = format!(
            r#"{{"name":"a","version":"1","command":["x"],"restart":"{rule}",
                "max_restarts":{max},"restart_window_s":{window_s}}}"#
        );
        Supervision::new(&Manifest::from_json(&json).unwrap())
    }

    #[test]
    fn the_restart_rule_decides_per_exit_kind() {
        let t = Instant::now();
        let cases = [
            ("permanent", Exit::Normal, true),
            ("permanent", Exit::Abnormal, true),
            ("transient", Exit::Normal, false),
            ("transient", Exit::Abnormal, true),
            ("temporary", Exit::Normal, false),
            ("temporary", Exit::Abnormal, false),
        ];
        for (rule, exit, restarts) in cases {
            let decision = supervision(rule, 5, 60).on_exit(exit, t);
            assert_eq!(
                matches!(decision, Decision::Restart(_)),
                restarts,
                "{rule} {exit:?}"
            );
            if !restarts {
                assert_eq!(decision, Decision::Stop);
            }
        }
    }

    #[test]
    fn more_than_max_restarts_in_the_window_fails_with_doubling_delays() {
        let mut s = supervision("permanent", 3, 60);
        let t = Instant::now();
        let delays: Vec<_> = (0..3).map(|_| s.on_exit(Exit::Abnormal, t)).collect();
        let ms = |n| Decision::Restart(Duration::from_millis(n));
        assert_eq!(delays, [ms(100), ms(200), ms(400)]);
        assert_eq!(s.on_exit(Exit::Abnormal, t), Decision::Fail);
        s.reset();
        assert_eq!(s.on_exit(Exit::Abnormal, t), ms(100));
    }

    #[test]
    fn restarts_older_than_the_window_are_forgotten() {
        let mut s = supervision("permanent", 2, 10);
        let t = Instant::now();
        s.on_exit(Exit::Abnormal, t);
        s.on_exit(Exit::Abnormal, t + Duration::from_secs(5));
        let later = t + Duration::from_secs(11);
        assert_eq!(
            s.on_exit(Exit::Abnormal, later),
            Decision::Restart(Duration::from_millis(200)),
            "one restart is still in the window"
        );
    }

    #[test]
    fn backoff_is_capped_at_30_seconds() {
        assert_eq!(backoff(0), Duration::from_millis(100));
        assert_eq!(backoff(8), Duration::from_millis(25_600));
        assert_eq!(backoff(9), BACKOFF_MAX);
        assert_eq!(backoff(1000), BACKOFF_MAX);
    }
}
