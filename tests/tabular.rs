//! Tables as people have them, through the CLI: a regression target, text
//! class labels, quoted fields, a delimiter, dropped columns, and the error
//! that asks for the task instead of training a continuous target as classes.

mod common;

use std::path::Path;

use common::*;
use serde_json::Value;

/// Trains `pipeline` on `csv` into `<home>/model`; returns stdout and the
/// saved `model.json`.
fn train(home: &Path, pipeline: &Path, csv: &Path) -> (String, Value) {
    let out = home.join("model");
    let stdout = ok(&tensorlet(
        home,
        &[
            "train",
            s(pipeline),
            "--data",
            s(csv),
            "--allow-unsigned",
            "--out",
            s(&out),
        ],
    ));
    let meta = serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
    (stdout, meta)
}

/// The metrics of the kept epoch.
fn kept(meta: &Value) -> &Value {
    let epoch = meta["epoch"].as_u64().unwrap();
    meta["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["epoch"].as_u64() == Some(epoch))
        .unwrap()
}

fn write(dir: &Path, name: &str, text: &str) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn diabetes_trains_as_regression_and_predicts_values() {
    let home = tempfile::tempdir().unwrap();
    let (stdout, meta) = train(home.path(), &pipeline("diabetes"), &data("diabetes.csv"));
    assert!(
        stdout.contains("trained diabetes: validation r2 0."),
        "{stdout}"
    );
    assert_eq!(meta["task"], "regression");
    let m = kept(&meta);
    let r2 = m["val_metrics"]["r2"].as_f64().unwrap();
    // scikit-learn's LinearRegression on this split scores about 0.5.
    assert!(r2 >= 0.45, "validation r2 {r2}");
    let (mse, rmse) = (
        m["val_loss"].as_f64().unwrap(),
        m["val_metrics"]["rmse"].as_f64().unwrap(),
    );
    assert!(
        (mse.sqrt() - rmse).abs() < 1e-2 * rmse,
        "mse {mse}, rmse {rmse}"
    );
    assert!(m["val_accuracy"].is_null());

    // `predict` prints one value per row; over all rows they explain the
    // target about as well as on the validation split.
    let model = home.path().join("model");
    let printed = ok(&tensorlet(
        home.path(),
        &[
            "predict",
            s(&model),
            "--input",
            s(&data("diabetes.csv")),
            "--allow-unsigned",
        ],
    ));
    let pred: Vec<f32> = printed.lines().map(|l| l.parse().unwrap()).collect();
    let text = std::fs::read_to_string(data("diabetes.csv")).unwrap();
    let target: Vec<f32> = text
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap().parse().unwrap())
        .collect();
    assert_eq!(pred.len(), 442);
    let all = tensorlet_runtime::metrics::regression(&pred, &target, 1);
    assert!(all["r2"] >= 0.45, "{all:?}");

    // The run records the task's metrics per epoch.
    let run = stdout
        .split("run ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap()
        .to_string();
    let shown = ok(&tensorlet(home.path(), &["runs", "show", &run]));
    assert!(
        shown.contains("VAL_R2") && shown.contains("VAL_RMSE"),
        "{shown}"
    );
}

#[test]
fn a_continuous_target_is_never_trained_as_classes() {
    let home = tempfile::tempdir().unwrap();
    let p = std::fs::read_to_string(pipeline("diabetes"))
        .unwrap()
        .replace("task = \"regression\"\n", "");
    let p = write(home.path(), "undeclared.toml", &p);
    let err = fails(&tensorlet(
        home.path(),
        &[
            "train",
            s(&p),
            "--data",
            s(&data("diabetes.csv")),
            "--allow-unsigned",
            "--out",
            s(&home.path().join("m")),
        ],
    ));
    assert!(
        err.contains("the label column `progression` holds 214 distinct whole numbers")
            && err.contains("declare [data] task = \"regression\""),
        "{err}"
    );
    assert!(!home.path().join("m").exists(), "nothing is written");
}

#[test]
fn breast_cancer_text_labels_train_a_binary_classifier() {
    let home = tempfile::tempdir().unwrap();
    let p = write(
        home.path(),
        "cancer.toml",
        &format!(
            r#"
[pipeline]
name = "cancer"
[data]
label = "diagnosis"
[preprocessor]
path = "{}"
[model]
path = "{}"
config = {{ hidden = [16] }}
[training]
epochs = 30
batch_size = 32
learning_rate = 0.01
optimizer = "adam"
"#,
            s(&plugin_path("standardize")),
            s(&plugin_path("mlp"))
        ),
    );
    let (stdout, meta) = train(home.path(), &p, &data("breast_cancer.csv"));
    assert!(stdout.contains("validation accuracy 0.9"), "{stdout}");
    assert_eq!(
        meta["class_names"],
        serde_json::json!(["benign", "malignant"])
    );
    let m = kept(&meta);
    assert!(m["val_accuracy"].as_f64().unwrap() >= 0.95, "{m}");
    assert!(m["val_metrics"]["auc"].as_f64().unwrap() >= 0.98, "{m}");
    assert!(
        m["val_metrics"]["f1_macro"].as_f64().unwrap() >= 0.94,
        "{m}"
    );
    let printed = ok(&tensorlet(
        home.path(),
        &[
            "predict",
            s(&home.path().join("model")),
            "--input",
            s(&data("breast_cancer.csv")),
            "--allow-unsigned",
        ],
    ));
    let text = std::fs::read_to_string(data("breast_cancer.csv")).unwrap();
    let truth: Vec<&str> = text
        .lines()
        .skip(1)
        .map(|l| l.rsplit(',').next().unwrap())
        .collect();
    let right = printed.lines().zip(&truth).filter(|(p, t)| p == *t).count();
    assert!(
        right as f64 / truth.len() as f64 >= 0.95,
        "{right}/{}",
        truth.len()
    );
    // `eval` counts the same rows right, on the diagonal of its confusion matrix.
    let model = home.path().join("model");
    let csv = data("breast_cancer.csv");
    let eval = |extra: &[&str]| {
        let mut a = vec!["eval", s(&model), "--data", s(&csv)];
        a.extend_from_slice(extra);
        a.push("--allow-unsigned");
        ok(&tensorlet(home.path(), &a))
    };
    let table = eval(&[]);
    assert!(
        table.contains("(569 rows, classification)") && table.contains("auc"),
        "{table}"
    );
    let e: Value = serde_json::from_str(&eval(&["--json"])).unwrap();
    assert_eq!(e["classes"], serde_json::json!(["benign", "malignant"]));
    let cm: Vec<Vec<u64>> = serde_json::from_value(e["confusion"].clone()).unwrap();
    assert_eq!(cm[0][0] + cm[1][1], right as u64, "{e}");
    assert_eq!(cm.iter().flatten().sum::<u64>(), 569);
}

/// Iris as people download it: species as text, a quoted free-text column
/// with commas, semicolons between fields.
#[test]
fn quoted_fields_a_delimiter_and_dropped_columns() {
    let home = tempfile::tempdir().unwrap();
    let names = ["setosa", "versicolor", "virginica"];
    let mut csv = String::from(
        "\u{feff}\"sepal; length\";sepal_width;petal_length;petal_width;note;species\n",
    );
    let iris = std::fs::read_to_string(data("iris.csv")).unwrap();
    for (i, l) in iris.lines().skip(1).enumerate() {
        let f: Vec<&str> = l.split(',').collect();
        let species = names[f[4].parse::<usize>().unwrap()];
        csv.push_str(&format!(
            "{};{};{};{};\"row {i}; \"\"measured\"\", by hand\";{species}\n",
            f[0], f[1], f[2], f[3]
        ));
    }
    let table = write(home.path(), "iris.csv", &csv);
    let p = write(
        home.path(),
        "iris.toml",
        &std::fs::read_to_string(pipeline("iris"))
            .unwrap()
            .replace(
                "[data]\nlabel = \"species\"\n",
                "[data]\nlabel = \"species\"\ndelimiter = \";\"\ndrop = [\"note\"]\n",
            )
            .replace(
                "bundled = \"standardize\"",
                &format!("path = \"{}\"", s(&plugin_path("standardize"))),
            )
            .replace(
                "bundled = \"softmax-regression\"",
                &format!("path = \"{}\"", s(&plugin_path("softmax_regression"))),
            ),
    );
    let (stdout, meta) = train(home.path(), &p, &table);
    assert!(stdout.contains("validation accuracy 0.9"), "{stdout}");
    assert_eq!(meta["feature_names"][0], "sepal; length");
    assert_eq!(meta["schema"].as_array().unwrap().len(), 4);
    // Declared class names keep their order.
    assert_eq!(meta["class_names"], serde_json::json!(names));

    // Prediction input with the columns in another order, comma-separated.
    let input = write(
        home.path(),
        "input.csv",
        "petal_width,petal_length,sepal_width,\"sepal; length\"\n0.2,1.4,3.5,5.1\n2.3,5.4,3.0,6.2\n",
    );
    let printed = ok(&tensorlet(
        home.path(),
        &[
            "predict",
            s(&home.path().join("model")),
            "--input",
            s(&input),
            "--allow-unsigned",
        ],
    ));
    assert_eq!(printed, "setosa\nvirginica\n");
    // The training table itself, with its own delimiter, for predict and eval.
    let model = home.path().join("model");
    let delimited = |command: &str, file: &str| {
        ok(&tensorlet(
            home.path(),
            &[
                command,
                s(&model),
                file,
                s(&table),
                "--delimiter",
                ";",
                "--allow-unsigned",
            ],
        ))
    };
    assert_eq!(delimited("predict", "--input").lines().count(), 150);
    let report = delimited("eval", "--data");
    assert!(report.contains("accuracy"), "{report}");
    // Read with the default comma, the table has one column only.
    let err = fails(&tensorlet(
        home.path(),
        &[
            "predict",
            s(&model),
            "--input",
            s(&table),
            "--allow-unsigned",
        ],
    ));
    assert!(err.contains("sepal_width"), "{err}");
}

#[test]
fn text_features_and_missing_values_are_refused_with_what_to_do() {
    let home = tempfile::tempdir().unwrap();
    let p = write(
        home.path(),
        "p.toml",
        &format!(
            "[pipeline]\nname = \"t\"\n[preprocessor]\npath = \"{}\"\n[model]\npath = \"{}\"\n",
            s(&plugin_path("standardize")),
            s(&plugin_path("softmax_regression"))
        ),
    );
    let mut text = String::from("color,size,y\n");
    let mut gaps = String::from("a,b,y\n");
    for i in 0..40 {
        text.push_str(&format!("{},{i},{}\n", ["red", "blue"][i % 2], i % 2));
        let a = if i == 7 {
            "NA".to_string()
        } else {
            i.to_string()
        };
        gaps.push_str(&format!("{a},{},{}\n", i * 2, i % 2));
    }
    let run = |csv: &Path| {
        fails(&tensorlet(
            home.path(),
            &[
                "train",
                s(&p),
                "--data",
                s(csv),
                "--allow-unsigned",
                "--out",
                s(&home.path().join("m")),
            ],
        ))
    };
    let err = run(&write(home.path(), "text.csv", &text));
    assert!(
        err.contains("column `color` holds text (categories)")
            && err.contains("bundled = \"one-hot\"\n  columns = [\"color\"]"),
        "{err}"
    );
    let err = run(&write(home.path(), "gaps.csv", &gaps));
    assert!(
        err.contains("column `a` still holds a missing value") && err.contains("`a` (1)"),
        "{err}"
    );
}

#[test]
fn a_chain_encodes_the_columns_it_names() {
    let home = tempfile::tempdir().unwrap();
    let mut csv = String::from("color,size,y\n");
    for i in 0..60 {
        // The class is the color; size is noise.
        csv.push_str(&format!(
            "{},{},{}\n",
            ["red", "blue"][i % 2],
            i * 7 % 13,
            i % 2
        ));
    }
    let csv = write(home.path(), "t.csv", &csv);
    let pipeline = |columns: &str| {
        write(
            home.path(),
            "p.toml",
            &format!(
                "[pipeline]\nname = \"t\"\n\
                 [[preprocessor]]\npath = \"{}\"\ncolumns = [{columns}]\n\
                 [[preprocessor]]\npath = \"{}\"\ncolumns = [\"size\"]\n\
                 [model]\npath = \"{}\"\n[training]\nepochs = 40\nlearning_rate = 0.5\n",
                s(&plugin_path("one_hot")),
                s(&plugin_path("standardize")),
                s(&plugin_path("softmax_regression"))
            ),
        )
    };
    let (stdout, meta) = train(home.path(), &pipeline("\"color\""), &csv);
    assert!(stdout.contains("trained t"), "{stdout}");
    // Two 0/1 columns for the colors, then the standardized size.
    assert_eq!(
        meta["plugins"]["preprocessor"]["columns"],
        serde_json::json!(["color"])
    );
    let acc = kept(&meta)["val_accuracy"].as_f64().unwrap();
    assert_eq!(acc, 1.0, "{meta}");

    // A column the table does not have at that stage is named, with the ones
    // it has.
    let err = fails(&tensorlet(
        home.path(),
        &[
            "train",
            s(&pipeline("\"colour\"")),
            "--data",
            s(&csv),
            "--allow-unsigned",
            "--out",
            s(&home.path().join("m2")),
        ],
    ));
    assert!(
        err.contains("[preprocessor]: columns: `colour` is not a feature column")
            && err.contains("color, size"),
        "{err}"
    );
}

#[test]
fn promote_require_gates_on_recorded_or_fresh_metrics() {
    let (home, _) = published_home();
    let h = home.path();
    let iris = data("iris.csv");
    ok(&tensorlet(
        h,
        &["train", "acme/iris", "--data", s(&iris), "--key", "alice"],
    ));
    let promote = |extra: &[&str]| {
        let mut a = vec!["promote", "acme/iris-model@0.1.0", "--to", "production"];
        a.extend_from_slice(extra);
        tensorlet(h, &a)
    };
    // A gate it cannot meet: refused, the alias not set, the refusal audited.
    let err = fails(&promote(&[
        "--require",
        "accuracy>=0.5",
        "--require",
        "f1_macro>1",
    ]));
    assert!(
        err.contains("not promoting acme/iris-model@0.1.0 to production: f1_macro is ")
            && err.contains("and f1_macro>1 is required (metrics recorded with the version)"),
        "{err}"
    );
    let err = fails(&promote(&["--require", "r2>=0"]));
    assert!(
        err.contains("`r2` is not among the metrics: accuracy, f1_macro"),
        "{err}"
    );
    // A malformed requirement is a usage error (exit 2), before anything runs.
    let out = promote(&["--require", "accuracy=0.9"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`accuracy=0.9` is not a requirement"), "{err}");
    let shown = fails(&tensorlet(h, &["show", "acme/iris-model@production"]));
    assert!(!shown.is_empty());
    let log = ok(&tensorlet(h, &["audit", "log", "--json"]));
    assert!(
        log.contains("promote.refused") && log.contains("f1_macro>1"),
        "{log}"
    );

    // Met, on the recorded metrics and on a fresh evaluation.
    let out = ok(&promote(&["--require", "val_accuracy>=0.8"]));
    assert!(out.contains("promoted acme/iris-model@production"), "{out}");
    ok(&promote(&[
        "--require",
        "accuracy>=0.8",
        "--data",
        s(&iris),
    ]));
    let log = ok(&tensorlet(h, &["audit", "log", "--json"]));
    assert!(
        log.contains("promote.gate") && log.contains("evaluated on"),
        "{log}"
    );

    // A version trained with a held-out test split is gated on its test
    // scores as `test_<metric>`.
    let text = std::fs::read_to_string(h.join("iris.toml")).unwrap();
    let with_test = text
        .replace("name = \"iris\"", "name = \"iris-t\"")
        .replace("[training]\n", "[training]\ntest_fraction = 0.2\n");
    let p = write(h, "iris-t.toml", &with_test);
    let out = ok(&tensorlet(
        h,
        &["train", s(&p), "--data", s(&iris), "--key", "alice"],
    ));
    assert!(out.contains("published acme/iris-t-model@0.1.0"), "{out}");
    let promote_t = |require: &str| {
        tensorlet(
            h,
            &[
                "promote",
                "acme/iris-t-model@0.1.0",
                "--to",
                "production",
                "--require",
                require,
            ],
        )
    };
    let err = fails(&promote_t("test_accuracy>1"));
    assert!(
        err.contains("test_accuracy is ")
            && err.contains("and test_accuracy>1 is required (metrics recorded with the version)"),
        "{err}"
    );
    let out = ok(&promote_t("test_accuracy>=0.5"));
    assert!(
        out.contains("promoted acme/iris-t-model@production"),
        "{out}"
    );
}

/// The penguins table as pandas writes it in another format.
fn penguins_as(ext: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/data/penguins.{ext}"))
}

#[test]
fn csv_parquet_and_json_lines_train_the_same_model() {
    let csv = data("penguins.csv");
    let from_csv = tensorlet_runtime::data::load_labeled(&csv, Some("species")).unwrap();
    for ext in ["parquet", "jsonl"] {
        let other =
            tensorlet_runtime::data::load_labeled(&penguins_as(ext), Some("species")).unwrap();
        assert_eq!(other.schema, from_csv.schema, "{ext}");
        assert_eq!(other.class_names, from_csv.class_names, "{ext}");
        assert_eq!(other.y, from_csv.y, "{ext}");
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&other.x), bits(&from_csv.x), "{ext}");
    }

    // A chain of preprocessors, each on its columns: the imputer fills the
    // gaps, the one-hot encoder the categories, standardize scales the
    // measurements; the text labels become classes, served by name.
    let mut digests = Vec::new();
    for file in [csv.clone(), penguins_as("parquet"), penguins_as("jsonl")] {
        let home = tempfile::tempdir().unwrap();
        let (stdout, meta) = train(home.path(), &pipeline("penguins"), &file);
        assert!(
            stdout.contains("trained penguins: validation accuracy"),
            "{stdout}"
        );
        assert_eq!(
            meta["class_names"],
            serde_json::json!(["Adelie", "Chinstrap", "Gentoo"])
        );
        let acc = kept(&meta)["val_accuracy"].as_f64().unwrap();
        assert!(
            acc >= 0.9,
            "validation accuracy {acc} from {}",
            file.display()
        );
        let missing: Vec<u64> = meta["schema"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["missing"].as_u64().unwrap())
            .collect();
        assert_eq!(missing, [0, 2, 2, 2, 2, 11]);
        let chain: Vec<&str> = std::iter::once(&meta["plugins"]["preprocessor"])
            .chain(meta["plugins"]["chain"].as_array().unwrap())
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        assert_eq!(chain, ["imputer", "one-hot", "imputer", "standardize"]);
        digests.push(meta["params_digest"].as_str().unwrap().to_string());

        // `predict` reads the same formats, and prints class names.
        let printed = ok(&tensorlet(
            home.path(),
            &[
                "predict",
                s(&home.path().join("model")),
                "--input",
                s(&file),
                "--allow-unsigned",
            ],
        ));
        assert_eq!(printed.lines().count(), 344);
        assert!(
            printed.lines().next().unwrap().starts_with("Adelie"),
            "{printed}"
        );
    }
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");
}

#[test]
fn dataset_add_records_the_columns_of_any_format() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let out = ok(&tensorlet(
        h,
        &["dataset", "add", "penguins", s(&penguins_as("parquet"))],
    ));
    assert!(
        out.contains("(344 rows, 7 features, 8 columns, parquet,"),
        "{out}"
    );
    let shown = ok(&tensorlet(h, &["dataset", "show", "penguins"]));
    let line = |name: &str| {
        shown
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no {name} in {shown}"))
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(
        line("island"),
        "island categorical 0 Biscoe, Dream, Torgersen"
    );
    assert_eq!(line("bill_length_mm"), "bill_length_mm numeric 2");
    assert_eq!(line("sex"), "sex categorical 11 female, male");
    let json: Value = serde_json::from_str(&ok(&tensorlet(
        h,
        &["dataset", "show", "penguins", "--json"],
    )))
    .unwrap();
    assert_eq!(json["schema"]["columns"][7]["name"], "year");

    // A regression table (its last column is no class label) registers too,
    // and a file no reader can read is refused with the reader's words.
    ok(&tensorlet(
        h,
        &["dataset", "add", "diabetes", s(&data("diabetes.csv"))],
    ));
    let bad = write(h, "bad.jsonl", "{\"a\": 1}\n{\"a\": [2]}\n");
    let err = fails(&tensorlet(h, &["dataset", "add", "bad", s(&bad)]));
    assert!(err.contains("bad.jsonl is not a readable table"), "{err}");
    assert!(
        err.contains(":2: the value of `a` is a nested array"),
        "{err}"
    );
    let list = ok(&tensorlet(h, &["dataset", "list"]));
    assert!(!list.contains("bad"), "{list}");
}

#[test]
fn a_published_chain_pins_every_stage_and_loads_from_the_registry() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let (_, public) = keygen(h, "alice");
    ok(&tensorlet(
        h,
        &["trust", "add", &public, "--namespace", "acme"],
    ));
    for (stem, name, kind) in [
        ("imputer", "acme/imputer", "preprocessor"),
        ("one_hot", "acme/one-hot", "preprocessor"),
        ("standardize", "acme/standardize", "preprocessor"),
        ("mlp", "acme/mlp", "trainer"),
    ] {
        ok(&publish_plugin(h, stem, name, kind, "alice"));
    }
    let text = std::fs::read_to_string(pipeline("penguins"))
        .unwrap()
        .replace(
            "name = \"penguins\"",
            "name = \"penguins\"\nnamespace = \"acme\"\nversion = \"1.0.0\"",
        )
        .replace("bundled = \"imputer\"", "ref = \"acme/imputer@1.0.0\"")
        .replace("bundled = \"one-hot\"", "ref = \"acme/one-hot@1.0.0\"")
        .replace(
            "bundled = \"standardize\"",
            "ref = \"acme/standardize@1.0.0\"",
        )
        .replace("bundled = \"mlp\"", "ref = \"acme/mlp@1.0.0\"");
    let p = write(h, "penguins.toml", &text);
    ok(&tensorlet(h, &["publish", s(&p), "--key", "alice"]));
    let csv = data("penguins.csv");
    let trained = ok(&tensorlet(
        h,
        &[
            "train",
            "acme/penguins",
            "--data",
            s(&csv),
            "--key",
            "alice",
            "--epochs",
            "20",
        ],
    ));
    assert!(trained.contains("acme/penguins-model@0.1.0"), "{trained}");

    // The model pins each stage of the chain; predicting loads them all
    // from the registry, verified.
    let lineage: Value = serde_json::from_str(&ok(&tensorlet(
        h,
        &["show", "acme/penguins-model", "--lineage", "--json"],
    )))
    .unwrap();
    let pinned: Vec<(&str, &str)> = lineage["plugins"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(role, l)| (role.as_str(), l["reference"].as_str().unwrap()))
        .collect();
    assert_eq!(
        pinned,
        [
            ("predictor", "acme/mlp@1.0.0"),
            ("preprocessor", "acme/imputer@1.0.0"),
            ("preprocessor.2", "acme/one-hot@1.0.0"),
            ("preprocessor.3", "acme/imputer@1.0.0"),
            ("preprocessor.4", "acme/standardize@1.0.0"),
            ("trainer", "acme/mlp@1.0.0"),
        ]
    );
    let printed = ok(&tensorlet(
        h,
        &["predict", "acme/penguins-model", "--input", s(&csv)],
    ));
    assert_eq!(printed.lines().count(), 344);
    // The lineage tree and the run name every stage, in chain order.
    let tree = ok(&tensorlet(h, &["show", "acme/penguins-model", "--lineage"]));
    let at = |needle: &str| {
        tree.find(needle)
            .unwrap_or_else(|| panic!("{needle}: {tree}"))
    };
    assert!(
        at("└ preprocessor ") < at("└ preprocessor.2") && at("└ preprocessor.4") < at("└ trainer")
    );
    let run_id = trained
        .split("; run ")
        .nth(1)
        .and_then(|r| r.split(')').next())
        .unwrap();
    let run = ok(&tensorlet(h, &["runs", "show", run_id]));
    assert!(
        run.contains("preprocessor.3") && run.contains("acme/standardize@1.0.0"),
        "{run}"
    );

    // An exported component composes the whole chain (tests/export.rs
    // compares its answers with `tensorlet serve`'s).
    let out = h.join("penguins.wasm");
    let exported = ok(&tensorlet(
        h,
        &[
            "export",
            "acme/penguins-model",
            "--wasi-http",
            "-o",
            s(&out),
        ],
    ));
    assert!(
        exported.contains("exported acme/penguins-model@0.1.0"),
        "{exported}"
    );
    assert!(out.exists());
}

