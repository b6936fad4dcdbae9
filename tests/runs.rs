//! Training runs through the `tensorlet` binary: recorded runs with a
//! checkpoint per epoch, determinism, datasets by digest, comparison,
//! plots, lineage, SIGTERM and `--resume`, promotion and rollback.

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// The run id `tensorlet train` announced on stderr.
fn run_id(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines()
        .find_map(|l| l.strip_prefix("run "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .unwrap_or_else(|| panic!("no run id in: {err}"))
}

fn show(home: &Path, id: &str) -> Value {
    json(&ok(&tensorlet(home, &["runs", "show", id, "--json"])))
}

fn checkpoint_digests(run: &Value) -> Vec<String> {
    run["checkpoints"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["params"].as_str().unwrap().to_string())
        .collect()
}

fn train(home: &Path, args: &[&str]) -> (String, String) {
    let mut all = vec!["train", "acme/iris", "--key", "alice", "--device", "cpu"];
    all.extend_from_slice(args);
    let out = tensorlet(home, &all);
    let stdout = ok(&out);
    (run_id(&out), stdout)
}

/// Starts `tensorlet train` in `home` and waits until its run has stored
/// `epochs` checkpoints; returns the process and the run id.
#[allow(
    clippy::zombie_processes,
    reason = "the caller waits for the child it gets"
)]
fn start_run(home: &Path, args: &[&str], epochs: u64) -> (std::process::Child, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tensorlet"))
        .args(args)
        .env("TENSORLET_HOME", home)
        .env_remove("TENSORLET_DEVICE")
        .env_remove("TENSORLET_REGISTRY")
        .env_remove("TENSORLET_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        let list = json(&ok(&tensorlet(home, &["runs", "list", "--json"])));
        if let Some(r) = list.as_array().unwrap().first()
            && r["epochs_done"].as_u64().unwrap() >= epochs
        {
            return (child, r["id"].as_str().unwrap().to_string());
        }
        if started.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no checkpoints after 60 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Stops a `start_run` child with SIGTERM; it exits with 130. Its stderr.
fn interrupt(child: std::process::Child) -> String {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(130), "{err}");
    err
}

#[test]
fn runs_are_recorded_reproducible_comparable_plottable_and_traced() {
    let (home, alice) = published_home();
    let h = home.path();
    let csv = h.join("iris.csv");
    std::fs::copy(data("iris.csv"), &csv).unwrap();
    let out = ok(&tensorlet(h, &["dataset", "add", "iris", s(&csv)]));
    assert!(out.contains("registered dataset iris@sha256:"), "{out}");
    assert!(out.contains("150 rows, 4 features"), "{out}");
    let again = ok(&tensorlet(h, &["dataset", "add", "iris", s(&csv)]));
    assert!(again.contains("already registered"), "{again}");
    let file_digest = tensorlet_runtime::digest(&std::fs::read(&csv).unwrap());

    let common = ["--data", "iris", "--epochs", "12", "--seed", "3"];
    let (a, out_a) = train(h, &common);
    assert!(out_a.contains("published acme/iris-model@0.1.0"), "{out_a}");
    assert!(
        out_a.contains("trained iris: validation accuracy"),
        "{out_a}"
    );
    let (b, _) = train(h, &common);
    let (c, _) = train(h, &["--data", "iris", "--epochs", "12", "--seed", "4"]);

    // A checkpoint per epoch; same inputs give the same params, a new seed not.
    let (ra, rb, rc) = (show(h, &a), show(h, &b), show(h, &c));
    assert_eq!(ra["status"], "completed");
    assert_eq!(checkpoint_digests(&ra).len(), 12);
    assert_eq!(checkpoint_digests(&ra), checkpoint_digests(&rb));
    assert_ne!(
        checkpoint_digests(&ra).last(),
        checkpoint_digests(&rc).last()
    );
    let rec = &ra["record"];
    assert_eq!(rec["dataset"]["digest"], file_digest.as_str());
    assert_eq!(rec["dataset"]["name"], "iris");
    assert_eq!(rec["seed"], 3);
    assert_eq!(rec["config"]["epochs"], 12);
    assert_eq!(rec["host"]["arch"], std::env::consts::ARCH);
    assert!(rec["host"]["device"].as_str().unwrap().starts_with("cpu"));
    assert!(rec["tensorlet_version"].is_string());
    for stage in ["preprocessor", "trainer", "predictor"] {
        let p = &rec["plugins"][stage];
        assert!(p["digest"].as_str().unwrap().starts_with("sha256:"), "{p}");
        assert_eq!(p["key_id"], alice.as_str());
    }
    for m in ra["checkpoints"].as_array().unwrap() {
        assert!(
            m["train_loss"].is_number() && m["val_loss"].is_number(),
            "{m}"
        );
        assert!(m["val_accuracy"].is_number(), "{m}");
    }

    // The model is the best checkpoint, and its params are that checkpoint's.
    let best = ra["best"]["epoch"].as_u64().unwrap() as usize;
    let model = json(&ok(&tensorlet(
        h,
        &["show", "acme/iris-model@0.1.0", "--json"],
    )));
    let lineage = &model["manifest"]["manifest"]["lineage"];
    assert_eq!(lineage["run_id"], a.as_str());
    assert_eq!(lineage["epoch"], best as u64);
    assert_eq!(
        lineage["params"],
        checkpoint_digests(&ra)[best - 1].as_str()
    );
    assert_eq!(
        model["manifest"]["manifest"]["blobs"]["params.safetensors"],
        lineage["params"]
    );

    // Lineage names every digest, verified.
    let l = json(&ok(&tensorlet(
        h,
        &["show", "acme/iris-model@0.1.0", "--lineage", "--json"],
    )));
    assert_eq!(l["run"]["id"], a.as_str());
    assert_eq!(l["run"]["status"], "completed");
    assert_eq!(l["pipeline"]["reference"], "acme/iris@1.0.0");
    assert!(
        l["pipeline"]["digest"]
            .as_str()
            .unwrap()
            .starts_with("sha256:")
    );
    assert_eq!(l["pipeline"]["signer"], alice.as_str());
    for stage in ["preprocessor", "trainer", "predictor"] {
        let p = &l["plugins"][stage];
        assert_eq!(p["signer"], alice.as_str(), "{stage}");
        assert_eq!(p["component"], rec["plugins"][stage]["digest"], "{stage}");
    }
    assert_eq!(l["dataset"]["digest"], file_digest.as_str());
    let tree = ok(&tensorlet(
        h,
        &["show", "acme/iris-model@0.1.0", "--lineage"],
    ));
    for needle in [
        a.as_str(),
        "acme/iris@1.0.0",
        "acme/standardize@1.0.0",
        &file_digest,
    ] {
        assert!(tree.contains(needle), "{needle} missing from:\n{tree}");
    }

    // list, show, compare.
    let list = json(&ok(&tensorlet(h, &["runs", "list", "--json"])));
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(&a.as_str()) && ids.contains(&c.as_str()));
    let table = ok(&tensorlet(h, &["runs", "list"]));
    assert!(table.contains(&a) && table.contains("completed"), "{table}");
    let epochs = ok(&tensorlet(h, &["runs", "show", &a]));
    assert_eq!(
        epochs
            .lines()
            .filter(|l| l
                .trim_start_matches('*')
                .split_whitespace()
                .next()
                .is_some_and(|w| w.parse::<u32>().is_ok()))
            .count(),
        12,
        "{epochs}"
    );
    let cmp = ok(&tensorlet(h, &["runs", "compare", &a, &c]));
    let row = |label: &str| {
        cmp.lines()
            .find(|l| l[1..].trim_start().starts_with(label))
            .unwrap_or_else(|| panic!("no {label} row in:\n{cmp}"))
            .to_string()
    };
    assert!(row("config.seed ").starts_with('*'), "{cmp}");
    assert!(row("config.epochs ").starts_with(' '), "{cmp}");
    assert!(row("dataset ").starts_with(' '), "{cmp}");
    let cmp = json(&ok(&tensorlet(h, &["runs", "compare", &a, &b, "--json"])));
    let differs: Vec<&str> = cmp["fields"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["differs"] == true)
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(
        differs,
        ["model"],
        "identical runs differ only in their model"
    );

    // Plots.
    let png = h.join("curves.png");
    let svg = h.join("curves.svg");
    ok(&tensorlet(h, &["runs", "plot", &a, &c, "--out", s(&png)]));
    ok(&tensorlet(h, &["runs", "plot", &a, "--out", s(&svg)]));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(bytes.len() > 10_000, "{} bytes", bytes.len());
    let text = std::fs::read_to_string(&svg).unwrap();
    assert!(
        text.contains("<svg") && text.contains(&a),
        "no run id in the SVG"
    );
    let err = fails(&tensorlet(h, &["runs", "plot", &a, "--out", "x.gif"]));
    assert!(err.contains("use .png or .svg"), "{err}");

    // A registered dataset that changed is refused, its snapshot still trains.
    std::fs::write(
        &csv,
        std::fs::read_to_string(&csv).unwrap() + "5.0,3.0,1.5,0.2,0\n",
    )
    .unwrap();
    let err = fails(&tensorlet(
        h,
        &["train", "acme/iris", "--data", "iris", "--key", "alice"],
    ));
    assert!(
        err.contains("dataset `iris` changed since it was registered"),
        "{err}"
    );
    let pinned = format!("iris@{file_digest}");
    let (d, _) = train(h, &["--data", &pinned, "--epochs", "12", "--seed", "3"]);
    assert_eq!(checkpoint_digests(&show(h, &d)), checkpoint_digests(&ra));
    let err = fails(&tensorlet(h, &["runs", "show", "nope"]));
    assert!(err.contains("no run `nope`"), "{err}");
}

