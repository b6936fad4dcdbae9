//! Registry and server answers as the CLI prints them: an artifact's
//! summary and manifest (`tensorlet show`), registered datasets and their
//! columns (`tensorlet dataset`), and a served model's drift scores
//! (`tensorlet drift`), predictions (`tensorlet predict`). Each view is a [`Display`](fmt::Display) or a
//! function returning text, so the command prints it and a test reads it.
//! [`listing`] lays out the registry's artifacts, trusted keys and keys.

pub mod listing;

use std::fmt;

use tensorlet_registry::{ArtifactSummary, Dataset, SignedManifest};

use crate::data::{ColumnType, SCHEMA_CATEGORIES, TableSchema};
use crate::model::{ModelMeta, Predictions};
use crate::run::history::training_options;

/// `tensorlet show`: an artifact version's summary and its signed manifest,
/// which this view does not verify (and says so).
pub struct ArtifactView<'a> {
    /// Where and when it was published, its aliases.
    pub summary: &'a ArtifactSummary,
    /// The manifest as signed.
    pub signed: &'a SignedManifest,
}

impl fmt::Display for ArtifactView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (summary, signed) = (self.summary, self.signed);
        let m = &signed.manifest;
        writeln!(f, "{} ({})", summary.reference(), summary.kind)?;
        writeln!(f, "  digest   {}", summary.digest)?;
        writeln!(f, "  key      {}", signed.key_id())?;
        writeln!(f, "  created  {}", summary.created)?;
        if summary.yanked {
            writeln!(f, "  yanked")?;
        }
        if !summary.aliases.is_empty() {
            writeln!(f, "  aliases  {}", summary.aliases.join(", "))?;
        }
        for (role, d) in &m.blobs {
            writeln!(f, "  blob     {role} {d}")?;
        }
        for (role, pin) in &m.depends {
            writeln!(f, "  depends  {role} {} {}", pin.reference, pin.digest)?;
        }
        let mut config = m.config.clone();
        if config.get("training").is_some() {
            config["training"] = training_options(&config["training"]);
        }
        writeln!(f, "  config   {config}")?;
        writeln!(f, "  lineage  {}", m.lineage)?;
        writeln!(
            f,
            "(not verified here; run `tensorlet verify {}`)",
            summary.reference()
        )
    }
}

/// What `tensorlet dataset add` says: registered with its shape, or
/// already registered with this content.
pub fn dataset_added(entry: &Dataset, schema: &TableSchema, added: bool) -> String {
    if !added {
        return format!(
            "dataset {} is already registered with this content",
            entry.reference()
        );
    }
    format!(
        "registered dataset {} ({} rows, {} features, {} columns, {}, {} bytes) from {}",
        entry.reference(),
        schema.rows,
        // With the label in the last column, as training reads it by default.
        schema.columns.len().saturating_sub(1),
        schema.columns.len(),
        schema.format,
        entry.size,
        entry.path
    )
}

/// Categories a column lists in `dataset show` before `…`.
const SHOWN_CATEGORIES: usize = 8;

/// `tensorlet dataset show`: a registered dataset and a table of its
/// columns (type, missing values, categories).
pub struct DatasetView<'a>(pub &'a Dataset);

impl fmt::Display for DatasetView<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let entry = self.0;
        writeln!(f, "dataset   {}", entry.reference())?;
        writeln!(f, "path      {}", entry.path)?;
        writeln!(f, "bytes     {}", entry.size)?;
        writeln!(f, "added     {}", entry.added)?;
        let schema: Option<TableSchema> = entry
            .schema
            .as_ref()
            .and_then(|s| serde_json::from_value(s.clone()).ok());
        let Some(schema) = schema else {
            return writeln!(
                f,
                "columns   not recorded (registered by an older tensorlet; `tensorlet \
                 dataset add` it again to record them)"
            );
        };
        writeln!(f, "format    {}", schema.format)?;
        writeln!(f, "rows      {}", schema.rows)?;
        writeln!(f)?;
        writeln!(
            f,
            "{:<24} {:<12} {:>8}  CATEGORIES",
            "COLUMN", "TYPE", "MISSING"
        )?;
        for c in &schema.columns {
            let categories = match &c.kind {
                ColumnType::Categorical { categories } => {
                    let shown: Vec<&str> = categories
                        .iter()
                        .take(SHOWN_CATEGORIES)
                        .map(String::as_str)
                        .collect();
                    let more = match categories.len() {
                        n if n >= SCHEMA_CATEGORIES => format!(", … ({n}+ in all)"),
                        n if n > SHOWN_CATEGORIES => format!(", … ({n} in all)"),
                        _ => String::new(),
                    };
                    format!("{}{more}", shown.join(", "))
                }
                _ => String::new(),
            };
            writeln!(
                f,
                "{:<24} {:<12} {:>8}  {}",
                c.name,
                c.type_name(),
                c.missing,
                categories
            )?;
        }
        Ok(())
    }
}

