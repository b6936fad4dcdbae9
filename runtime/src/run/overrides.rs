//! The `[training]` options a command line overrides for a new run, and
//! why a resumed run takes none.

use anyhow::{Context, Result, bail};

use crate::pipeline::{Keep, TrainingConfig};

/// Options given for one run; each replaces the pipeline's when set.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Overrides {
    /// `epochs`.
    pub epochs: Option<u32>,
    /// `batch_size`.
    pub batch_size: Option<u32>,
    /// `learning_rate`.
    pub learning_rate: Option<f32>,
    /// `seed`.
    pub seed: Option<u64>,
    /// `keep`.
    pub keep: Option<Keep>,
    /// `stream = true`.
    pub stream: bool,
}

impl Overrides {
    /// Sets the options given in `training`, then checks the result.
    pub fn apply(&self, training: &mut TrainingConfig) -> Result<()> {
        let t = training;
        t.epochs = self.epochs.unwrap_or(t.epochs);
        t.batch_size = self.batch_size.unwrap_or(t.batch_size);
        t.learning_rate = self.learning_rate.unwrap_or(t.learning_rate);
        t.seed = self.seed.unwrap_or(t.seed);
        t.keep = self.keep.unwrap_or(t.keep);
        t.stream |= self.stream;
        t.validate()
            .map_err(anyhow::Error::msg)
            .context("invalid training options")
    }

    /// Refuses any option for a resumed run, naming its flag: a resumed run
    /// keeps its recorded options so that it ends as an uninterrupted run would.
    pub fn refuse_on_resume(&self) -> Result<()> {
        for (flag, given) in [
            ("--epochs", self.epochs.is_some()),
            ("--batch-size", self.batch_size.is_some()),
            ("--lr", self.learning_rate.is_some()),
            ("--seed", self.seed.is_some()),
            ("--keep", self.keep.is_some()),
            ("--stream", self.stream),
        ] {
            if given {
                bail!(
                    "{flag} cannot be combined with --resume: a resumed run keeps its recorded \
                     options so that it ends exactly as an uninterrupted run would; start a new \
                     run instead"
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn given_options_replace_the_pipeline_ones() {
        let mut t = TrainingConfig::default();
        let before = t.clone();
        Overrides::default().apply(&mut t).unwrap();
        assert_eq!(t, before);
        let o = Overrides {
            epochs: Some(7),
            learning_rate: Some(0.5),
            keep: Some(Keep::Last),
            ..Overrides::default()
        };
        o.apply(&mut t).unwrap();
        assert_eq!((t.epochs, t.learning_rate, t.keep), (7, 0.5, Keep::Last));
        assert_eq!((t.batch_size, t.seed), (before.batch_size, before.seed));
    }

    #[test]
    fn invalid_options_are_refused() {
        let mut t = TrainingConfig::default();
        let e = Overrides {
            epochs: Some(0),
            ..Overrides::default()
        }
        .apply(&mut t)
        .unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "invalid training options: training.epochs must be at least 1"
        );
    }

    #[test]
    fn a_resumed_run_takes_no_option() {
        assert!(Overrides::default().refuse_on_resume().is_ok());
        let e = Overrides {
            seed: Some(1),
            ..Overrides::default()
        }
        .refuse_on_resume()
        .unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--seed cannot be combined with --resume: a resumed run keeps"),
            "{e}"
        );
    }
}