#[test]
fn sigterm_interrupts_a_run_and_resume_finishes_it_identically() {
    let (home, _) = published_home();
    let h = home.path();
    let iris = data("iris.csv");
    // Long enough to be stopped part-way.
    let args = [
        "train",
        "acme/iris",
        "--data",
        s(&iris),
        "--key",
        "alice",
        "--device",
        "cpu",
        "--epochs",
        "400",
        "--seed",
        "9",
    ];
    // Wait for a few checkpoints, then SIGTERM.
    let (child, id) = start_run(h, &args, 3);
    let err = interrupt(child);
    assert!(
        err.contains(&format!("tensorlet train --resume {id}")),
        "{err}"
    );
    let run = show(h, &id);
    assert_eq!(run["status"], "interrupted");
    let done = checkpoint_digests(&run).len();
    assert!((3..400).contains(&done), "{done} epochs");
    let audit = ok(&tensorlet(h, &["audit", "log", "--json"]));
    assert!(audit.contains("\"interrupted\""), "{audit}");

    // Resuming refuses new options, then finishes the run.
    let err = fails(&tensorlet(h, &["train", "--resume", &id, "--epochs", "5"]));
    assert!(
        err.contains("--epochs cannot be combined with --resume"),
        "{err}"
    );
    // Damage the newest checkpoint, as a power loss could: the run goes on
    // from the one before it.
    let newest = checkpoint_digests(&run).pop().unwrap();
    let blob = h
        .join("blobs/sha256")
        .join(newest.trim_start_matches("sha256:"));
    std::fs::write(&blob, b"").unwrap();
    let resumed = tensorlet(h, &["train", "--resume", &id[..12]]);
    let out = ok(&resumed);
    assert!(out.contains("published acme/iris-model@0.1.0"), "{out}");
    let err = String::from_utf8_lossy(&resumed.stderr);
    assert!(
        err.contains(&format!(
            "the checkpoints after epoch {} are damaged",
            done - 1
        )),
        "{err}"
    );
    let resumed = show(h, &id);
    assert_eq!(resumed["status"], "completed");
    assert_eq!(checkpoint_digests(&resumed).len(), 400);
    let err = fails(&tensorlet(h, &["train", "--resume", &id]));
    assert!(err.contains("already completed"), "{err}");

    // An uninterrupted run with the same inputs ends with the same params.
    let whole = tensorlet(h, &args[..]);
    ok(&whole);
    let whole = show(h, &run_id(&whole));
    assert_eq!(checkpoint_digests(&whole), checkpoint_digests(&resumed));
    let model = |v: &str| {
        json(&ok(&tensorlet(
            h,
            &["show", &format!("acme/iris-model@{v}"), "--json"],
        )))["manifest"]["manifest"]["blobs"]["params.safetensors"]
            .clone()
    };
    assert_eq!(model("0.1.0"), model("0.1.1"));
}

