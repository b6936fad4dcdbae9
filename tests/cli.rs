//! The `tensorlet` binary as a user runs it.

mod common;

use std::io::BufRead;
use std::path::Path;
use std::process::{Output, Stdio};

use common::*;

#[test]
fn demo_reaches_the_target_accuracies() {
    let home = tempfile::tempdir().unwrap();
    let stdout = ok(&tensorlet(home.path(), &["demo", "--device", "cpu"]));
    for (name, target) in [
        ("iris", 0.95),
        ("digits", 0.95),
        ("digits-cnn", 0.985),
        ("sequences-transformer", 0.95),
    ] {
        let line = stdout
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")) && l.contains("validation accuracy"))
            .unwrap_or_else(|| panic!("no accuracy line for {name}:\n{stdout}"));
        let acc: f32 = line.split_whitespace().nth(3).unwrap().parse().unwrap();
        assert!(acc >= target, "{name}: {line}");
    }
    assert!(stdout.contains("predicted"), "{stdout}");
    // Everything ran from a throwaway signed registry, not the user's.
    assert!(
        stdout.contains("signed and published tensorlet/standardize@"),
        "{stdout}"
    );
    assert!(
        stdout.contains("predictions from the published models (tensorlet/iris-model@0.1.0"),
        "{stdout}"
    );
    assert!(stdout.contains("audit log OK"), "{stdout}");
    // The demo serves the published models and answers real OIP requests:
    // first and last rows of iris are a setosa and a virginica.
    assert!(
        stdout.contains("serving them at http://127.0.0.1:"),
        "{stdout}"
    );
    let iris = stdout
        .lines()
        .find(|l| l.contains("POST /v2/models/iris-model/infer"))
        .unwrap_or_else(|| panic!("no iris request in:\n{stdout}"));
    assert!(iris.contains("-> labels [0,2]"), "{iris}");
    assert!(!home.path().join("registry.db").exists());
    // The compiled components were cached under TENSORLET_HOME: one per
    // published plugin (everything published but the pipelines, one per
    // accuracy line).
    let published = stdout
        .lines()
        .find_map(|l| l.split_once("signed and published "))
        .unwrap()
        .1
        .split(", ")
        .count();
    let pipelines = stdout
        .lines()
        .filter(|l| l.contains(" validation accuracy "))
        .count();
    let cached = std::fs::read_dir(home.path().join("cache/components"))
        .unwrap()
        .count();
    assert_eq!(cached, published - pipelines, "{stdout}");
}

#[test]
fn demo_only_trains_the_pipelines_named() {
    let home = tempfile::tempdir().unwrap();
    let stdout = ok(&tensorlet(
        home.path(),
        &["demo", "--device", "cpu", "--only", "iris"],
    ));
    let trained: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(" validation accuracy "))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(trained, ["iris"], "{stdout}");
    assert!(stdout.contains("audit log OK"), "{stdout}");

    let out = tensorlet(home.path(), &["demo", "--only", "iris,nope"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("no bundled pipeline `nope`") && err.contains("digits-cnn"),
        "{err}"
    );
}

#[test]
fn train_then_predict_with_labels_and_json() {
    let home = tempfile::tempdir().unwrap();
    let model = home.path().join("iris-model");
    let stdout = ok(&tensorlet(
        home.path(),
        &[
            "train",
            s(&pipeline("iris")),
            "--data",
            s(&data("iris.csv")),
            "--out",
            s(&model),
            "--epochs",
            "50",
            "--allow-unsigned",
        ],
    ));
    assert!(
        stdout.contains("trained iris: validation accuracy"),
        "{stdout}"
    );
    // Local plugins ran only because --allow-unsigned was given, loudly.
    let unsigned_log = ok(&tensorlet(home.path(), &["audit", "log", "--json"]));
    let log: serde_json::Value = serde_json::from_str(&unsigned_log).unwrap();
    let unsigned = log
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "load.unsigned")
        .count();
    assert_eq!(unsigned, 3, "{unsigned_log}");
    assert!(stdout.contains("params sha256:"), "{stdout}");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(model.join("model.json")).unwrap()).unwrap();
    assert_eq!(meta["training"]["epochs"], 50);
    assert_eq!(meta["metrics"].as_array().unwrap().len(), 50);

    let labels = ok(&tensorlet(
        home.path(),
        &[
            "predict",
            s(&model),
            "--input",
            s(&data("iris.csv")),
            "--allow-unsigned",
        ],
    ));
    let lines: Vec<&str> = labels.lines().collect();
    assert_eq!(lines.len(), 150);
    assert_eq!(lines[0], "setosa");
    assert_eq!(lines[149], "virginica");

    let json_in = home.path().join("rows.json");
    std::fs::write(&json_in, "[[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]").unwrap();
    let out = ok(&tensorlet(
        home.path(),
        &[
            "predict",
            s(&model),
            "--input",
            s(&json_in),
            "--json",
            "--allow-unsigned",
        ],
    ));
    let rows: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(rows[0]["class"], "setosa");
    assert_eq!(rows[1]["label"], 2);
    assert_eq!(rows[1]["probabilities"].as_array().unwrap().len(), 3);
}

