//! `tensorlet show <model-ref> --lineage`: model → run → pipeline → plugins →
//! dataset, each artifact verified against the local trust policy.

use anyhow::Result;
use serde_json::{Value, json};
use tensorlet_registry::{Kind, Registry, VerifiedArtifact};

fn link(a: &VerifiedArtifact) -> Value {
    json!({
        "reference": a.reference(),
        "kind": a.kind(),
        "digest": a.digest(),
        "signer": a.key_id(),
    })
}

/// The lineage of `artifact` as JSON.
pub fn lineage(reg: &Registry, artifact: &VerifiedArtifact) -> Result<Value> {
    let m = artifact.manifest();
    let mut out = link(artifact);
    let mut plugins = serde_json::Map::new();
    for (role, pin) in &m.depends {
        let dep = reg.verify_pin(pin)?;
        let mut l = link(&dep);
        if let Some(c) = dep.component() {
            l["component"] = json!(tensorlet_runtime::digest(c.bytes()));
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

/// Prints the lineage as a tree (or JSON).
pub fn print(reg: &Registry, artifact: &VerifiedArtifact, as_json: bool) -> Result<()> {
    let l = lineage(reg, artifact)?;
    if as_json {
        println!("{}", serde_json::to_string_pretty(&l)?);
        return Ok(());
    }
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    println!(
        "{} {}  {}  signed by {}",
        s(&l["kind"]),
        s(&l["reference"]),
        s(&l["digest"]),
        s(&l["signer"])
    );
    let run = &l["run"];
    if run.is_null() {
        println!("└ run       (none recorded)");
    } else if run["recorded_here"] == json!(false) {
        println!(
            "└ run       {} (not recorded on this node), epoch {}, seed {}",
            s(&run["id"]),
            s(&run["epoch"]),
            s(&run["seed"])
        );
    } else {
        println!(
            "└ run       {} ({}, started {}, on {} with {}), epoch {} kept, params {}",
            s(&run["id"]),
            s(&run["status"]),
            s(&run["started"]),
            s(&run["host"]),
            s(&run["device"]),
            s(&run["epoch"]),
            s(&run["params"])
        );
    }
    let p = &l["pipeline"];
    if p.is_null() {
        println!("  └ pipeline  -");
    } else if let Some(f) = p.get("file") {
        println!("  └ pipeline  {} (a file, not a published pipeline)", s(f));
    } else {
        println!(
            "  └ pipeline  {}  {}  signed by {}",
            s(&p["reference"]),
            s(&p["digest"]),
            s(&p["signer"])
        );
    }
    for role in ["preprocessor", "trainer", "predictor"] {
        let q = &l["plugins"][role];
        if q.is_null() {
            continue;
        }
        println!(
            "    └ {role:<12} {}  manifest {}  component {}  signed by {}",
            s(&q["reference"]),
            s(&q["digest"]),
            s(&q["component"]),
            s(&q["signer"])
        );
    }
    let d = &l["dataset"];
    println!(
        "      └ dataset {}{}",
        s(&d["digest"]),
        d["name"]
            .as_str()
            .map_or(String::new(), |n| format!(" (dataset `{n}`)"))
    );
    Ok(())
}