#[test]
fn a_killed_run_shows_as_lost_and_resumes() {
    let (home, _) = published_home();
    let h = home.path();
    let iris = data("iris.csv");
    let (mut child, id) = start_run(
        h,
        &[
            "train",
            "acme/iris",
            "--data",
            s(&iris),
            "--key",
            "alice",
            "--device",
            "cpu",
            "--epochs",
            "400",
        ],
        2,
    );
    child.kill().unwrap(); // SIGKILL: no chance to record anything
    child.wait().unwrap();
    let list = json(&ok(&tensorlet(h, &["runs", "list", "--json"])));
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "lost", "{list}");
    let out = ok(&tensorlet(h, &["train", "--resume", &id]));
    assert!(out.contains("published acme/iris-model@0.1.0"), "{out}");
    assert_eq!(show(h, &id)["status"], "completed");
}

#[test]
fn train_fails_before_the_first_epoch_when_the_model_cannot_be_published() {
    let (home, _) = published_home();
    let h = home.path();
    let iris = data("iris.csv");
    keygen(h, "mallory");
    let (_, bob) = keygen(h, "bob");
    ok(&tensorlet(
        h,
        &["trust", "add", &bob, "--namespace", "other"],
    ));
    let registry = || ok(&tensorlet(h, &["list", "--json"]));
    let audit_entries = || {
        json(&ok(&tensorlet(h, &["audit", "log", "--json"])))
            .as_array()
            .unwrap()
            .len()
    };
    let before = registry();
    let entries = audit_entries();
    // So many epochs that a run which trained first would not end within
    // the test's lifetime: each case must fail before training starts.
    let train = |extra: &[&str]| {
        let mut args = vec![
            "train",
            "acme/iris",
            "--data",
            s(&iris),
            "--epochs",
            "1000000",
            "--device",
            "cpu",
        ];
        args.extend_from_slice(extra);
        fails(&tensorlet(h, &args))
    };
    for (extra, why) in [
        (
            &["--key", "mallory"][..],
            "the key is not in this trust policy",
        ),
        (
            &["--key", "bob"][..],
            "trusted only for namespace(s) other, not for `acme`",
        ),
        (&["--key", "nobody"][..], "nobody"),
        (
            &["--key", "alice", "--model", "Acme/Iris"][..],
            "`Acme/Iris` is not an artifact name",
        ),
        (
            &["--key", "alice", "--version", "1.0"][..],
            "`1.0` is not a semantic version",
        ),
        // The pipeline itself is acme/iris@1.0.0: that version is taken.
        (
            &[
                "--key",
                "alice",
                "--model",
                "acme/iris",
                "--version",
                "1.0.0",
            ][..],
            "acme/iris@1.0.0 is already published",
        ),
    ] {
        let err = train(extra);
        assert!(err.contains(why), "{extra:?}: {err}");
        assert!(!err.contains("\nrun "), "{extra:?} started a run: {err}");
        if extra[1] != "nobody" {
            assert!(
                err.contains("so training did not start"),
                "{extra:?}: {err}"
            );
        }
    }
    // A pipeline with local stages trains only into a directory.
    let err = train_local(
        h,
        &[
            "--key",
            "alice",
            "--model",
            "acme/local-iris",
            "--allow-unsigned",
        ],
    );
    assert!(err.contains("local `path`/`bundled` plugin"), "{err}");
    let file = h.join("a-file");
    std::fs::write(&file, "").unwrap();
    let err = train(&["--out", s(&file)]);
    assert!(err.contains("is a file, not a directory"), "{err}");

    let runs = json(&ok(&tensorlet(h, &["runs", "list", "--json"])));
    assert_eq!(runs, serde_json::json!([]), "no run was recorded");
    assert_eq!(registry(), before, "nothing was published");
    assert_eq!(audit_entries(), entries, "nothing was audited");
}

