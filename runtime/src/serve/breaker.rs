//! The circuit breaker of one served model version: after
//! [`BreakerConfig::failures`] requests in a row fail in a way only the
//! model can cause (past the deadline, trapped, over a memory limit), the
//! model is shed (its requests answered 503 with `Retry-After` and the
//! reason, at no cost) for [`BreakerConfig::cool_down`]; then one request
//! is let through as a probe: its success closes the breaker, its failure
//! sheds the model for another cool-down. Other models are not affected.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::error::{PluginFailure, RuntimeError};

/// When a model is shed, and for how long.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Failures in a row that shed the model (default 5; 0 never sheds).
    pub failures: u32,
    /// How long a shed model's requests are refused before a probe is let
    /// through (default 30 s).
    pub cool_down: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failures: 5,
            cool_down: Duration::from_secs(30),
        }
    }
}

/// What the model did, when a failed request counts against it: ran past
/// its deadline, trapped, exceeded a memory limit; not what the request sent
/// or the device did.
pub fn fault(error: &RuntimeError) -> Option<&PluginFailure> {
    match error {
        RuntimeError::Plugin {
            failure:
                failure @ (PluginFailure::Deadline(_)
                | PluginFailure::Memory(_)
                | PluginFailure::HostTensorMemory(_)
                | PluginFailure::Stack(_)
                | PluginFailure::Trap { .. }),
            ..
        } => Some(failure),
        _ => None,
    }
}

/// A request refused because its model is shed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shed {
    /// Whole seconds until a probe may be let through (at least 1).
    pub retry_after: u64,
    /// Why the model is shed.
    pub reason: String,
}

/// What a request may do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Run, the breaker being closed.
    Run,
    /// Run as the probe of a shed model.
    Probe,
}

/// A change of the breaker that the server reports (log, audit, metrics).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// The model is now shed, for this reason.
    Shed(String),
    /// A probe succeeded: the model serves again.
    Restored,
}

#[derive(Default)]
struct State {
    /// Failures in a row.
    failures: u32,
    /// Until when the model is shed; `None` while the breaker is closed.
    open_until: Option<Instant>,
    /// A probe is running.
    probing: bool,
    reason: String,
    trips: u64,
}

/// One model version's breaker.
pub struct Breaker {
    config: BreakerConfig,
    state: Mutex<State>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(config: BreakerConfig) -> Self {
        Breaker {
            config,
            state: Mutex::new(State::default()),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a request may run now: a ticket to report how it went, or
    /// the refusal.
    pub fn admit(&self, now: Instant) -> Result<Ticket<'_>, Shed> {
        let mut s = self.state();
        let admission = match s.open_until {
            None => Admission::Run,
            Some(until) if now >= until && !s.probing => {
                s.probing = true;
                Admission::Probe
            }
            Some(until) => {
                let left = until.saturating_duration_since(now);
                return Err(Shed {
                    retry_after: left.as_secs_f64().ceil().max(1.0) as u64,
                    reason: s.reason.clone(),
                });
            }
        };
        Ok(Ticket {
            breaker: self,
            admission,
            done: false,
        })
    }

    fn succeeded(&self, admission: Admission) -> Option<Change> {
        let mut s = self.state();
        s.failures = 0;
        if admission == Admission::Probe {
            s.probing = false;
            s.open_until = None;
            return Some(Change::Restored);
        }
        None
    }

    fn failed(&self, admission: Admission, what: &str, now: Instant) -> Option<Change> {
        let mut s = self.state();
        s.failures = s.failures.saturating_add(1);
        let reopen = admission == Admission::Probe;
        if reopen {
            s.probing = false;
        } else if s.open_until.is_some()
            || self.config.failures == 0
            || s.failures < self.config.failures
        {
            return None;
        }
        let cool = self.config.cool_down;
        s.open_until = Some(now + cool);
        s.trips += 1;
        s.reason = if reopen {
            format!(
                "shed for {cool:?} more: the probe request after the cool-down failed too ({what})"
            )
        } else {
            format!(
                "shed for {cool:?} after {} failed requests in a row (the last {what})",
                s.failures
            )
        };
        Some(Change::Shed(s.reason.clone()))
    }

    /// Why the model is shed, while it is.
    pub fn shed_reason(&self) -> Option<String> {
        let s = self.state();
        s.open_until.map(|_| s.reason.clone())
    }

    /// Times the model was shed.
    pub fn trips(&self) -> u64 {
        self.state().trips
    }
}

/// A request let through by [`Breaker::admit`]; say how it went. A probe
/// dropped unreported (its client went away) lets the next request probe.
pub struct Ticket<'a> {
    breaker: &'a Breaker,
    admission: Admission,
    done: bool,
}

