//! Where a model came from (`tensorlet show <model> --lineage`): model →
//! run → pipeline → plugins → dataset, each artifact verified against the
//! local trust policy, as JSON and as a tree for people.

use serde_json::{Value, json};
use tensorlet_registry::{Kind, Registry, RegistryError, VerifiedArtifact};

fn link(a: &VerifiedArtifact) -> Value {
    json!({
        "reference": a.reference(),
        "kind": a.kind(),
        "digest": a.digest(),
        "signer": a.key_id(),
    })
}

/// The lineage of `artifact` as JSON: its pinned pipeline and plugins (each
/// verified, a plugin with its component's digest), its dataset, and the run
/// that trained it (in full when this registry recorded it).
pub fn lineage(reg: &Registry, artifact: &VerifiedArtifact) -> Result<Value, RegistryError> {
    let m = artifact.manifest();
    let mut out = link(artifact);
    let mut plugins = serde_json::Map::new();
    for (role, pin) in &m.depends {
        let dep = reg.verify_pin(pin)?;
        let mut l = link(&dep);
        if let Some(c) = dep.component() {
            l["component"] = json!(crate::digest(c.bytes()));
        }
        if dep.kind() == Kind::Pipeline {
            out["pipeline"] = l;
        } else {
            plugins.insert(role.clone(), l);
        }
    }
    out["plugins"] = Value::Object(plugins);
    let lin = &m.lineage;
    out["dataset"] = json!({"digest": lin["dataset"], "name": lin["dataset_name"]});
    if out.get("pipeline").is_none() && !lin["pipeline"].is_null() {
        // Trained from a pipeline file, not a published pipeline.
        out["pipeline"] = json!({"file": lin["pipeline"]});
    }
    out["run"] = match lin["run_id"].as_str() {
        None => Value::Null,
        Some(id) => match reg.runs().get(id) {
            Ok(r) => json!({
                "id": r.id,
                "status": r.status,
                "started": r.started,
                "ended": r.ended,
                "epoch": lin["epoch"],
                "params": lin["params"],
                "seed": lin["seed"],
                "host": r.record.host.hostname,
                "device": r.record.host.device,
            }),
            Err(_) => {
                json!({"id": id, "recorded_here": false, "epoch": lin["epoch"], "seed": lin["seed"]})
            }
        },
    };
    Ok(out)
}

/// A [`lineage`] as a tree, one link per line.
pub fn tree(l: &Value) -> String {
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    let mut lines = vec![format!(
        "{} {}  {}  signed by {}",
        s(&l["kind"]),
        s(&l["reference"]),
        s(&l["digest"]),
        s(&l["signer"])
    )];
    let run = &l["run"];
    lines.push(if run.is_null() {
        "└ run       (none recorded)".to_string()
    } else if run["recorded_here"] == json!(false) {
        format!(
            "└ run       {} (not recorded on this node), epoch {}, seed {}",
            s(&run["id"]),
            s(&run["epoch"]),
            s(&run["seed"])
        )
    } else {
        format!(
            "└ run       {} ({}, started {}, on {} with {}), epoch {} kept, params {}",
            s(&run["id"]),
            s(&run["status"]),
            s(&run["started"]),
            s(&run["host"]),
            s(&run["device"]),
            s(&run["epoch"]),
            s(&run["params"])
        )
    });
    let p = &l["pipeline"];
    lines.push(if p.is_null() {
        "  └ pipeline  -".to_string()
    } else if let Some(f) = p.get("file") {
        format!("  └ pipeline  {} (a file, not a published pipeline)", s(f))
    } else {
        format!(
            "  └ pipeline  {}  {}  signed by {}",
            s(&p["reference"]),
            s(&p["digest"]),
            s(&p["signer"])
        )
    });
    // The preprocessors in chain order (`preprocessor`, `preprocessor.2`…),
    // then the trainer and the predictor.
    let chain = (2..).map_while(|n| {
        let role = format!("preprocessor.{n}");
        l["plugins"].get(&role).map(|_| role)
    });
    let roles: Vec<String> = std::iter::once("preprocessor".to_string())
        .chain(chain)
        .chain(["trainer".to_string(), "predictor".to_string()])
        .collect();
    for role in &roles {
        let q = &l["plugins"][role];
        if q.is_null() {
            continue;
        }
        lines.push(format!(
            "    └ {role:<12} {}  manifest {}  component {}  signed by {}",
            s(&q["reference"]),
            s(&q["digest"]),
            s(&q["component"]),
            s(&q["signer"])
        ));
    }
    let d = &l["dataset"];
    lines.push(format!(
        "      └ dataset {}{}",
        s(&d["digest"]),
        d["name"]
            .as_str()
            .map_or(String::new(), |n| format!(" (dataset `{n}`)"))
    ));
    lines.iter().map(|l| format!("{l}\n")).collect()
}