#[test]
fn sandbox_limits_are_set_by_flag_or_pipeline() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let iris = data("iris.csv");
    let base = std::fs::read_to_string(pipeline("iris")).unwrap();
    let train_with = |p: &Path, extra: &[&str]| {
        let mut args = vec![
            "train",
            s(p),
            "--data",
            s(&iris),
            "--allow-unsigned",
            "--epochs",
            "1",
            "--out",
        ];
        let out = h.join("m");
        args.push(s(&out));
        args.extend_from_slice(extra);
        tensorlet(h, &args)
    };
    // A cap too small for one batch stops the call, and says what raises it.
    let plain = write(h, "plain.toml", &base);
    let err = fails(&train_with(&plain, &["--max-tensor-memory", "1 KiB"]));
    assert!(
        err.contains("held more than 1 KiB of host tensors")
            && err.contains("--max-tensor-memory (or the pipeline's [limits] max_tensor_memory)"),
        "{err}"
    );
    // The same from the pipeline; the flag overrides it.
    let capped = write(
        h,
        "capped.toml",
        &format!("{base}\n[limits]\nmax_tensor_memory = \"1 KiB\"\ndeadline = \"1m\"\n"),
    );
    let err = fails(&train_with(&capped, &[]));
    assert!(
        err.contains("held more than 1 KiB of host tensors"),
        "{err}"
    );
    ok(&train_with(&capped, &["--max-tensor-memory", "1GiB"]));
    // The whole process's budget of host tensors stops a call that would
    // take it past its limit, and says what raises it.
    let err = fails(&train_with(&plain, &["--max-memory", "1 KiB"]));
    assert!(
        err.contains(
            "could not hold more host tensors: that would take the process's budget \
                      of host tensors past 1 KiB"
        ) && err.contains("--max-memory raises the budget of the whole process"),
        "{err}"
    );
    // The deadline a model asks for when served is recorded with it.
    let served = write(
        h,
        "served.toml",
        &format!("{base}\n[limits]\nserve_deadline = \"250ms\"\n"),
    );
    ok(&train_with(&served, &[]));
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(h.join("m/model.json")).unwrap()).unwrap();
    assert_eq!(meta["serve_deadline"], "250ms", "{meta}");
    // A value that is no size or duration is refused before anything runs.
    let out = train_with(&plain, &["--deadline", "soon"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("`soon` is not a duration"), "{err}");
    let bad = write(
        h,
        "bad.toml",
        &format!("{base}\n[limits]\nmax_tensor_memory = \"lots\"\n"),
    );
    let err = fails(&train_with(&bad, &[]));
    assert!(
        err.contains("limits.max_tensor_memory: `lots` is not a size"),
        "{err}"
    );
}

