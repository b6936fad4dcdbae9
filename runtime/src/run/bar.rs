//! [`Bar`]: a run's progress on the terminal, as `tensorlet train` shows it.

use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use super::{Progress, summary};
use crate::train::EpochMetrics;

/// The run's id on stderr, then an indicatif bar over all steps with the
/// latest epoch's metrics.
pub struct Bar {
    name: String,
    bar: Option<ProgressBar>,
    epochs: u32,
    steps_per_epoch: u64,
}

impl Bar {
    /// A bar for a run of pipeline `name`.
    pub fn new(name: &str) -> Self {
        Bar {
            name: name.to_string(),
            bar: None,
            epochs: 0,
            steps_per_epoch: 0,
        }
    }

    fn bar(&mut self) -> &ProgressBar {
        self.bar.get_or_insert_with(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{prefix:>8} [{bar:30}] {pos}/{len} steps {elapsed_precise} {msg}",
                )
                .expect("valid template")
                .progress_chars("=> "),
            );
            bar.set_prefix(self.name.clone());
            bar.enable_steady_tick(Duration::from_millis(200));
            bar
        })
    }
}

impl Progress for Bar {
    fn started(&mut self, run_id: &str) {
        eprintln!("run {run_id}");
        self.bar();
    }

    fn resuming(&mut self, run_id: &str, done: u32, epochs: u32) {
        eprintln!("resuming run {run_id} after epoch {done} of {epochs}");
        self.bar();
    }

    fn start(&mut self, epochs: u32, steps_per_epoch: u64) {
        self.epochs = epochs;
        self.steps_per_epoch = steps_per_epoch;
        self.bar().set_length(u64::from(epochs) * steps_per_epoch);
    }

    fn resumed(&mut self, completed: &[EpochMetrics]) {
        let done = completed.len() as u64 * self.steps_per_epoch;
        self.bar().set_position(done);
        if let Some(m) = completed.last() {
            self.epoch(m);
        }
    }

    fn step(&mut self, _epoch: u32, _loss: f32) {
        self.bar().inc(1);
    }

    fn note(&mut self, message: &str) {
        self.bar().suspend(|| eprintln!("{message}"));
    }

    fn epoch(&mut self, m: &EpochMetrics) {
        let message = summary::epoch(m, self.epochs);
        self.bar().set_message(message);
    }

    fn finish(&mut self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn epoch(n: u32) -> EpochMetrics {
        let mut m = EpochMetrics::new(n, 0.5, None, 0.1);
        m.val_loss = Some(0.25);
        m.val_accuracy = Some(0.75);
        m
    }

    #[test]
    fn counts_every_step_of_every_epoch() {
        let mut b = Bar::new("iris");
        b.start(4, 10);
        for _ in 0..15 {
            b.step(1, 0.5);
        }
        b.epoch(&epoch(1));
        let bar = b.bar.as_ref().expect("started");
        assert_eq!(bar.length(), Some(40));
        assert_eq!(bar.position(), 15);
        assert_eq!(bar.prefix(), "iris");
        assert_eq!(
            bar.message(),
            "epoch 1/4 loss 0.5000 val_loss 0.2500 val_accuracy 0.7500"
        );
        b.finish();
        assert!(b.bar.as_ref().expect("kept").is_finished());
    }

    #[test]
    fn a_resumed_run_starts_after_its_completed_epochs() {
        let mut b = Bar::new("iris");
        b.start(5, 8);
        b.resumed(&[epoch(1), epoch(2)]);
        let bar = b.bar.as_ref().expect("started");
        assert_eq!(bar.position(), 16);
        assert!(bar.message().starts_with("epoch 2/5 "), "{}", bar.message());
    }
}
