//! Adaptive batching (`serve --batch-delay`): the concurrent requests of one
//! model version are coalesced into one preprocessor + predictor call, as
//! Triton's dynamic batcher does, and the call's rows are split back per
//! request.
//!
//! A request that finds no batch forming starts one: it spawns the batch's
//! leader and waits with the others. The leader lets the batch fill, then
//! takes the waiting requests, up to `--max-batch` rows, into one call. With
//! a delay of 0 it fills for one round of its worker (tokio's yield: the
//! worker's other ready requests are read and queued first, then it checks
//! for I/O), so a lone request waits for nothing more than that check while
//! under load a call carries a round of requests; a longer delay waits that
//! long, or until the rows reach `--max-batch`. Requests still waiting when
//! the leader takes its batch get a leader of their own at once.
//!
//! What is per request stays per request. A batched call that fails is run
//! again one request at a time, so that the request whose values made it fail
//! (a missing value its preprocessor refuses, a row that traps the plugin)
//! gets its own error and the others their predictions; only a call that ran
//! past its deadline or a failed device answers every request of the batch
//! with its error (run again singly it would cost a deadline per request),
//! and counts once against the model's circuit breaker. Capacity is taken per
//! call: a batch holds one of `--max-concurrency` and one of its model's
//! share, and requests waiting for a batch are bounded by the model's share
//! times `--max-batch` rows.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, oneshot};

use super::{Deployment, Outcome, Server};
use crate::error::{PluginFailure, RuntimeError};
use crate::model::Predictions;

/// A model version's requests waiting for a batch.
#[derive(Default)]
pub(super) struct Queue {
    waiting: Mutex<Waiting>,
    /// Wakes a leader that waits out a delay once the rows fill a batch.
    full: Notify,
}

#[derive(Default)]
struct Waiting {
    requests: VecDeque<Waiter>,
    rows: usize,
    /// Whether a leader will take the waiting requests.
    led: bool,
}

/// One request waiting for its batch.
struct Waiter {
    x: Vec<f32>,
    rows: usize,
    done: oneshot::Sender<Outcome>,
}

/// Parses `--batch-delay`: `off` (no batching), `0` (one round of the
/// worker), or a duration such as `500us` or `2ms`.
pub fn parse_batch_delay(text: &str) -> Result<Option<Duration>, String> {
    match text.trim() {
        "off" | "false" => Ok(None),
        "0" | "0s" => Ok(Some(Duration::ZERO)),
        t => {
            let d = crate::parse_duration(t).map_err(|_| {
                format!(
                    "`{text}` is not a batch delay; write `off`, `0` (one round of the \
                     worker) or a duration such as `500us` or `2ms`"
                )
            })?;
            if d > Duration::from_secs(1) {
                return Err(format!(
                    "a batch delay of `{text}` would hold every request that long; give at \
                     most 1s (a few milliseconds at most is usual)"
                ));
            }
            Ok(Some(d))
        }
    }
}

/// Computes `rows` rows of `x` in a batch with the model's other requests.
pub(super) async fn submit(
    s: &Arc<Server>,
    d: &Arc<Deployment>,
    x: Vec<f32>,
    rows: usize,
    delay: Duration,
) -> Outcome {
    let (done, answer) = oneshot::channel();
    let max = s.config.max_batch.max(1);
    {
        let mut w = d.queue.waiting.lock().expect("batch lock");
        let limit = max.saturating_mul(s.model_share());
        if !w.requests.is_empty() && w.rows + rows > limit {
            let message = format!(
                "model `{}` has {} rows waiting for a batch, its limit (its share of \
                 --max-concurrency times --max-batch); retry shortly",
                d.name, w.rows
            );
            return Outcome::Refused(message, 1);
        }
        w.requests.push_back(Waiter { x, rows, done });
        w.rows += rows;
        if !w.led {
            w.led = true;
            tokio::spawn(lead(s.clone(), d.clone(), delay));
        } else if w.rows >= max {
            d.queue.full.notify_one();
        }
    }
    answer.await.unwrap_or(Outcome::Stopped)
}

/// Lets a batch fill, takes it and computes it.
async fn lead(s: Arc<Server>, d: Arc<Deployment>, delay: Duration) {
    if delay.is_zero() {
        tokio::task::yield_now().await;
    } else {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = d.queue.full.notified() => {}
        }
    }
    let batch = take(&s, &d, delay);
    if !batch.is_empty() {
        compute(&s, &d, batch).await;
    }
}