impl Ticket<'_> {
    /// Whether this request is the probe of a shed model.
    pub fn admission(&self) -> Admission {
        self.admission
    }

    /// The request ran and did not fail by the model's doing.
    pub fn succeeded(mut self) -> Option<Change> {
        self.done = true;
        self.breaker.succeeded(self.admission)
    }

    /// The request failed by the model's doing (see [`fault`]); `what`
    /// says how, for the reason.
    pub fn failed(mut self, what: &str, now: Instant) -> Option<Change> {
        self.done = true;
        self.breaker.failed(self.admission, what, now)
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.done && self.admission == Admission::Probe {
            self.breaker.state().probing = false;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const COOL: Duration = Duration::from_secs(10);

    fn breaker() -> Breaker {
        Breaker::new(BreakerConfig {
            failures: 3,
            cool_down: COOL,
        })
    }

    fn fail(b: &Breaker, what: &str, now: Instant) -> Option<Change> {
        b.admit(now).unwrap().failed(what, now)
    }

    #[test]
    fn failures_in_a_row_shed_the_model_and_a_success_resets_the_count() {
        let b = breaker();
        let t0 = Instant::now();
        for _ in 0..2 {
            assert_eq!(fail(&b, "ran past its deadline", t0), None);
        }
        assert_eq!(b.admit(t0).unwrap().succeeded(), None);
        for _ in 0..2 {
            assert_eq!(fail(&b, "trapped", t0), None);
        }
        // Requests running when it trips report after it.
        let running = b.admit(t0).unwrap();
        assert_eq!(running.admission(), Admission::Run);
        let Some(Change::Shed(reason)) = fail(&b, "trapped", t0) else {
            panic!("the third failure in a row sheds");
        };
        assert_eq!(
            reason,
            "shed for 10s after 3 failed requests in a row (the last trapped)"
        );
        let refused = b.admit(t0 + Duration::from_millis(2500)).err().unwrap();
        assert_eq!(refused.retry_after, 8);
        assert_eq!(refused.reason, reason);
        assert_eq!(b.shed_reason(), Some(reason));
        assert_eq!(b.trips(), 1);
        assert_eq!(running.failed("trapped", t0), None);
        assert_eq!(b.trips(), 1);
    }

    #[test]
    fn after_the_cool_down_one_probe_runs_and_decides() {
        let b = breaker();
        let t0 = Instant::now();
        for _ in 0..3 {
            fail(&b, "ran past its deadline", t0);
        }
        let later = t0 + COOL;
        let probe = b.admit(later).unwrap();
        assert_eq!(probe.admission(), Admission::Probe);
        // Only one probe at a time.
        assert!(b.admit(later).is_err());
        let Some(Change::Shed(reason)) = probe.failed("trapped", later) else {
            panic!("a failed probe sheds again");
        };
        assert!(
            reason.contains("the probe request after the cool-down failed"),
            "{reason}"
        );
        assert_eq!(b.trips(), 2);
        assert!(b.admit(later + Duration::from_secs(9)).is_err());
        let again = later + COOL;
        // A probe whose client went away lets the next request probe.
        drop(b.admit(again).unwrap());
        let probe = b.admit(again).unwrap();
        assert_eq!(probe.admission(), Admission::Probe);
        assert_eq!(probe.succeeded(), Some(Change::Restored));
        assert_eq!(b.admit(again).unwrap().admission(), Admission::Run);
        assert_eq!(b.shed_reason(), None);
    }

    #[test]
    fn zero_failures_never_sheds() {
        let b = Breaker::new(BreakerConfig {
            failures: 0,
            cool_down: COOL,
        });
        let t0 = Instant::now();
        for _ in 0..100 {
            assert_eq!(fail(&b, "trapped", t0), None);
        }
        assert_eq!(b.admit(t0).unwrap().admission(), Admission::Run);
    }

    #[test]
    fn only_what_the_model_did_counts() {
        let plugin = |failure| RuntimeError::Plugin {
            plugin: "m".into(),
            call: "predict",
            failure,
        };
        let deadline = plugin(PluginFailure::Deadline(COOL));
        assert!(matches!(fault(&deadline), Some(PluginFailure::Deadline(d)) if *d == COOL));
        assert!(fault(&plugin(PluginFailure::Stack(1))).is_some());
        assert!(fault(&plugin(PluginFailure::Error("bad row".into()))).is_none());
        assert!(fault(&plugin(PluginFailure::NonFinite("nan".into()))).is_none());
        assert!(fault(&RuntimeError::Interrupted).is_none());
    }
}
