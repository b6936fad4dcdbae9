//! The metrics of each task, computed in f64 on the host: accuracy,
//! macro-F1, log-loss, ROC AUC and the confusion matrix for classification;
//! MSE, RMSE, MAE and R² for regression. Definitions follow scikit-learn's
//! (`accuracy_score`, `f1_score(average="macro")`, `log_loss`,
//! `roc_auc_score`, `mean_squared_error`, `r2_score`).

use std::collections::BTreeMap;

/// Metric values by name (`accuracy`, `f1_macro`, `rmse`, …).
pub type Metrics = BTreeMap<String, f32>;

/// Index of the first largest value.
pub fn argmax(row: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in row.iter().enumerate() {
        if v > row[best] {
            best = i;
        }
    }
    best
}

/// `counts[actual][predicted]` over `classes` classes.
pub fn confusion(actual: &[u32], predicted: &[u32], classes: usize) -> Vec<Vec<u64>> {
    let mut m = vec![vec![0u64; classes]; classes];
    for (&a, &p) in actual.iter().zip(predicted) {
        if (a as usize) < classes && (p as usize) < classes {
            m[a as usize][p as usize] += 1;
        }
    }
    m
}

/// The unweighted mean over classes of F1 = 2·TP / (2·TP + FP + FN), over
/// the classes that occur in `actual` or `predicted` (scikit-learn's
/// labels); a class with no true, predicted or actual rows scores 0.
pub fn f1_macro(confusion: &[Vec<u64>]) -> f64 {
    let k = confusion.len();
    let (mut sum, mut n) = (0.0, 0usize);
    for c in 0..k {
        let tp = confusion[c][c] as f64;
        let actual: u64 = confusion[c].iter().sum();
        let predicted: u64 = confusion.iter().map(|r| r[c]).sum();
        if actual == 0 && predicted == 0 {
            continue;
        }
        let denom = actual as f64 + predicted as f64;
        sum += if denom > 0.0 { 2.0 * tp / denom } else { 0.0 };
        n += 1;
    }
    if n == 0 { 0.0 } else { sum / n as f64 }
}

/// Area under the ROC curve of `scores` for the positive rows (ties count
/// one half: the Mann–Whitney statistic). `None` when only one class occurs.
pub fn roc_auc(positive: &[bool], scores: &[f32]) -> Option<f64> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average ranks (1-based) over runs of equal scores.
    let mut rank = vec![0.0f64; scores.len()];
    let mut i = 0;
    while i < order.len() {
        let mut j = i;
        while j + 1 < order.len() && scores[order[j + 1]] == scores[order[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for &o in &order[i..=j] {
            rank[o] = avg;
        }
        i = j + 1;
    }
    let pos = positive.iter().filter(|&&p| p).count();
    let neg = positive.len() - pos;
    if pos == 0 || neg == 0 {
        return None;
    }
    let rank_sum: f64 = positive
        .iter()
        .zip(&rank)
        .filter(|(p, _)| **p)
        .map(|(_, r)| r)
        .sum();
    let u = rank_sum - (pos * (pos + 1)) as f64 / 2.0;
    Some(u / (pos * neg) as f64)
}

/// Classification metrics of class probabilities `probs` (`rows ×
/// classes`, row-major) against `labels`: `log_loss` (probabilities clipped
/// at 1e-12 as the loss does), `accuracy`, `f1_macro`, and `auc` when there
/// are two classes and both occur.
pub fn classification(probs: &[f32], labels: &[u32], classes: usize) -> Metrics {
    let mut loss = 0.0f64;
    let predicted: Vec<u32> = probs
        .chunks(classes.max(1))
        .zip(labels)
        .map(|(row, &l)| {
            loss -= f64::from(row.get(l as usize).copied().unwrap_or(0.0).max(1e-12)).ln();
            argmax(row) as u32
        })
        .collect();
    let n = labels.len().max(1) as f64;
    let correct = predicted.iter().zip(labels).filter(|(p, l)| p == l).count();
    let cm = confusion(labels, &predicted, classes);
    let mut m = Metrics::new();
    m.insert("log_loss".into(), (loss / n) as f32);
    m.insert("accuracy".into(), (correct as f64 / n) as f32);
    m.insert("f1_macro".into(), f1_macro(&cm) as f32);
    if classes == 2 {
        let positive: Vec<bool> = labels.iter().map(|&l| l == 1).collect();
        let scores: Vec<f32> = probs.chunks(2).map(|r| r[1]).collect();
        if let Some(auc) = roc_auc(&positive, &scores) {
            m.insert("auc".into(), auc as f32);
        }
    }
    m
}

/// Regression metrics of `pred` against `target` (same length, row-major
/// with `width` targets per row): `mse`, `rmse`, `mae` and `r2` (1 − SSE/SST;
/// with constant targets 1 when the predictions are exact and 0 otherwise,
/// as scikit-learn's `r2_score`), each the mean over the targets.
pub fn regression(pred: &[f32], target: &[f32], width: usize) -> Metrics {
    let width = width.max(1);
    let rows = target.len() / width;
    let n = rows.max(1) as f64;
    let column = |v: &[f32], c: usize| -> Vec<f64> {
        v.iter()
            .skip(c)
            .step_by(width)
            .take(rows)
            .map(|&x| f64::from(x))
            .collect()
    };
    // Each target's metrics, then their mean (scikit-learn's
    // `multioutput = "uniform_average"`); one target is itself.
    let (mut mse, mut rmse, mut mae, mut r2) = (0.0f64, 0.0f64, 0.0f64, 0.0f64);
    for c in 0..width {
        let (p, t) = (column(pred, c), column(target, c));
        let mean = t.iter().sum::<f64>() / n;
        let (mut sse, mut sae, mut sst) = (0.0f64, 0.0f64, 0.0f64);
        for (&p, &t) in p.iter().zip(&t) {
            let d = p - t;
            sse += d * d;
            sae += d.abs();
            sst += (t - mean).powi(2);
        }
        mse += sse / n;
        rmse += (sse / n).sqrt();
        mae += sae / n;
        r2 += if sst > 0.0 {
            1.0 - sse / sst
        } else if sse == 0.0 {
            1.0
        } else {
            0.0
        };
    }
    let k = width as f64;
    let mut m = Metrics::new();
    m.insert("mse".into(), (mse / k) as f32);
    m.insert("rmse".into(), (rmse / k) as f32);
    m.insert("mae".into(), (mae / k) as f32);
    m.insert("r2".into(), (r2 / k) as f32);
    m
}

/// A promotion gate: `metric OP value`, e.g. `r2>=0.45` or `rmse < 60`.
#[derive(Clone, Debug, PartialEq)]
pub struct Requirement {
    /// The metric's name (`accuracy`, `r2`, `val_loss`, …).
    pub metric: String,
    /// The comparison.
    pub op: Comparison,
    /// The threshold.
    pub value: f64,
}

/// How a [`Requirement`] compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Comparison {
    /// `>=`
    AtLeast,
    /// `>`
    Above,
    /// `<=`
    AtMost,
    /// `<`
    Below,
}

