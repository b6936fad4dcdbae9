//! The data behind a chart, downsampled for the browser.
//!
//! A run of 10,000 epochs is not shipped point by point: [`downsample`]
//! keeps, for each of up to `max / 2` buckets of epochs, the epochs where
//! each series has its minimum and its maximum (so spikes and the best epoch
//! survive), plus the first and the last. The chart asks for the full
//! resolution of a range when it is zoomed in (`curves.json?from=&to=`).

use serde::Serialize;
use tensorlet_runtime::train::EpochMetrics;

/// One line of a chart.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Series {
    /// Its legend.
    pub label: String,
    /// One value per x (`null` where it has none).
    pub values: Vec<Option<f64>>,
}

/// What the page's script draws: aligned x values and series.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ChartData {
    /// The chart's title.
    pub title: String,
    /// The y axis label.
    pub y_label: String,
    /// Epochs.
    pub x: Vec<f64>,
    /// Lines.
    pub series: Vec<Series>,
    /// Points before downsampling.
    pub total: usize,
    /// Whether points were left out.
    pub downsampled: bool,
    /// Where the full resolution of a range comes from (`…&from=&to=`
    /// appended), for a chart of one run.
    pub detail: Option<String>,
}

/// Indices to keep of `len` aligned points so that at most about `max`
/// remain: per bucket, each series' minimum and maximum, plus the ends.
pub fn downsample(len: usize, series: &[&[Option<f64>]], max: usize) -> Vec<usize> {
    if len <= max.max(2) {
        return (0..len).collect();
    }
    let per_bucket = 2 * series.len().max(1);
    let buckets = (max / per_bucket).max(1);
    let mut keep = Vec::with_capacity(buckets * per_bucket + 2);
    keep.push(0);
    for b in 0..buckets {
        let (start, end) = (b * len / buckets, ((b + 1) * len / buckets).min(len));
        if start >= end {
            continue;
        }
        if series.is_empty() {
            keep.push(start);
            continue;
        }
        for s in series {
            let mut lo: Option<(usize, f64)> = None;
            let mut hi: Option<(usize, f64)> = None;
            for (i, v) in s[start..end].iter().enumerate() {
                let Some(v) = *v else { continue };
                if lo.is_none_or(|(_, l)| v < l) {
                    lo = Some((start + i, v));
                }
                if hi.is_none_or(|(_, h)| v > h) {
                    hi = Some((start + i, v));
                }
            }
            keep.extend(lo.map(|p| p.0));
            keep.extend(hi.map(|p| p.0));
            if lo.is_none() {
                keep.push(start);
            }
        }
    }
    keep.push(len - 1);
    keep.sort_unstable();
    keep.dedup();
    keep
}

/// A series of a chart: its label and how to read it from an epoch.
type Column = (&'static str, fn(&EpochMetrics) -> Option<f64>);

/// One run's points of a comparison: (epoch, a value per series).
type RunPoints = Vec<(u32, Vec<Option<f64>>)>;

/// Which metrics a chart shows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    /// Training and validation loss.
    Loss,
    /// Validation accuracy.
    Accuracy,
}

impl Metric {
    /// The name used in URLs.
    pub fn name(self) -> &'static str {
        match self {
            Metric::Loss => "loss",
            Metric::Accuracy => "accuracy",
        }
    }

    /// From its URL name.
    pub fn parse(s: &str) -> Option<Metric> {
        match s {
            "loss" => Some(Metric::Loss),
            "accuracy" => Some(Metric::Accuracy),
            _ => None,
        }
    }

    fn title(self) -> &'static str {
        match self {
            Metric::Loss => "Loss per epoch",
            Metric::Accuracy => "Validation metrics per epoch",
        }
    }

    /// (label, value) of each series this chart draws for one epoch.
    fn columns(self) -> &'static [Column] {
        match self {
            Metric::Loss => &[
                ("train_loss", |m| Some(f64::from(m.train_loss))),
                ("val_loss", |m| m.val_loss.map(f64::from)),
            ],
            // Accuracy, then the task metrics a run records (`val_metrics`):
            // classification's macro-F1 and AUC, regression's R².
            Metric::Accuracy => &[
                ("val_accuracy", |m| m.val_accuracy.map(f64::from)),
                ("val_f1_macro", |m| task_metric(m, "f1_macro")),
                ("val_auc", |m| task_metric(m, "auc")),
                ("val_r2", |m| task_metric(m, "r2")),
            ],
        }
    }
}

fn task_metric(m: &EpochMetrics, name: &str) -> Option<f64> {
    m.val_metrics.get(name).map(|&v| f64::from(v))
}

/// The chart of one run's `metric`, epochs `from..=to`, at most about `max`
/// points. `detail` is the URL the full resolution of a range comes from.
pub fn run_chart(
    history: &[EpochMetrics],
    metric: Metric,
    range: Option<(u32, u32)>,
    max: usize,
    detail: Option<String>,
) -> ChartData {
    let slice: Vec<&EpochMetrics> = history
        .iter()
        .filter(|m| range.is_none_or(|(a, b)| (a..=b).contains(&m.epoch)))
        .collect();
    let columns: Vec<Vec<Option<f64>>> = metric
        .columns()
        .iter()
        .map(|(_, f)| slice.iter().map(|m| f(m)).collect())
        .collect();
    let refs: Vec<&[Option<f64>]> = columns.iter().map(Vec::as_slice).collect();
    let keep = downsample(slice.len(), &refs, max);
    ChartData {
        title: metric.title().to_string(),
        y_label: metric.name().to_string(),
        x: keep.iter().map(|&i| f64::from(slice[i].epoch)).collect(),
        // The first series always; the others where the run recorded them.
        series: metric
            .columns()
            .iter()
            .zip(&columns)
            .enumerate()
            .filter(|(c, (_, values))| *c == 0 || values.iter().any(Option::is_some))
            .map(|(_, ((label, _), values))| Series {
                label: label.to_string(),
                values: keep.iter().map(|&i| values[i]).collect(),
            })
            .collect(),
        total: slice.len(),
        downsampled: keep.len() < slice.len(),
        detail,
    }
}

