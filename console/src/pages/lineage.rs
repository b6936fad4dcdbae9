//! Lineage: `tensorlet show <model> --lineage` as a picture. From a model
//! version to the run that trained it, the checkpoint it kept, the dataset
//! (digest, schema), the pipeline and the plugins (digest, signer), each
//! verified against the trust policy (without auditing: this only looks)
//! and each a link. What fails verification is drawn as refused, with the
//! reason, rather than failing the page.

use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use tensorlet_runtime::registry::{Kind, Pin, Reference, Registry, VerifiedArtifact};

use super::artifacts::version_href;
use super::{Layout, Params, blocking, page, short, text};
use crate::Console;
use crate::error::{ConsoleError, Result};
use crate::svg::{self, Node};

#[derive(serde::Deserialize)]
pub struct LineagePath {
    ns: String,
    name: String,
    version: String,
}

#[derive(Template)]
#[template(path = "lineage.html")]
struct LineagePage {
    layout: Layout,
    reference: String,
    href: String,
    svg: String,
    nodes: Vec<Node>,
}

fn artifact_node(level: usize, kind: &'static str, a: &VerifiedArtifact) -> Node {
    let mut lines = vec![format!("manifest {}", short(a.digest()))];
    if let Some(c) = a.component() {
        lines.insert(0, format!("component {}", short(c.digest())));
    }
    lines.push(format!("signed by {} ✓", a.key_id()));
    Node {
        level,
        kind,
        title: a.reference(),
        lines,
        href: Some(version_href(&a.manifest().name, &a.manifest().version)),
        ok: true,
    }
}

fn pin_node(
    reg: &Registry,
    level: usize,
    role: &str,
    pin: &Pin,
) -> (Node, Option<VerifiedArtifact>) {
    match reg.inspect(&pin.exact()) {
        Ok(a) => {
            let kind = if a.kind() == Kind::Pipeline {
                "pipeline"
            } else {
                "plugin"
            };
            let mut n = artifact_node(level, kind, &a);
            if kind == "plugin" {
                n.lines.insert(0, format!("{role} ({})", a.kind()));
            }
            (n, Some(a))
        }
        Err(e) => (
            Node {
                level,
                kind: "plugin",
                title: pin.reference.clone(),
                lines: vec![format!("refused: {e}")],
                href: pin
                    .reference
                    .split_once('@')
                    .map(|(n, v)| version_href(n, v)),
                ok: false,
            },
            None,
        ),
    }
}