#[test]
fn a_test_split_is_scored_once_and_never_selects() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let base = std::fs::read_to_string(pipeline("iris")).unwrap();
    let with_test = |fraction: &str| {
        base.replace(
            "[training]",
            &format!("[training]\ntest_fraction = {fraction}"),
        )
    };
    let p = write(h, "p.toml", &with_test("0.2"));
    let (stdout, meta) = train(h, &p, &data("iris.csv"));
    // 150 rows: 30 for test (10 per class), 30 for validation, 90 to train.
    let test = &meta["test"];
    assert_eq!(test["rows"], 30, "{meta}");
    assert_eq!(meta["split"], serde_json::json!([90, 30]));
    let acc = test["metrics"]["accuracy"].as_f64().unwrap();
    assert!(acc > 0.8, "{test}");
    assert!(test["metrics"]["log_loss"].is_number(), "{test}");
    assert!(
        stdout.contains(&format!("test accuracy {acc:.4}"))
            && stdout.contains("on 30 held-out rows (never used to select)"),
        "{stdout}"
    );
    // Fractions that leave nothing to train on are refused.
    let bad = write(h, "bad.toml", &with_test("0.9"));
    let err = fails(&tensorlet(
        h,
        &[
            "train",
            s(&bad),
            "--data",
            s(&data("iris.csv")),
            "--allow-unsigned",
            "--out",
            s(&h.join("x")),
        ],
    ));
    assert!(err.contains("leave no rows to train on"), "{err}");
}