impl Comparison {
    fn symbol(self) -> &'static str {
        match self {
            Comparison::AtLeast => ">=",
            Comparison::Above => ">",
            Comparison::AtMost => "<=",
            Comparison::Below => "<",
        }
    }
}

impl std::fmt::Display for Requirement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}{}", self.metric, self.op.symbol(), self.value)
    }
}

impl std::str::FromStr for Requirement {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "`{text}` is not a requirement; write `metric>=value`, `metric<value` and the \
                 like, e.g. `r2>=0.45` or `rmse<60`"
            )
        };
        let (at, op, len) = [
            (">=", Comparison::AtLeast),
            ("<=", Comparison::AtMost),
            (">", Comparison::Above),
            ("<", Comparison::Below),
        ]
        .iter()
        .find_map(|(sym, op)| text.find(sym).map(|at| (at, *op, sym.len())))
        .ok_or_else(bad)?;
        let metric = text[..at].trim();
        let value: f64 = text[at + len..].trim().parse().map_err(|_| bad())?;
        if metric.is_empty()
            || !metric
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
            || !value.is_finite()
        {
            return Err(bad());
        }
        Ok(Requirement {
            metric: metric.to_string(),
            op,
            value,
        })
    }
}

impl Requirement {
    /// Checks the requirement against `metrics`: `Ok(value)` when met, or a
    /// message saying why not (missed, or no such metric).
    pub fn check(&self, metrics: &Metrics) -> Result<f32, String> {
        let Some(&v) = metrics.get(&self.metric) else {
            let known: Vec<&str> = metrics.keys().map(String::as_str).collect();
            return Err(format!(
                "`{}` is not among the metrics: {}",
                self.metric,
                known.join(", ")
            ));
        };
        let x = f64::from(v);
        let met = match self.op {
            Comparison::AtLeast => x >= self.value,
            Comparison::Above => x > self.value,
            Comparison::AtMost => x <= self.value,
            Comparison::Below => x < self.value,
        };
        if met {
            Ok(v)
        } else {
            Err(format!("{} is {v}, and {self} is required", self.metric))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f32, b: f64) -> bool {
        (f64::from(a) - b).abs() < 1e-5
    }

    #[test]
    fn classification_matches_scikit_learn() {
        // y_true = [0, 1, 2, 2, 1, 0], y_pred = [0, 2, 2, 2, 1, 1]:
        // f1_score(average="macro") = (2/3 + 1/2 + 4/5) / 3.
        let probs = [
            0.7, 0.2, 0.1, //
            0.1, 0.3, 0.6, //
            0.2, 0.2, 0.6, //
            0.0, 0.1, 0.9, //
            0.1, 0.8, 0.1, //
            0.4, 0.5, 0.1,
        ];
        let m = classification(&probs, &[0, 1, 2, 2, 1, 0], 3);
        assert!(close(m["accuracy"], 4.0 / 6.0), "{m:?}");
        assert!(close(m["f1_macro"], (2.0 / 3.0 + 0.5 + 0.8) / 3.0), "{m:?}");
        let ll =
            -(0.7f64.ln() + 0.3f64.ln() + 0.6f64.ln() + 0.9f64.ln() + 0.8f64.ln() + 0.4f64.ln())
                / 6.0;
        assert!((f64::from(m["log_loss"]) - ll).abs() < 1e-4, "{m:?}");
        assert!(!m.contains_key("auc"));
    }

    #[test]
    fn auc_counts_ties_as_half() {
        // roc_auc_score([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) = 0.75
        let auc = roc_auc(&[false, false, true, true], &[0.1, 0.4, 0.35, 0.8]).unwrap();
        assert!((auc - 0.75).abs() < 1e-12);
        // roc_auc_score([0, 1, 0, 1], [0.5, 0.5, 0.2, 0.9]) = 0.875
        let auc = roc_auc(&[false, true, false, true], &[0.5, 0.5, 0.2, 0.9]).unwrap();
        assert!((auc - 0.875).abs() < 1e-12);
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]), None);
        let probs = [0.9, 0.1, 0.6, 0.4, 0.65, 0.35, 0.2, 0.8];
        let m = classification(&probs, &[0, 0, 1, 1], 2);
        assert!(close(m["auc"], 0.75), "{m:?}");
    }

    #[test]
    fn regression_matches_scikit_learn() {
        // y_true = [3, -0.5, 2, 7], y_pred = [2.5, 0.0, 2, 8]:
        // mean_squared_error = 0.375, mean_absolute_error = 0.5,
        // r2_score = 0.9486081370449679.
        let m = regression(&[2.5, 0.0, 2.0, 8.0], &[3.0, -0.5, 2.0, 7.0], 1);
        assert!(close(m["mse"], 0.375), "{m:?}");
        assert!(close(m["rmse"], 0.375f64.sqrt()), "{m:?}");
        assert!(close(m["mae"], 0.5), "{m:?}");
        assert!(close(m["r2"], 0.948_608_137_044_967_9), "{m:?}");
        assert_eq!(regression(&[1.0, 1.0], &[1.0, 1.0], 1)["r2"], 1.0);
    }

    #[test]
    fn several_targets_average_as_scikit_learn() {
        // y_true = [[0.5, 1], [-1, 1], [7, -6]], y_pred = [[0, 2], [-1, 2],
        // [8, -5]]: r2_score = 0.9368005266622779, mean_squared_error =
        // 0.7083333333333334, mean_absolute_error = 0.75,
        // root_mean_squared_error = 0.8227486121839513.
        let m = regression(
            &[0.0, 2.0, -1.0, 2.0, 8.0, -5.0],
            &[0.5, 1.0, -1.0, 1.0, 7.0, -6.0],
            2,
        );
        assert!(close(m["r2"], 0.936_800_526_662_277_9), "{m:?}");
        assert!(close(m["mse"], 0.708_333_333_333_333_4), "{m:?}");
        assert!(close(m["mae"], 0.75), "{m:?}");
        assert!(close(m["rmse"], 0.822_748_612_183_951_3), "{m:?}");
    }

    #[test]
    fn confusion_counts_actual_by_predicted() {
        assert_eq!(
            confusion(&[0, 1, 1, 2], &[0, 1, 2, 2], 3),
            [[1, 0, 0], [0, 1, 1], [0, 0, 1]]
        );
    }

    #[test]
    fn requirements_parse_and_check() {
        let r: Requirement = "r2>=0.45".parse().unwrap();
        assert_eq!(
            (r.metric.as_str(), r.op, r.value),
            ("r2", Comparison::AtLeast, 0.45)
        );
        let rmse: Requirement = " rmse < 60 ".parse().unwrap();
        assert_eq!(rmse.op, Comparison::Below);
        assert_eq!(rmse.to_string(), "rmse<60");
        for bad in ["r2", "r2>=", ">=1", "r2=0.4", "r 2>=1", "r2>=nan"] {
            assert!(bad.parse::<Requirement>().is_err(), "{bad}");
        }
        let m = regression(&[2.5, 0.0, 2.0, 8.0], &[3.0, -0.5, 2.0, 7.0], 1);
        assert!(r.check(&m).is_ok());
        let strict: Requirement = "r2>0.99".parse().unwrap();
        assert_eq!(
            strict.check(&m).unwrap_err(),
            format!("r2 is {}, and r2>0.99 is required", m["r2"])
        );
        let unknown: Requirement = "auc>=0.9".parse().unwrap();
        assert_eq!(
            unknown.check(&m).unwrap_err(),
            "`auc` is not among the metrics: mae, mse, r2, rmse"
        );
    }
}