/// `tensorlet dataset list`: one line per dataset, or a hint when there is
/// none.
pub struct DatasetList<'a>(pub &'a [Dataset]);

impl fmt::Display for DatasetList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(
                f,
                "no datasets; register one with `tensorlet dataset add <name> <file>`"
            );
        }
        writeln!(
            f,
            "{:<20} {:<22} {:>10} {:<25} PATH",
            "NAME", "DIGEST", "BYTES", "ADDED"
        )?;
        for d in self.0 {
            writeln!(
                f,
                "{:<20} {:<22} {:>10} {:<25} {}",
                d.name,
                &d.digest[..d.digest.len().min(22)],
                d.size,
                d.added,
                d.path
            )?;
        }
        Ok(())
    }
}

/// The drift scores a server's `/metrics` text reports for the model served
/// as `name`: (version, score) in the order listed.
pub fn drift_scores(metrics: &str, name: &str) -> Vec<(String, f64)> {
    let prefix = format!("tensorlet_model_drift_score{{model=\"{name}\",version=\"");
    metrics
        .lines()
        .filter_map(|l| l.strip_prefix(&prefix))
        .filter_map(|rest| {
            let (version, value) = rest.split_once("\"} ")?;
            Some((version.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

/// What a drift score means for people.
pub fn drift_verdict(score: f64) -> &'static str {
    if score < 0.25 {
        "inputs look like the training data"
    } else if score < 1.0 {
        "inputs have shifted"
    } else {
        "inputs have drifted far from the training data"
    }
}

/// `tensorlet predict`'s output: per row the class name (classification) or
/// the targets comma-separated (regression); as JSON, per row
/// `{"label", "class", "probabilities"}`, or the target(s) by name.
pub struct PredictionView<'a> {
    /// What the model predicted.
    pub predictions: &'a Predictions,
    /// The label column (regression: the first target's).
    pub label: &'a str,
    /// A regression's targets when there are several.
    pub targets: Option<&'a [String]>,
    /// Class names by index, when the model has them.
    pub class_names: Option<&'a [String]>,
}

impl<'a> PredictionView<'a> {
    /// `predictions` as a model with `meta` names them.
    pub fn of(meta: &'a ModelMeta, predictions: &'a Predictions) -> Self {
        PredictionView {
            predictions,
            label: &meta.label,
            targets: meta.targets.as_deref(),
            class_names: meta.class_names.as_deref(),
        }
    }

    fn class(&self, label: u32) -> String {
        self.class_names
            .and_then(|n| n.get(label as usize).cloned())
            .unwrap_or_else(|| label.to_string())
    }

    /// The lines to print: one per row, or one JSON document.
    pub fn lines(&self, json: bool) -> Vec<String> {
        let p = self.predictions;
        let rows: Vec<serde_json::Value> = if !p.values.is_empty() {
            if !json {
                return p
                    .values
                    .iter()
                    .map(|v| v.iter().map(f32::to_string).collect::<Vec<_>>().join(","))
                    .collect();
            }
            // One target: `{"<label>": [value]}`; several: each by name.
            p.values
                .iter()
                .map(|v| match self.targets {
                    None => serde_json::json!({ self.label: v }),
                    Some(names) => names.iter().cloned().zip(v.iter().copied()).collect(),
                })
                .collect()
        } else {
            if !json {
                return p.labels.iter().map(|&l| self.class(l)).collect();
            }
            p.labels
                .iter()
                .zip(&p.probabilities)
                .map(|(&label, probs)| {
                    serde_json::json!({
                        "label": label,
                        "class": self.class(label),
                        "probabilities": probs,
                    })
                })
                .collect()
        };
        vec![serde_json::to_string_pretty(&rows).unwrap_or_default()]
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;
    use tensorlet_registry::{KeyPair, Kind, Manifest, Pin};

    use super::*;
    use crate::data::Column;

    #[test]
    fn an_artifact_shows_its_summary_and_manifest_with_short_training_options() {
        let mut m = Manifest::new("acme/iris-model", "0.1.0", Kind::Model).unwrap();
        m.blobs.insert("params".into(), "sha256:aa".into());
        m.depends.insert(
            "predictor".into(),
            Pin {
                reference: "acme/mlp@1.0.0".into(),
                digest: "sha256:bb".into(),
            },
        );
        m.config = json!({"training": {"epochs": 3, "batch_size": 8,
                                       "learning_rate": 0.10000000149011612, "seed": 1}});
        let signed = m.sign(&KeyPair::generate("ci").unwrap());
        let mut summary = ArtifactSummary {
            name: "acme/iris-model".into(),
            version: "0.1.0".into(),
            kind: Kind::Model,
            digest: "sha256:cc".into(),
            key_id: signed.key_id(),
            yanked: false,
            created: "2026-01-01T00:00:00Z".into(),
            aliases: vec!["production".into(), "staging".into()],
        };
        let text = ArtifactView {
            summary: &summary,
            signed: &signed,
        }
        .to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "acme/iris-model@0.1.0 (model)");
        assert_eq!(lines[1], "  digest   sha256:cc");
        assert_eq!(lines[2], format!("  key      {}", signed.key_id()));
        assert_eq!(lines[4], "  aliases  production, staging");
        assert_eq!(lines[5], "  blob     params sha256:aa");
        assert_eq!(lines[6], "  depends  predictor acme/mlp@1.0.0 sha256:bb");
        assert!(
            lines[7].contains("\"learning_rate\":0.1") && !lines[7].contains("0.100000"),
            "{text}"
        );
        assert_eq!(lines[8], "  lineage  {}");
        assert_eq!(
            lines[9],
            "(not verified here; run `tensorlet verify acme/iris-model@0.1.0`)"
        );
        summary.yanked = true;
        let text = ArtifactView {
            summary: &summary,
            signed: &signed,
        }
        .to_string();
        assert_eq!(text.lines().nth(4), Some("  yanked"));
    }

    fn dataset(schema: Option<&TableSchema>) -> Dataset {
        Dataset {
            name: "iris".into(),
            digest: format!("sha256:{}", "ab".repeat(32)),
            path: "/data/iris.csv".into(),
            size: 4551,
            added: "2026-01-01T00:00:00Z".into(),
            schema: schema.map(|s| serde_json::to_value(s).unwrap()),
        }
    }

    #[test]
    fn a_dataset_shows_its_columns_and_cuts_long_category_lists() {
        let many: Vec<String> = (0..12).map(|i| format!("c{i:02}")).collect();
        let all: Vec<String> = (0..SCHEMA_CATEGORIES).map(|i| format!("v{i:03}")).collect();
        let column = |name: &str, kind: ColumnType, missing: usize| Column {
            name: name.into(),
            kind,
            missing,
        };
        let schema = TableSchema {
            format: "csv".into(),
            rows: 150,
            columns: vec![
                column("sepal_length", ColumnType::Numeric, 2),
                column("colour", ColumnType::Categorical { categories: many }, 0),
                column("id", ColumnType::Categorical { categories: all }, 0),
                column(
                    "species",
                    ColumnType::Categorical {
                        categories: vec!["a".into(), "b".into()],
                    },
                    0,
                ),
            ],
        };
        let entry = dataset(Some(&schema));
        let text = DatasetView(&entry).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("dataset   iris@{}", entry.digest));
        assert_eq!(lines[4..7], ["format    csv", "rows      150", ""]);
        assert_eq!(
            lines[7],
            format!(
                "{:<24} {:<12} {:>8}  CATEGORIES",
                "COLUMN", "TYPE", "MISSING"
            )
        );
        assert_eq!(
            lines[8].trim_end(),
            format!("{:<24} {:<12} {:>8}", "sepal_length", "numeric", 2)
        );
        assert!(
            lines[9].ends_with("c00, c01, c02, c03, c04, c05, c06, c07, … (12 in all)"),
            "{text}"
        );
        assert!(lines[10].ends_with("v007, … (100+ in all)"), "{text}");
        assert!(lines[11].ends_with("  a, b"), "{text}");

        let old = DatasetView(&dataset(None)).to_string();
        assert!(old.ends_with("bytes     4551\nadded     2026-01-01T00:00:00Z\ncolumns   not recorded (registered by an older tensorlet; `tensorlet dataset add` it again to record them)\n"), "{old}");

        assert_eq!(
            dataset_added(&entry, &schema, true),
            format!(
                "registered dataset iris@{} (150 rows, 3 features, 4 columns, csv, 4551 bytes) from /data/iris.csv",
                entry.digest
            )
        );
        assert!(
            dataset_added(&entry, &schema, false)
                .ends_with(" is already registered with this content")
        );
    }

    #[test]
    fn the_dataset_list_cuts_digests_to_22_characters() {
        assert_eq!(
            DatasetList(&[]).to_string(),
            "no datasets; register one with `tensorlet dataset add <name> <file>`\n"
        );
        let text = DatasetList(&[dataset(None)]).to_string();
        let row: Vec<&str> = text.lines().nth(1).unwrap().split_whitespace().collect();
        assert_eq!(
            row,
            [
                "iris",
                "sha256:abababababababa",
                "4551",
                "2026-01-01T00:00:00Z",
                "/data/iris.csv"
            ]
        );
    }

    #[test]
    fn drift_scores_are_read_from_the_metrics_text_of_one_model() {
        let text = "# HELP tensorlet_model_drift_score drift\n\
                    tensorlet_model_drift_score{model=\"iris\",version=\"0.1.0\"} 0.125\n\
                    tensorlet_model_drift_score{model=\"iris2\",version=\"0.1.0\"} 3\n\
                    tensorlet_model_drift_score{model=\"iris\",version=\"0.2.0\"} 1.5\n\
                    tensorlet_model_drift_score{model=\"iris\",version=\"0.3.0\"} nonsense\n";
        assert_eq!(
            drift_scores(text, "iris"),
            [("0.1.0".to_string(), 0.125), ("0.2.0".to_string(), 1.5)]
        );
        assert!(drift_scores(text, "digits").is_empty());
        assert_eq!(drift_verdict(0.1), "inputs look like the training data");
        assert_eq!(drift_verdict(0.5), "inputs have shifted");
        assert_eq!(
            drift_verdict(1.0),
            "inputs have drifted far from the training data"
        );
    }

    #[test]
    fn predictions_print_as_class_names_or_targets_by_name() {
        let classes = Predictions {
            labels: vec![1, 0],
            probabilities: vec![vec![0.2, 0.8], vec![0.9, 0.1]],
            values: vec![],
        };
        let names = ["setosa".to_string(), "versicolor".to_string()];
        let view = PredictionView {
            predictions: &classes,
            label: "species",
            targets: None,
            class_names: Some(&names),
        };
        assert_eq!(view.lines(false), ["versicolor", "setosa"]);
        let j: serde_json::Value = serde_json::from_str(&view.lines(true)[0]).unwrap();
        assert_eq!(j[0]["class"], "versicolor");
        assert_eq!(
            (
                j[1]["label"].as_u64(),
                j[1]["probabilities"].as_array().map(Vec::len)
            ),
            (Some(0), Some(2))
        );
        let unnamed = PredictionView {
            class_names: None,
            ..view
        };
        assert_eq!(unnamed.lines(false), ["1", "0"]);

        let values = Predictions {
            labels: vec![],
            probabilities: vec![],
            values: vec![vec![1.5, -2.0]],
        };
        let targets = ["y1".to_string(), "y2".to_string()];
        let view = PredictionView {
            predictions: &values,
            label: "y1",
            targets: Some(&targets),
            class_names: None,
        };
        assert_eq!(view.lines(false), ["1.5,-2"]);
        let j: serde_json::Value = serde_json::from_str(&view.lines(true)[0]).unwrap();
        assert_eq!(j, json!([{"y1": 1.5, "y2": -2.0}]));
        let one = Predictions {
            values: vec![vec![3.0]],
            ..values.clone()
        };
        let view = PredictionView {
            predictions: &one,
            targets: None,
            ..view
        };
        let j: serde_json::Value = serde_json::from_str(&view.lines(true)[0]).unwrap();
        assert_eq!(j, json!([{"y1": [3.0]}]));
    }
}