#[test]
fn several_regression_targets_train_predict_and_evaluate() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    // Two linear targets of two features.
    let mut csv = String::from("a,b,y1,y2\n");
    for i in 0..200 {
        let (a, b) = ((i % 20) as f32 / 10.0 - 1.0, (i / 20) as f32 / 5.0 - 1.0);
        csv.push_str(&format!("{a},{b},{},{}\n", 2.0 * a + b, a - 3.0 * b + 1.0));
    }
    let table = write(h, "t.csv", &csv);
    let text = |task: &str| {
        format!(
            "[pipeline]\nname = \"two\"\n[data]\nlabel = [\"y1\", \"y2\"]\n{task}\n\
             [preprocessor]\npath = \"{}\"\n[model]\npath = \"{}\"\nconfig = {{ hidden = [] }}\n\
             [training]\nepochs = 150\nbatch_size = 20\nlearning_rate = 0.05\noptimizer = \"adam\"\n",
            s(&plugin_path("standardize")),
            s(&plugin_path("mlp"))
        )
    };
    let p = write(h, "p.toml", &text(""));
    let (stdout, meta) = train(h, &p, &table);
    assert!(stdout.contains("validation r2"), "{stdout}");
    assert_eq!(meta["task"], "regression");
    assert_eq!(meta["classes"], 2);
    assert_eq!(meta["targets"], serde_json::json!(["y1", "y2"]));
    assert_eq!(meta["feature_names"], serde_json::json!(["a", "b"]));
    let r2 = kept(&meta)["val_metrics"]["r2"].as_f64().unwrap();
    assert!(r2 > 0.99, "{meta}");

    let model = h.join("model");
    let printed = ok(&tensorlet(
        h,
        &[
            "predict",
            s(&model),
            "--input",
            s(&table),
            "--allow-unsigned",
        ],
    ));
    assert_eq!(printed.lines().count(), 200);
    assert!(
        printed.lines().all(|l| l.split(',').count() == 2),
        "{printed}"
    );
    let json: Value = serde_json::from_str(&ok(&tensorlet(
        h,
        &[
            "predict",
            s(&model),
            "--input",
            s(&table),
            "--json",
            "--allow-unsigned",
        ],
    )))
    .unwrap();
    let first = &json[0];
    // Row 0: a = -1, b = -1: y1 = -3, y2 = 3.
    assert!((first["y1"].as_f64().unwrap() + 3.0).abs() < 0.2, "{first}");
    assert!((first["y2"].as_f64().unwrap() - 3.0).abs() < 0.2, "{first}");
    let report: Value = serde_json::from_str(&ok(&tensorlet(
        h,
        &[
            "eval",
            s(&model),
            "--data",
            s(&table),
            "--json",
            "--allow-unsigned",
        ],
    )))
    .unwrap();
    assert!(report["metrics"]["r2"].as_f64().unwrap() > 0.99, "{report}");

    // Several label columns are regression targets, never classes.
    let classes = write(h, "c.toml", &text("task = \"classification\""));
    let err = fails(&tensorlet(
        h,
        &[
            "train",
            s(&classes),
            "--data",
            s(&table),
            "--allow-unsigned",
            "--out",
            s(&h.join("c")),
        ],
    ));
    assert!(
        err.contains("several label columns are several regression targets"),
        "{err}"
    );
}

