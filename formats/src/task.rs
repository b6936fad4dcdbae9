//! What is learned, and from what: the [`Task`], the [`Labels`] of some
//! rows, and how the host trains a `model` plugin ([`HostTraining`]).

use tensorlet_gpu::optim::{LrSchedule, Optimizer};

/// What is learned from the labels.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// A class per row.
    #[default]
    Classification,
    /// Continuous targets.
    Regression,
}

/// How the host trains a `model` plugin: the `[training]` optimizer and
/// learning-rate schedule.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HostTraining {
    /// The update rule, weight decay and clipping.
    pub optimizer: Optimizer,
    /// The learning rate of each step.
    pub schedule: LrSchedule,
    /// The loss: cross-entropy of the outputs as class logits against class
    /// indices, or the mean squared error against regression targets.
    pub task: Task,
}

/// The labels of some rows: class indices or regression targets.
#[derive(Clone, Debug, PartialEq)]
pub enum Labels {
    /// A class index per row.
    Classes(Vec<u32>),
    /// `width` targets per row, row-major.
    Targets {
        /// The targets.
        values: Vec<f32>,
        /// Targets per row.
        width: usize,
    },
}

impl Labels {
    /// The labels of rows `idx` of `all` (as [`crate::data::Dataset::label_values`]:
    /// regression with `width` targets per row).
    pub fn pick(task: Task, all: &[f32], width: usize, idx: &[u32]) -> Labels {
        match task {
            Task::Classification => {
                Labels::Classes(idx.iter().map(|&i| all[i as usize] as u32).collect())
            }
            Task::Regression => Labels::Targets {
                values: idx
                    .iter()
                    .flat_map(|&i| {
                        let at = i as usize * width;
                        all[at..at + width].iter().copied()
                    })
                    .collect(),
                width,
            },
        }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        match self {
            Labels::Classes(c) => c.len(),
            Labels::Targets { values, width } => values.len() / (*width).max(1),
        }
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The task these labels are for.
    pub fn task(&self) -> Task {
        match self {
            Labels::Classes(_) => Task::Classification,
            Labels::Targets { .. } => Task::Regression,
        }
    }
}