#[cfg(test)]
mod tests {
    use tensorlet_registry::{Manifest, Pin, RunDetails, RunHost};

    use super::*;

    /// A registry in `home` with a trusted key for `acme`, a preprocessor
    /// plugin and a model pinning it whose lineage names `run_id`.
    fn published(home: &std::path::Path, run_id: &str) -> (Registry, VerifiedArtifact) {
        let reg = Registry::open(home).unwrap();
        let key = reg.keygen("ci").unwrap();
        reg.trust_add(&key.public(), &["acme".into()]).unwrap();
        let component = b"component bytes".to_vec();
        let mut plugin = Manifest::new("acme/std", "1.0.0", Kind::Preprocessor).unwrap();
        plugin
            .blobs
            .insert("component".into(), crate::digest(&component));
        let p = reg.publish(&plugin.sign(&key), &[component]).unwrap();
        let mut model = Manifest::new("acme/iris-model", "0.1.0", Kind::Model).unwrap();
        model.depends.insert(
            "preprocessor".into(),
            Pin {
                reference: p.reference.clone(),
                digest: p.digest.clone(),
            },
        );
        model.lineage = json!({
            "dataset": "sha256:da7a", "dataset_name": "iris", "pipeline": "iris.toml",
            "run_id": run_id, "epoch": 3, "seed": 7, "params": "sha256:0123",
        });
        reg.publish(&model.sign(&key), &[]).unwrap();
        let artifact = reg.verify_str("acme/iris-model@0.1.0").unwrap();
        (reg, artifact)
    }

    #[test]
    fn a_models_lineage_names_its_plugins_file_dataset_and_run() {
        let home = tempfile::tempdir().unwrap();
        let (reg, model) = published(home.path(), "elsewhere-1");
        let l = lineage(&reg, &model).unwrap();
        assert_eq!(l["reference"], json!("acme/iris-model@0.1.0"));
        let pre = &l["plugins"]["preprocessor"];
        assert_eq!(pre["reference"], json!("acme/std@1.0.0"));
        assert_eq!(pre["component"], json!(crate::digest(b"component bytes")));
        assert_eq!(l["pipeline"], json!({"file": "iris.toml"}));
        assert_eq!(
            l["dataset"],
            json!({"digest": "sha256:da7a", "name": "iris"})
        );
        assert_eq!(
            l["run"],
            json!({"id": "elsewhere-1", "recorded_here": false, "epoch": 3, "seed": 7})
        );
        let t = tree(&l);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("model acme/iris-model@0.1.0  sha256:"),
            "{t}"
        );
        assert_eq!(
            lines[1],
            "└ run       elsewhere-1 (not recorded on this node), epoch 3, seed 7"
        );
        assert_eq!(
            lines[2],
            "  └ pipeline  iris.toml (a file, not a published pipeline)"
        );
        assert!(lines[3].starts_with("    └ preprocessor acme/std@1.0.0  manifest sha256:"));
        assert_eq!(lines[4], "      └ dataset sha256:da7a (dataset `iris`)");
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn a_run_recorded_here_is_shown_in_full() {
        let home = tempfile::tempdir().unwrap();
        let run = Registry::open(home.path())
            .unwrap()
            .runs()
            .start(
                "acme/iris@1.0.0",
                &RunDetails {
                    host: RunHost {
                        hostname: "node-1".into(),
                        device: "cpu".into(),
                        ..RunHost::default()
                    },
                    ..RunDetails::default()
                },
            )
            .unwrap();
        let (reg, model) = published(home.path(), &run);
        let l = lineage(&reg, &model).unwrap();
        let started = reg.runs().get(&run).unwrap().started;
        assert_eq!(l["run"]["host"], json!("node-1"));
        assert_eq!(l["run"]["params"], json!("sha256:0123"));
        assert_eq!(
            tree(&l).lines().nth(1).unwrap(),
            format!(
                "└ run       {run} (running, started {started}, on node-1 with cpu), epoch 3 \
                 kept, params sha256:0123"
            )
        );
        let bare = tree(&json!({"kind": "model", "dataset": {"digest": "sha256:3"}}));
        assert_eq!(
            bare,
            "model -  -  signed by -\n└ run       (none recorded)\n  └ pipeline  -\n      \
             └ dataset sha256:3\n"
        );
    }
}