/// A model's `feature_stats` as (mean, std) pairs.
fn feature_stats(meta: &Value) -> Vec<(f64, f64)> {
    meta["feature_stats"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["mean"].as_f64().unwrap(), s["std"].as_f64().unwrap()))
        .collect()
}

#[test]
fn training_streams_a_table_from_disk_in_chunks() {
    // The penguins chain (imputer, one-hot, imputer, standardize), streamed
    // from each format: the same rows in the same order train the same
    // params, every stage fitted in streaming passes.
    let in_memory = tempfile::tempdir().unwrap();
    let (_, whole) = train(
        in_memory.path(),
        &pipeline("penguins"),
        &data("penguins.csv"),
    );
    let mut digests = Vec::new();
    for file in [
        data("penguins.csv"),
        penguins_as("parquet"),
        penguins_as("jsonl"),
    ] {
        let home = tempfile::tempdir().unwrap();
        let out = home.path().join("model");
        let run = tensorlet(
            home.path(),
            &[
                "train",
                s(&pipeline("penguins")),
                "--data",
                s(&file),
                "--stream",
                "--allow-unsigned",
                "--out",
                s(&out),
            ],
        );
        let stdout = ok(&run);
        assert!(stdout.contains("validation accuracy"), "{stdout}");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(!stderr.contains("fitted on a sample"), "{stderr}");
        let meta: Value =
            serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
        let acc = kept(&meta)["val_accuracy"].as_f64().unwrap();
        assert!(
            acc >= 0.9,
            "validation accuracy {acc} from {}",
            file.display()
        );
        // What the model records of its data is what training in memory records.
        assert_eq!(meta["schema"], whole["schema"]);
        assert_eq!(meta["class_names"], whole["class_names"]);
        for (a, b) in feature_stats(&meta).iter().zip(feature_stats(&whole)) {
            assert!(
                (a.0 - b.0).abs() <= 1e-4 * b.0.abs().max(1.0),
                "{a:?} {b:?}"
            );
            assert!(
                (a.1 - b.1).abs() <= 1e-4 * b.1.abs().max(1.0),
                "{a:?} {b:?}"
            );
        }
        let printed = ok(&tensorlet(
            home.path(),
            &["predict", s(&out), "--input", s(&file), "--allow-unsigned"],
        ));
        let right = printed
            .lines()
            .zip(
                std::fs::read_to_string(data("penguins.csv"))
                    .unwrap()
                    .lines()
                    .skip(1),
            )
            .filter(|(p, row)| row.starts_with(p.split_whitespace().next().unwrap()))
            .count();
        assert!(right >= 320, "{right} of 344 predicted right");
        digests.push(meta["params_digest"].as_str().unwrap().to_string());
    }
    assert!(digests.iter().all(|d| *d == digests[0]), "{digests:?}");

    // A registered dataset streams from its snapshot, read in place.
    let home = tempfile::tempdir().unwrap();
    ok(&tensorlet(
        home.path(),
        &["dataset", "add", "penguins", s(&penguins_as("parquet"))],
    ));
    let out = home.path().join("model");
    ok(&tensorlet(
        home.path(),
        &[
            "train",
            s(&pipeline("penguins")),
            "--data",
            "penguins",
            "--stream",
            "--allow-unsigned",
            "--out",
            s(&out),
        ],
    ));
    let meta: Value =
        serde_json::from_slice(&std::fs::read(out.join("model.json")).unwrap()).unwrap();
    assert_eq!(meta["params_digest"].as_str().unwrap(), digests[0]);

    // A regression streams too.
    let home = tempfile::tempdir().unwrap();
    let stdout = ok(&tensorlet(
        home.path(),
        &[
            "train",
            s(&pipeline("diabetes")),
            "--data",
            s(&data("diabetes.csv")),
            "--stream",
            "--allow-unsigned",
            "--out",
            s(&home.path().join("model")),
        ],
    ));
    let r2: f64 = stdout
        .split("validation r2 ")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|r| r.parse().ok())
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(r2 > 0.3, "{stdout}");

    // A preprocessor that cannot fit in chunks (robust: quantiles) is fitted
    // on a sample, and says so; the imputer's median refuses to stream.
    let dir = tempfile::tempdir().unwrap();
    let iris = std::fs::read_to_string(pipeline("iris")).unwrap();
    let robust = write(
        dir.path(),
        "robust.toml",
        &iris.replace("bundled = \"standardize\"", "bundled = \"robust\""),
    );
    let run = tensorlet(
        dir.path(),
        &[
            "train",
            s(&robust),
            "--data",
            s(&data("iris.csv")),
            "--stream",
            "--epochs",
            "5",
            "--allow-unsigned",
            "--out",
            s(&dir.path().join("robust")),
        ],
    );
    ok(&run);
    let stderr = String::from_utf8_lossy(&run.stderr);
    // Iris has fewer training rows than the sample's size: all of them.
    assert!(
        stderr.contains("[preprocessor] `robust` cannot fit in chunks: fitted on all "),
        "{stderr}"
    );
    let median = write(
        dir.path(),
        "median.toml",
        &iris.replace(
            "bundled = \"standardize\"",
            "bundled = \"imputer\"\nconfig = { strategy = \"median\" }",
        ),
    );
    let err = fails(&tensorlet(
        dir.path(),
        &[
            "train",
            s(&median),
            "--data",
            s(&data("iris.csv")),
            "--stream",
            "--allow-unsigned",
            "--out",
            s(&dir.path().join("median")),
        ],
    ));
    assert!(
        err.contains("strategy = \"median\" needs every training row at once"),
        "{err}"
    );
}