/// The waiting requests, oldest first, up to `--max-batch` rows (at least
/// one request); those left get a leader of their own.
fn take(s: &Arc<Server>, d: &Arc<Deployment>, delay: Duration) -> Vec<Waiter> {
    let max = s.config.max_batch.max(1);
    let mut w = d.queue.waiting.lock().expect("batch lock");
    let mut batch = Vec::new();
    let mut rows = 0;
    while let Some(next) = w.requests.front() {
        if !batch.is_empty() && rows + next.rows > max {
            break;
        }
        rows += next.rows;
        batch.extend(w.requests.pop_front());
    }
    w.rows -= rows;
    if w.requests.is_empty() {
        w.led = false;
    } else {
        tokio::spawn(lead(s.clone(), d.clone(), delay));
    }
    batch
}

/// Computes `batch` in one call and answers each of its requests.
async fn compute(s: &Arc<Server>, d: &Arc<Deployment>, mut batch: Vec<Waiter>) {
    let capacity = match s.admit_call(d) {
        Ok(c) => c,
        Err(message) => {
            for w in batch {
                let _ = w.done.send(Outcome::Refused(message.clone(), 1));
            }
            return;
        }
    };
    s.metrics.batched(batch.len());
    if batch.len() == 1 {
        let w = batch.pop().expect("one request");
        let _ = w.done.send(super::predict(s, d, w.x, w.rows).await);
        return;
    }
    let rows = batch.iter().map(|w| w.rows).sum();
    let mut x = Vec::with_capacity(batch.iter().map(|w| w.x.len()).sum());
    for w in &batch {
        x.extend_from_slice(&w.x);
    }
    match super::predict(s, d, x, rows).await {
        Outcome::Predicted(p) => split(p, batch),
        Outcome::Failed { error, .. } if answers_all(&error) => {
            for (i, w) in batch.into_iter().enumerate() {
                let error = error.clone();
                let _ = w.done.send(Outcome::Failed {
                    error,
                    counts: i == 0,
                });
            }
        }
        Outcome::Failed { .. } => alone(s, d, batch).await,
        _ => {
            for w in batch {
                let _ = w.done.send(Outcome::Stopped);
            }
        }
    }
    drop(capacity);
}

/// Computes each request of a batch whose call failed on its own, so that
/// each gets its own outcome. Between two, the worker's other requests get
/// their turn; a request whose client has gone is not computed, and once the
/// model is shed (by these failures too) the rest are refused as a shed
/// model's requests are.
async fn alone(s: &Arc<Server>, d: &Arc<Deployment>, batch: Vec<Waiter>) {
    for w in batch {
        if w.done.is_closed() {
            continue;
        }
        let outcome = match d.breaker.admit(std::time::Instant::now()) {
            Err(shed) => {
                let message = format!("model `{}` is {}; retry later", d.name, shed.reason);
                Outcome::Refused(message, shed.retry_after)
            }
            Ok(_) => super::predict(s, d, w.x, w.rows).await,
        };
        let _ = w.done.send(outcome);
        tokio::task::yield_now().await;
    }
}

/// Whether a failed batched call's error is every request's: the device
/// failed, or the call ran past its deadline.
fn answers_all(error: &RuntimeError) -> bool {
    error.device_error().is_some()
        || matches!(
            error,
            RuntimeError::Plugin {
                failure: PluginFailure::Deadline(_),
                ..
            }
        )
}

/// Hands each request its rows of the batch's predictions.
fn split(p: Predictions, batch: Vec<Waiter>) {
    let mut labels = p.labels.into_iter();
    let mut probabilities = p.probabilities.into_iter();
    let mut values = p.values.into_iter();
    for w in batch {
        let part = Predictions {
            labels: labels.by_ref().take(w.rows).collect(),
            probabilities: probabilities.by_ref().take(w.rows).collect(),
            values: values.by_ref().take(w.rows).collect(),
        };
        let _ = w.done.send(Outcome::Predicted(part));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_delays_parse_with_their_meaning() {
        assert_eq!(parse_batch_delay("off"), Ok(None));
        assert_eq!(parse_batch_delay("0"), Ok(Some(Duration::ZERO)));
        assert_eq!(
            parse_batch_delay("500us"),
            Ok(Some(Duration::from_micros(500)))
        );
        assert_eq!(parse_batch_delay("2ms"), Ok(Some(Duration::from_millis(2))));
        let e = parse_batch_delay("soon").unwrap_err();
        assert!(e.contains("`soon` is not a batch delay"), "{e}");
        let e = parse_batch_delay("5s").unwrap_err();
        assert!(e.contains("at most 1s"), "{e}");
    }
}