/// Several runs' `metric` overlaid on one epoch axis.
pub fn compare_chart(runs: &[(String, &[EpochMetrics])], metric: Metric, max: usize) -> ChartData {
    let per_run = (max / runs.len().max(1)).max(2);
    let mut picked: Vec<(String, Vec<String>, RunPoints)> = Vec::new();
    let mut total = 0;
    let mut epochs = std::collections::BTreeSet::new();
    for (id, history) in runs {
        let one = run_chart(history, metric, None, per_run, None);
        total += one.total;
        let points: RunPoints = one
            .x
            .iter()
            .enumerate()
            .map(|(i, x)| (*x as u32, one.series.iter().map(|s| s.values[i]).collect()))
            .collect();
        epochs.extend(points.iter().map(|p| p.0));
        let labels: Vec<String> = one.series.iter().map(|s| s.label.clone()).collect();
        picked.push((id.clone(), labels, points));
    }
    let x: Vec<u32> = epochs.into_iter().collect();
    let mut series = Vec::new();
    for (id, labels, points) in &picked {
        for (c, label) in labels.iter().enumerate() {
            let by_epoch: std::collections::HashMap<u32, Option<f64>> =
                points.iter().map(|(e, v)| (*e, v[c])).collect();
            series.push(Series {
                label: format!("{id} {label}"),
                values: x
                    .iter()
                    .map(|e| by_epoch.get(e).copied().flatten())
                    .collect(),
            });
        }
    }
    ChartData {
        title: metric.title().to_string(),
        y_label: metric.name().to_string(),
        downsampled: x.len() < total,
        x: x.into_iter().map(f64::from).collect(),
        series,
        total,
        detail: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn history(n: u32) -> Vec<EpochMetrics> {
        (1..=n)
            .map(|e| EpochMetrics {
                epoch: e,
                train_loss: 1.0 / e as f32,
                val_loss: Some(if e == n / 3 { 9.0 } else { 1.0 / e as f32 }),
                val_accuracy: Some(e as f32 / n as f32),
                val_metrics: Default::default(),
                seconds: 0.01,
            })
            .collect()
    }

    #[test]
    fn short_runs_are_kept_whole() {
        let c = run_chart(&history(12), Metric::Loss, None, 1000, None);
        assert_eq!(c.x, (1..=12).map(f64::from).collect::<Vec<_>>());
        assert!(!c.downsampled);
        assert_eq!(c.series.len(), 2);
        assert_eq!(c.series[0].values[1], Some(0.5));
    }

    #[test]
    fn long_runs_are_downsampled_keeping_ends_and_spikes() {
        let h = history(10_000);
        let c = run_chart(&h, Metric::Loss, None, 1000, Some("/x".into()));
        assert!(c.downsampled);
        assert!(c.x.len() <= 1002, "{}", c.x.len());
        assert_eq!(c.x.first(), Some(&1.0));
        assert_eq!(c.x.last(), Some(&10_000.0));
        // The val_loss spike at epoch 3333 survives.
        let i = c.x.iter().position(|&x| x == 3333.0).expect("spike kept");
        assert_eq!(c.series[1].values[i], Some(9.0));
        assert_eq!(c.total, 10_000);
        // A zoomed range at full resolution.
        let z = run_chart(&h, Metric::Loss, Some((100, 199)), 1000, None);
        assert_eq!(z.x.len(), 100);
        assert!(!z.downsampled);
    }

    #[test]
    fn compared_runs_share_the_epoch_axis() {
        let (a, b) = (history(5), history(3));
        let c = compare_chart(
            &[("a".into(), a.as_slice()), ("b".into(), b.as_slice())],
            Metric::Accuracy,
            1000,
        );
        assert_eq!(c.x, [1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(c.series.len(), 2);
        assert_eq!(c.series[1].label, "b val_accuracy");
        assert_eq!(c.series[1].values[4], None);
        assert_eq!(c.series[0].values[4], Some(1.0));
    }

    #[test]
    fn the_task_metrics_a_run_recorded_are_drawn() {
        let regression: Vec<EpochMetrics> = (1..=4)
            .map(|e| EpochMetrics {
                epoch: e,
                train_loss: 10.0 / e as f32,
                val_loss: Some(9.0 / e as f32),
                val_accuracy: None,
                val_metrics: [("r2".to_string(), e as f32 / 10.0)].into_iter().collect(),
                seconds: 0.01,
            })
            .collect();
        let c = run_chart(&regression, Metric::Accuracy, None, 1000, None);
        let labels: Vec<&str> = c.series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["val_accuracy", "val_r2"]);
        assert_eq!(c.series[1].values[3], Some(0.4f32 as f64));
        let both = compare_chart(
            &[
                ("r".into(), regression.as_slice()),
                ("c".into(), history(2).as_slice()),
            ],
            Metric::Accuracy,
            1000,
        );
        let labels: Vec<&str> = both.series.iter().map(|s| s.label.as_str()).collect();
        assert_eq!(labels, ["r val_accuracy", "r val_r2", "c val_accuracy"]);
    }
}