#[test]
fn bad_input_gets_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();

    let ragged = dir.join("ragged.csv");
    std::fs::write(&ragged, "a,b,label\n1,2,0\n3,1\n").unwrap();
    let unlabeled = dir.join("unlabeled.csv");
    std::fs::write(&unlabeled, "a,b,label\n1,2,0\n").unwrap();
    let err = fails(&tensorlet(
        dir,
        &[
            "train",
            s(&pipeline("iris")),
            "--data",
            s(&unlabeled),
            "--out",
            s(&dir.join("m")),
            "--allow-unsigned",
        ],
    ));
    assert!(
        err.contains("no label column `species`"),
        "the iris pipeline names its label column: {err}"
    );

    let p = dir.join("p.toml");
    std::fs::write(
        &p,
        "[pipeline]\nname = \"p\"\n[preprocessor]\nbundled = \"standardize\"\n\
         [trainer]\nbundled = \"mlp\"\n[predictor]\nbundled = \"mlp\"\n",
    )
    .unwrap();
    let err = fails(&tensorlet(
        dir,
        &[
            "train",
            s(&p),
            "--data",
            s(&ragged),
            "--out",
            s(&dir.join("m")),
            "--allow-unsigned",
        ],
    ));
    assert!(
        err.contains("ragged.csv:3: expected 3 columns as in the header, found 2"),
        "{err}"
    );

    let text = std::fs::read_to_string(&p)
        .unwrap()
        .replace("name = ", "nmae = ");
    std::fs::write(&p, text).unwrap();
    let err = fails(&tensorlet(
        dir,
        &[
            "train",
            s(&p),
            "--data",
            s(&data("iris.csv")),
            "--out",
            s(&dir.join("m")),
            "--allow-unsigned",
        ],
    ));
    assert!(err.contains("unknown field `nmae`"), "{err}");

    let p2 = dir.join("p2.toml");
    std::fs::write(
        &p2,
        "[pipeline]\nname = \"p\"\n[preprocessor]\nbundled = \"standardise\"\n\
         [trainer]\nbundled = \"mlp\"\n[predictor]\nbundled = \"mlp\"\n",
    )
    .unwrap();
    let err = fails(&tensorlet(
        dir,
        &[
            "train",
            s(&p2),
            "--data",
            s(&data("iris.csv")),
            "--out",
            s(&dir.join("m")),
            "--allow-unsigned",
        ],
    ));
    assert!(
        err.contains("plugin `standardise` cannot be loaded: there is no bundled plugin"),
        "{err}"
    );

    let err = fails(&tensorlet(
        dir,
        &[
            "predict",
            s(&dir.join("missing")),
            "--input",
            s(&data("iris.csv")),
        ],
    ));
    assert!(
        err.contains("is neither a model directory nor a registry reference"),
        "{err}"
    );
    // `--device gpu` without an adapter: tests/gpu.rs.
}

/// Runs `tensorlet` with stdout a pipe whose reader has gone, as `tensorlet …
/// | head` leaves it once `head` has taken its lines and exited.
fn with_stdout_closed(home: &Path, args: &[&str]) -> Output {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    command(home, args).stdout(writer).output().unwrap()
}