/// `train` of the bundled iris pipeline file (local stages) with `extra`; its stderr.
fn train_local(home: &Path, extra: &[&str]) -> String {
    let iris = data("iris.csv");
    let p = pipeline("iris");
    let mut args = vec![
        "train",
        s(&p),
        "--data",
        s(&iris),
        "--epochs",
        "1000000",
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    fails(&tensorlet(home, &args))
}

#[test]
fn run_options_show_the_learning_rate_as_given() {
    let (home, _) = published_home();
    let h = home.path();
    // The published pipeline says `learning_rate = 0.1`; the other run overrides it.
    let (a, _) = train(h, &["--data", s(&data("iris.csv")), "--epochs", "2"]);
    let (b, _) = train(
        h,
        &[
            "--data",
            s(&data("iris.csv")),
            "--epochs",
            "2",
            "--lr",
            "0.05",
        ],
    );
    let widened = "0.10000000149011612";
    let check = |what: &str| {
        let text = ok(&tensorlet(h, &["runs", "show", &a]));
        assert!(text.contains(r#""learning_rate":0.1,"#), "{what}: {text}");
        assert!(
            text.contains(r#""validation_fraction":0.2"#),
            "{what}: {text}"
        );
        let json_out = ok(&tensorlet(h, &["runs", "show", &a, "--json"]));
        assert!(
            json_out.contains(r#""learning_rate": 0.1,"#),
            "{what}: {json_out}"
        );
        let cmp = ok(&tensorlet(h, &["runs", "compare", &a, &b]));
        let row = cmp
            .lines()
            .find(|l| l.contains("config.learning_rate"))
            .unwrap_or_else(|| panic!("{what}: no learning rate row in {cmp}"));
        assert_eq!(
            row.split_whitespace().collect::<Vec<_>>(),
            ["*", "config.learning_rate", "0.1", "0.05"],
            "{what}: {cmp}"
        );
        let cmp_json = ok(&tensorlet(h, &["runs", "compare", &a, &b, "--json"]));
        let model = ok(&tensorlet(h, &["show", "acme/iris-model@0.1.0"]));
        for out in [&text, &json_out, &cmp, &cmp_json, &model] {
            assert!(!out.contains(widened), "{what}: {out}");
            assert!(!out.contains("0.05000000074505806"), "{what}: {out}");
        }
    };
    check("as recorded");
    // Records written before the options were kept in their f32 form hold
    // them widened to f64; they are shown the same way.
    let db = rusqlite::Connection::open(h.join("registry.db")).unwrap();
    let changed = db
        .execute(
            "UPDATE runs SET record = replace(record, '\"learning_rate\":0.1,', ?1) WHERE id = ?2",
            [&format!(r#""learning_rate":{widened},"#), &a],
        )
        .unwrap();
    assert_eq!(changed, 1);
    let stored: String = db
        .query_row("SELECT record FROM runs WHERE id = ?1", [&a], |r| r.get(0))
        .unwrap();
    assert!(stored.contains(widened), "{stored}");
    drop(db);
    assert!(
        ok(&tensorlet(h, &["runs", "show", &a, "--json"])).contains(r#""learning_rate": 0.1,"#)
    );
    check("as an older version recorded them");
}

#[test]
fn promote_and_rollback_move_aliases_and_are_audited() {
    let (home, _) = published_home();
    let h = home.path();
    let iris = data("iris.csv");
    for seed in ["1", "2", "3"] {
        ok(&tensorlet(
            h,
            &[
                "train",
                "acme/iris",
                "--data",
                s(&iris),
                "--key",
                "alice",
                "--epochs",
                "3",
                "--seed",
                seed,
            ],
        ));
    }
    let target = |alias: &str| {
        json(&ok(&tensorlet(
            h,
            &["show", &format!("acme/iris-model@{alias}"), "--json"],
        )))["summary"]["version"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let out = ok(&tensorlet(
        h,
        &["promote", "acme/iris-model@0.1.0", "--to", "production"],
    ));
    assert!(
        out.contains("promoted acme/iris-model@production: (unset) -> 0.1.0"),
        "{out}"
    );
    ok(&tensorlet(
        h,
        &["promote", "acme/iris-model@0.1.1", "--to", "staging"],
    ));
    ok(&tensorlet(
        h,
        &["promote", "acme/iris-model@0.1.1", "--to", "production"],
    ));
    let out = ok(&tensorlet(
        h,
        &["promote", "acme/iris-model@0.1.2", "--to", "production"],
    ));
    assert!(out.contains("0.1.1 -> 0.1.2"), "{out}");
    assert_eq!(target("production"), "0.1.2");
    assert_eq!(target("staging"), "0.1.1");

    let out = ok(&tensorlet(
        h,
        &["rollback", "acme/iris-model", "--alias", "production"],
    ));
    assert!(
        out.contains("rolled back acme/iris-model@production: 0.1.2 -> 0.1.1"),
        "{out}"
    );
    assert_eq!(target("production"), "0.1.1");
    ok(&tensorlet(
        h,
        &["rollback", "acme/iris-model", "--alias", "production"],
    ));
    assert_eq!(target("production"), "0.1.0");
    let err = fails(&tensorlet(
        h,
        &["rollback", "acme/iris-model", "--alias", "production"],
    ));
    assert!(err.contains("no earlier version to roll back to"), "{err}");
    // It names the versions it was rolled back from, not only the one it is at.
    assert!(
        err.contains("is at 0.1.0, the first version it pointed at"),
        "{err}"
    );
    assert!(err.contains("(to 0.1.1, 0.1.2)"), "{err}");
    assert_eq!(target("staging"), "0.1.1", "other aliases do not move");

    // Promotion verifies first: a tampered version is refused, nothing moves.
    let err = fails(&tensorlet(
        h,
        &["promote", "acme/iris-model@9.9.9", "--to", "production"],
    ));
    assert!(err.contains("acme/iris-model@9.9.9"), "{err}");
    let err = fails(&tensorlet(
        h,
        &["promote", "acme/iris-model@0.1.2", "--to", "Prod!"],
    ));
    assert!(err.contains("Prod!"), "{err}");
    assert_eq!(target("production"), "0.1.0");

    let log = json(&ok(&tensorlet(h, &["audit", "log", "--json"])));
    let actions: Vec<(String, String)> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_string(),
                e["subject"].as_str().unwrap().to_string(),
            )
        })
        .filter(|(a, _)| a == "promote" || a == "rollback")
        .collect();
    let subject = "acme/iris-model@production".to_string();
    assert_eq!(
        actions,
        [
            ("promote".into(), subject.clone()),
            ("promote".into(), "acme/iris-model@staging".into()),
            ("promote".into(), subject.clone()),
            ("promote".into(), subject.clone()),
            ("rollback".into(), subject.clone()),
            ("rollback".into(), subject),
        ]
    );
    ok(&tensorlet(h, &["audit", "verify"]));
}

/// A model whose gradients turn non-finite stops its run, which is recorded
/// as failed with the epoch and step and keeps the checkpoints it had: here
/// the step schedule multiplies the learning rate by 1e33 after epoch 1.
#[test]
fn a_run_with_non_finite_gradients_fails_and_keeps_its_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let home = tmp.path();
    let pipeline = home.join("diverges.toml");
    std::fs::write(
        &pipeline,
        "[pipeline]\nname = \"diverges\"\n[data]\nlabel = \"digit\"\n\
         [preprocessor]\nbundled = \"standardize\"\n\
         [model]\nbundled = \"mlp\"\n\
         [training]\nepochs = 4\nbatch_size = 32\nlearning_rate = 0.01\noptimizer = \"sgd\"\n\
         [training.schedule]\nname = \"step\"\nevery_epochs = 1\ngamma = 1e33\n",
    )
    .unwrap();
    let out = tensorlet(
        home,
        &[
            "train",
            s(&pipeline),
            "--data",
            s(&data("digits.csv")),
            "--out",
            s(&home.join("model")),
            "--allow-unsigned",
            "--device",
            "cpu",
        ],
    );
    let err = fails(&out);
    assert!(!home.join("model").exists(), "a failed run saves no model");
    assert!(
        err.contains("non-finite") && err.contains("epoch 2, step"),
        "{err}"
    );
    let id = run_id(&out);
    let run = show(home, &id);
    assert_eq!(run["status"], "failed", "{run}");
    assert!(
        run["error"]
            .as_str()
            .unwrap_or_default()
            .contains("non-finite"),
        "{run}"
    );
    assert_eq!(checkpoint_digests(&run).len(), 1, "{run}");
}

/// A trainer's home for central run tracking: `alice`'s key (copied from
/// `server`) and the trust policy that verifies the server's artifacts.
fn trainer_home(server: &Path) -> tempfile::TempDir {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    std::fs::create_dir_all(h.join("keys")).unwrap();
    for f in ["alice.key", "alice.pub"] {
        std::fs::copy(server.join("keys").join(f), h.join("keys").join(f)).unwrap();
    }
    let alice = ok(&tensorlet(server, &["key", "export", "alice"]));
    let alice = alice.lines().last().unwrap();
    ok(&tensorlet(
        h,
        &["trust", "add", alice, "--namespace", "acme"],
    ));
    home
}

/// `tensorlet train` of `acme/iris` from `url`, signed by `key`, with `args`.
fn tracked(home: &Path, url: &str, key: &str, args: &[&str]) -> Command {
    let iris = data("iris.csv");
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tensorlet"));
    cmd.args(["train", "acme/iris", "--data", s(&iris), "--key", key])
        .args(["--device", "cpu", "--registry", url])
        .args(args)
        .env("TENSORLET_HOME", home)
        .env_remove("TENSORLET_DEVICE")
        .env_remove("TENSORLET_REGISTRY")
        .env_remove("TENSORLET_KEY")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

#[test]
fn trainers_record_their_runs_on_one_registry_and_a_run_resumes_elsewhere() {
    let (server_home, alice) = published_home();
    let server = RegistryServer::start(server_home.path(), &[]);
    let url = server.url.as_str();
    let remote_json = |home: &Path, args: &[&str]| {
        let mut all = vec!["runs"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--json", "--registry", url]);
        json(&ok(&tensorlet(home, &all)))
    };

    // Four trainers on four homes, at once, sweeping the learning rate.
    let rates = ["0.05", "0.1", "0.2", "0.4"];
    let homes: Vec<_> = rates
        .iter()
        .map(|_| trainer_home(server_home.path()))
        .collect();
    let children: Vec<_> = homes
        .iter()
        .zip(rates)
        .enumerate()
        .map(|(i, (home, lr))| {
            let version = format!("0.2.{i}");
            let args = ["--epochs", "25", "--lr", lr, "--version", &version];
            tracked(home.path(), url, "alice", &args).spawn().unwrap()
        })
        .collect();
    let mut ids = Vec::new();
    for (home, child) in homes.iter().zip(children) {
        let out = child.wait_with_output().unwrap();
        ok(&out);
        let id = run_id(&out);
        // Nothing lost: the registry holds every checkpoint the trainer made.
        let here = show(home.path(), &id);
        let there = remote_json(home.path(), &["show", &id]);
        assert_eq!(there["status"], "completed", "{there}");
        assert_eq!(checkpoint_digests(&there).len(), 25);
        assert_eq!(checkpoint_digests(&there), checkpoint_digests(&here));
        assert_eq!(there["record"], here["record"]);
        ids.push(id);
    }
    // One listing and one comparison of all of them, from any machine.
    let elsewhere = tempfile::tempdir().unwrap();
    let listed = remote_json(elsewhere.path(), &["list"]);
    let mut listed_ids: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    listed_ids.sort_unstable();
    let mut want: Vec<&str> = ids.iter().map(String::as_str).collect();
    want.sort_unstable();
    assert_eq!(listed_ids, want);
    let mut compare = vec!["runs", "compare"];
    compare.extend(ids.iter().map(String::as_str));
    compare.extend(["--json", "--registry", url]);
    let compared = json(&ok(&tensorlet(elsewhere.path(), &compare)));
    let lr_row = compared["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["field"] == "config.learning_rate")
        .unwrap_or_else(|| panic!("no learning rate row in {compared}"));
    assert_eq!(lr_row["values"], serde_json::json!(rates), "{compared}");
    // The registry's audit log says who recorded each run.
    let sh = server_home.path();
    let audit = json(&ok(&tensorlet(sh, &["audit", "log", "--json"])));
    for id in &ids {
        let start = audit
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["action"] == "train.start" && e["detail"]["run_id"] == id.as_str())
            .unwrap_or_else(|| panic!("no train.start of {id} in {audit}"));
        assert_eq!(start["detail"]["key_id"], alice.as_str(), "{start}");
        assert_eq!(start["detail"]["namespace"], "acme", "{start}");
    }

    // A key the registry does not trust for the namespace is refused and
    // audited; the trainer stops before its first epoch.
    let stranger = trainer_home(sh);
    ok(&tensorlet(stranger.path(), &["keygen", "mallory"]));
    let out = tracked(stranger.path(), url, "mallory", &["--epochs", "3"])
        .output()
        .unwrap();
    let err = fails(&out);
    assert!(err.contains("cannot record run"), "{err}");
    assert!(err.contains("the key is not in this trust policy"), "{err}");
    let audit = ok(&tensorlet(sh, &["audit", "log"]));
    assert!(audit.contains("train.refused"), "{audit}");
    assert_eq!(remote_json(sh, &["list"]).as_array().unwrap().len(), 4);

    // A trainer killed part-way (its machine lost) resumes on a second home
    // from the registry's checkpoints and ends as an uninterrupted run does.
    let first = trainer_home(sh);
    let long = ["--epochs", "1500", "--seed", "9"];
    let mut child = tracked(first.path(), url, "alice", &long).spawn().unwrap();
    let started = Instant::now();
    let id = loop {
        let runs = remote_json(sh, &["list"]);
        let run = runs
            .as_array()
            .unwrap()
            .iter()
            .find(|r| !ids.iter().any(|id| r["id"] == id.as_str()));
        if let Some(r) = run
            && r["epochs_done"].as_u64().unwrap() >= 3
        {
            break r["id"].as_str().unwrap().to_string();
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no checkpoints"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap();
    child.wait().unwrap();
    let second = trainer_home(sh);
    let resumed = ok(&tensorlet(
        second.path(),
        &["train", "--resume", &id, "--registry", url],
    ));
    assert!(
        resumed.contains("published acme/iris-model@0.1.0"),
        "{resumed}"
    );
    let there = remote_json(sh, &["show", &id]);
    assert_eq!(there["status"], "completed", "{there}");
    let imported = ok(&tensorlet(second.path(), &["audit", "log"]));
    assert!(imported.contains("train.import"), "{imported}");

    let whole = second.path().join("whole");
    let mut cmd = vec!["train", "acme/iris", "--data"];
    let iris = data("iris.csv");
    cmd.extend([s(&iris), "--device", "cpu", "--out", s(&whole)]);
    cmd.extend(long);
    let out = tensorlet(second.path(), &cmd);
    ok(&out);
    let whole = show(second.path(), &run_id(&out));
    assert_eq!(checkpoint_digests(&there), checkpoint_digests(&whole));
    ok(&tensorlet(sh, &["audit", "verify"]));
}

#[test]
fn a_streamed_run_resumes_identically() {
    let (home, _) = published_home();
    let h = home.path();
    let iris = data("iris.csv");
    let args = [
        "train",
        "acme/iris",
        "--data",
        s(&iris),
        "--key",
        "alice",
        "--device",
        "cpu",
        "--epochs",
        "1000",
        "--stream",
    ];
    let (mut child, id) = start_run(h, &args, 3);
    child.kill().unwrap();
    child.wait().unwrap();
    let err = fails(&tensorlet(h, &["train", "--resume", &id, "--stream"]));
    assert!(
        err.contains("--stream cannot be combined with --resume"),
        "{err}"
    );
    ok(&tensorlet(h, &["train", "--resume", &id]));
    let resumed = show(h, &id);
    assert_eq!(resumed["status"], "completed");
    assert_eq!(resumed["record"]["config"]["stream"], true);
    let whole = tensorlet(h, &args[..]);
    ok(&whole);
    let whole = show(h, &run_id(&whole));
    assert_eq!(checkpoint_digests(&whole).len(), 1000);
    assert_eq!(checkpoint_digests(&whole), checkpoint_digests(&resumed));
}

/// The bundled digits CNN (conv, pooling, Adam): a run stopped by SIGTERM
/// part-way and resumed stores the same params after every epoch as two
/// uninterrupted runs with the same inputs, which agree with each other.
#[test]
fn the_digits_cnn_trains_identically_run_to_run_and_after_resume() {
    let tmp = tempfile::tempdir().unwrap();
    let h = tmp.path();
    let (p, digits) = (pipeline("digits-cnn"), data("digits.csv"));
    let epochs = 20;
    let epochs_arg = epochs.to_string();
    let model = h.join("model");
    let args = [
        "train",
        s(&p),
        "--data",
        s(&digits),
        "--out",
        s(&model),
        "--allow-unsigned",
        "--device",
        "cpu",
        "--epochs",
        &epochs_arg,
        "--seed",
        "5",
    ];
    // First, while the home has no other run for start_run to see (this
    // creates its registry before two processes open it): stopped after a
    // few checkpoints, then resumed.
    let none = json(&ok(&tensorlet(h, &["runs", "list", "--json"])));
    assert_eq!(none, serde_json::json!([]));
    let (child, id) = start_run(h, &args, 2);
    interrupt(child);
    let stopped = show(h, &id);
    assert_eq!(stopped["status"], "interrupted", "{stopped}");
    let done = checkpoint_digests(&stopped).len();
    assert!((2..epochs).contains(&done), "{done} epochs");
    ok(&tensorlet(h, &["train", "--resume", &id]));
    let resumed = show(h, &id);
    assert_eq!(resumed["status"], "completed", "{resumed}");
    let resumed = checkpoint_digests(&resumed);
    assert_eq!(resumed.len(), epochs);
    assert_ne!(
        resumed[0],
        resumed[epochs - 1],
        "training changed the params"
    );

    let whole = || {
        let out = tensorlet(h, &args);
        ok(&out);
        let run = show(h, &run_id(&out));
        assert_eq!(run["status"], "completed", "{run}");
        checkpoint_digests(&run)
    };
    let first = whole();
    assert_eq!(whole(), first, "two runs of the same inputs differ");
    assert_eq!(
        resumed, first,
        "the run stopped after epoch {done} and resumed ended with other params \
         than an uninterrupted one"
    );
}