/// `GET /lineage/{ns}/{name}/{version}`.
pub async fn graph(
    State(console): State<Arc<Console>>,
    Path(p): Path<LineagePath>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    Params::parse(q.as_deref(), &[])?;
    if console.config().remote.is_some() {
        return Err(ConsoleError::Unsupported(
            "Lineage needs runs and datasets, which only the local home records (the registry \
             HTTP API serves artifacts); start `tensorlet ui` without --registry for this page."
                .into(),
        ));
    }
    let name = format!("{}/{}", p.ns, p.name);
    let reference = Reference::parse(&format!("{name}@{}", p.version)).map_err(|_| {
        ConsoleError::NotFound(format!("there is no artifact {name}@{}", p.version))
    })?;
    let data = blocking(move || {
        let reg = console.registry()?;
        let summary = reg.resolve(&reference)?;
        let root = reg.inspect(&reference);
        let mut nodes = Vec::new();
        let mut edges = Vec::new();
        let m = match &root {
            Ok(a) => {
                nodes.push(artifact_node(0, "model", a));
                nodes[0].kind = if a.kind() == Kind::Model {
                    "model"
                } else {
                    a.kind().as_str()
                };
                a.manifest().clone()
            }
            Err(e) => {
                nodes.push(Node {
                    level: 0,
                    kind: "model",
                    title: summary.reference(),
                    lines: vec![format!("refused: {e}")],
                    href: Some(version_href(&summary.name, &summary.version)),
                    ok: false,
                });
                reg.show(&reference)?.1.manifest
            }
        };
        let lin = &m.lineage;
        // The run, the checkpoint it kept and the data it read.
        if let Some(run_id) = lin["run_id"].as_str() {
            let run = reg.runs().get(run_id).ok();
            let run_idx = nodes.len();
            nodes.push(Node {
                level: 1,
                kind: "run",
                title: format!("run {run_id}"),
                lines: match &run {
                    Some(r) => vec![
                        format!("{} · seed {}", r.status, text(&lin["seed"])),
                        format!("on {} ({})", r.record.host.hostname, r.record.host.device),
                    ],
                    None => vec!["not recorded on this node".into()],
                },
                href: run.as_ref().map(|r| format!("/runs/{}", r.id)),
                ok: true,
            });
            edges.push((0, run_idx));
            if let Some(epoch) = lin["epoch"].as_u64() {
                nodes.push(Node {
                    level: 2,
                    kind: "checkpoint",
                    title: format!("epoch {epoch} kept"),
                    lines: vec![format!("params {}", short(&text(&lin["params"])))],
                    href: run
                        .as_ref()
                        .map(|r| format!("/runs/{}#epoch-{epoch}", r.id)),
                    ok: true,
                });
                edges.push((run_idx, nodes.len() - 1));
            }
            if let Some(d) = lin["dataset"].as_str() {
                let registered = reg.datasets().list()?.into_iter().find(|x| x.digest == d);
                let mut lines = vec![format!("digest {}", short(d))];
                let mut ok = true;
                if let Some(ds) = &registered {
                    match reg
                        .blob(&ds.digest)
                        .map_err(|e| e.to_string())
                        .and_then(|b| super::datasets::describe(&b))
                    {
                        Ok(i) => lines.push(format!(
                            "{} rows · {}",
                            i.rows,
                            i.columns
                                .iter()
                                .map(|c| c.0.as_str())
                                .collect::<Vec<_>>()
                                .join(", ")
                        )),
                        Err(e) => {
                            ok = false;
                            lines.push(e);
                        }
                    }
                }
                nodes.push(Node {
                    level: 2,
                    kind: "dataset",
                    title: registered.as_ref().map_or_else(
                        || "dataset (a file, not registered)".to_string(),
                        |r| format!("dataset {}", r.name),
                    ),
                    lines,
                    href: registered.map(|r| format!("/datasets/{}", r.name)),
                    ok,
                });
                edges.push((run_idx, nodes.len() - 1));
            }
        }
        // The pipeline and the plugins; a plugin the pipeline also pins
        // hangs under the pipeline.
        let pipeline_pin = m.depends.iter().find(|(_, p)| {
            reg.resolve(&p.exact())
                .is_ok_and(|s| s.kind == Kind::Pipeline)
        });
        let mut pipeline_idx = None;
        let mut pipeline_pins: Vec<String> = Vec::new();
        if let Some((role, pin)) = pipeline_pin {
            let (node, verified) = pin_node(&reg, 1, role, pin);
            pipeline_idx = Some(nodes.len());
            nodes.push(node);
            edges.push((0, nodes.len() - 1));
            if let Some(v) = verified {
                pipeline_pins = v
                    .manifest()
                    .depends
                    .values()
                    .map(|p| p.digest.clone())
                    .collect();
            }
        } else if let Some(file) = lin["pipeline"].as_str() {
            nodes.push(Node {
                level: 1,
                kind: "pipeline",
                title: "pipeline file".into(),
                lines: vec![file.to_string(), "not a published pipeline".into()],
                href: None,
                ok: true,
            });
            pipeline_idx = Some(nodes.len() - 1);
            edges.push((0, nodes.len() - 1));
        }
        for (role, pin) in &m.depends {
            if pipeline_pin.is_some_and(|(r, _)| r == role) {
                continue;
            }
            let under_pipeline = pipeline_idx.is_some()
                && (pipeline_pins.contains(&pin.digest) || pipeline_pin.is_none());
            let (parent, level) = match (under_pipeline, pipeline_idx) {
                (true, Some(p)) => (p, 2),
                _ => (0, 1),
            };
            let (node, _) = pin_node(&reg, level, role, pin);
            nodes.push(node);
            edges.push((parent, nodes.len() - 1));
        }
        // Draw column by column in a stable order.
        let mut order: Vec<usize> = (0..nodes.len()).collect();
        order.sort_by_key(|&i| nodes[i].level);
        let mut new_index = vec![0; nodes.len()];
        for (new, &old) in order.iter().enumerate() {
            new_index[old] = new;
        }
        let sorted: Vec<Node> = order.iter().map(|&i| nodes[i].clone()).collect();
        let edges: Vec<(usize, usize)> = edges
            .into_iter()
            .map(|(a, b)| (new_index[a], new_index[b]))
            .collect();
        Ok(LineagePage {
            layout: Layout::new(format!("Lineage of {}", summary.reference()), "artifacts"),
            href: version_href(&summary.name, &summary.version),
            reference: summary.reference(),
            svg: svg::draw(&sorted, &edges),
            nodes: sorted,
        })
    })
    .await?;
    page(&data)
}