#[test]
fn printing_commands_end_quietly_when_the_reader_of_stdout_goes() {
    let (home, _) = published_home();
    let h = home.path();
    let iris = data("iris.csv");
    let out = command(
        h,
        &[
            "train",
            "acme/iris",
            "--data",
            s(&iris),
            "--key",
            "alice",
            "--epochs",
            "2",
            "--device",
            "cpu",
        ],
    )
    .output()
    .unwrap();
    ok(&out);
    // Enough rows that their labels overflow a pipe's buffer many times.
    let text = std::fs::read_to_string(&iris).unwrap();
    let (header, rows) = text.split_once('\n').unwrap();
    let big = h.join("big.csv");
    std::fs::write(&big, format!("{header}\n{}", rows.repeat(150))).unwrap();

    for args in [
        &[
            "predict",
            "acme/iris-model",
            "--input",
            s(&big),
            "--device",
            "cpu",
        ][..],
        &[
            "predict",
            "acme/iris-model",
            "--input",
            s(&big),
            "--json",
            "--device",
            "cpu",
        ],
        &["list"],
        &["list", "--json"],
        &["show", "acme/iris-model"],
        &["runs", "list"],
        &["trust", "list"],
        &["audit", "log"],
        &["audit", "verify"],
        &["--help"],
    ] {
        let out = with_stdout_closed(h, args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?} is not quiet");
    }

    // As `| head -1` does it: one line read, then the pipe closed.
    let mut child = command(
        h,
        &[
            "predict",
            "acme/iris-model",
            "--input",
            s(&big),
            "--device",
            "cpu",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut first = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    assert_eq!(first, "setosa\n");
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stderr, "");
}

#[test]
fn commands_on_the_cpu_print_no_gpu_driver_noise() {
    // Mesa (lavapipe, llvmpipe) complains on stderr during an adapter probe
    // when XDG_RUNTIME_DIR is unset, as it is under cron, systemd services
    // and `env -i`. `--device auto` probes; `cpu` must not.
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let model = h.join("iris-model");
    let run = |args: &[&str]| {
        let out = command(h, args)
            .env_remove("XDG_RUNTIME_DIR")
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "{args:?}: {stderr}");
        assert!(!stderr.contains("XDG_RUNTIME_DIR"), "{args:?}: {stderr}");
        stderr
    };
    let stderr = run(&["bench", "instances", "--iterations", "10"]);
    assert_eq!(stderr, "");
    let stderr = run(&[
        "bench",
        "instances",
        "--iterations",
        "10",
        "--device",
        "cpu",
    ]);
    assert_eq!(stderr, "");
    run(&[
        "train",
        s(&pipeline("iris")),
        "--data",
        s(&data("iris.csv")),
        "--out",
        s(&model),
        "--epochs",
        "2",
        "--allow-unsigned",
    ]);
    run(&[
        "predict",
        s(&model),
        "--input",
        s(&data("iris.csv")),
        "--allow-unsigned",
    ]);
    let stderr = run(&["devices"]);
    assert_eq!(stderr, "");
}

/// A misspelled key in a stage's `config` fails `train`, naming the key and the
/// ones the plugin knows, instead of training with the default (`hiden = [128]`
/// used to train `hidden = [64]`).
#[test]
fn a_misspelled_config_key_fails_train() {
    let home = tempfile::tempdir().unwrap();
    let dir = home.path();
    let digits = std::fs::read_to_string(pipeline("digits")).unwrap();
    assert!(digits.contains("config = { hidden = [64] }"), "{digits}");
    for (text, says) in [
        (
            digits.replace("config = { hidden = [64] }", "config = { hiden = [128] }"),
            "unknown config key `hiden`; the known keys are: hidden",
        ),
        (
            digits.replace(
                "bundled = \"standardize\"",
                "bundled = \"standardize\"\nconfig = { with_mean = false }",
            ),
            "unknown config key `with_mean`; this plugin takes no config keys",
        ),
    ] {
        let p = dir.join("digits.toml");
        std::fs::write(&p, &text).unwrap();
        let err = fails(&tensorlet(
            dir,
            &[
                "train",
                s(&p),
                "--data",
                s(&data("digits.csv")),
                "--out",
                s(&dir.join("m")),
                "--allow-unsigned",
            ],
        ));
        assert!(err.contains(says), "{err}");
        assert!(!dir.join("m").exists(), "a model was written: {err}");
    }
}

/// `bench ops` on tiny shapes: a row per op given, in order, with a GFLOP/s
/// figure for the CPU backend and the reference (their values, which depend
/// on the machine, are not checked); a malformed shape is refused with the
/// expected form.
#[test]
fn bench_ops_prints_a_row_per_op_given() {
    let home = tempfile::tempdir().unwrap();
    let stdout = ok(&tensorlet(
        home.path(),
        &[
            "bench",
            "ops",
            "--device",
            "cpu",
            "--conv",
            "2x3x6x6x4,1x2x5x5x3x1",
            "--bmm",
            "2x3x4x5",
            "--min-time",
            "0.001",
        ],
    ));
    let header = stdout
        .lines()
        .find(|l| l.starts_with("op "))
        .unwrap_or_else(|| panic!("no header in:\n{stdout}"));
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        ["op", "shapes", "MFLOP", "[0]", "[r]"],
        "{stdout}"
    );
    let rows: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("op "))
        .skip(1)
        .collect();
    let want = [
        ("conv2d", "[2,3,6,6] * [4,3,3,3] pad 1"),
        ("conv2d", "[1,2,5,5] * [3,2,1,1]"),
        ("batched-matmul", "[2,3,4] x [2,4,5]"),
    ];
    assert_eq!(rows.len(), want.len(), "{stdout}");
    for (row, (op, shapes)) in rows.iter().zip(want) {
        assert!(row.starts_with(op) && row.contains(shapes), "{stdout}");
        for cell in row.split_whitespace().rev().take(2) {
            assert!(
                cell.parse::<f64>().is_ok_and(|g| g >= 0.0),
                "{cell:?} in {stdout}"
            );
        }
    }
    assert!(stdout.contains("PyTorch not measured"), "{stdout}");

    // A usage error, as clap reports one: exit code 2.
    let out = tensorlet(
        home.path(),
        &["bench", "ops", "--device", "cpu", "--conv", "2x3x6"],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("expected NxCxHxWxO"), "{err}");
}
