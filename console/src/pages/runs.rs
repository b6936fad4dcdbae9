//! Runs: the sortable table of every recorded run, one run with its curves
//! and epochs, and runs compared side by side — what `tensorlet runs
//! list|show|compare|plot` print, from the same registry calls.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::Value;
use tensorlet_runtime::pipeline::TrainingConfig;
use tensorlet_runtime::registry::{Registry, RunRecord};
use tensorlet_runtime::train::{self, EpochMetrics};

use super::{
    Layout, Params, blocking, duration, embed_json, epoch_seconds, page, short, text, when,
};
use crate::Console;
use crate::chart::{self, ChartData, Metric};
use crate::error::{ConsoleError, Result};

/// Points a chart ships at first; zooming in asks for more.
const CHART_POINTS: usize = 1000;
/// Rows per page of the runs table and of a run's epochs.
const PAGE_ROWS: usize = 100;

/// A run with its per-epoch metrics.
pub struct LoadedRun {
    pub record: RunRecord,
    pub history: Vec<EpochMetrics>,
    pub params: Vec<String>,
}

impl LoadedRun {
    /// The epoch with the lowest validation loss.
    pub fn best(&self) -> Option<&EpochMetrics> {
        train::best_epoch(&self.history).and_then(|e| self.history.iter().find(|m| m.epoch == e))
    }

    fn planned_epochs(&self) -> u64 {
        self.record.record.config["epochs"]
            .as_u64()
            .unwrap_or_default()
    }

    fn seconds(&self) -> Option<f64> {
        let start = epoch_seconds(&self.record.started)?;
        let end = epoch_seconds(self.record.ended.as_deref()?)?;
        Some((end - start).max(0.0))
    }

    fn pipeline(&self) -> String {
        self.record
            .record
            .pipeline
            .version
            .clone()
            .unwrap_or_else(|| self.record.pipeline.clone())
    }

    fn dataset(&self) -> (String, Option<String>) {
        let d = &self.record.record.dataset;
        match &d.name {
            Some(n) => (n.to_string(), Some(format!("/datasets/{n}"))),
            None if d.digest.is_empty() => ("-".into(), None),
            None => (format!("file {}", short(&d.digest)), None),
        }
    }

    fn host(&self) -> String {
        let h = &self.record.record.host;
        format!("{} ({})", or(&h.hostname, "?"), or(&h.device, "?"))
    }

    /// The recorded training options, each `f32` in its shortest form.
    fn options(&self) -> Value {
        let recorded = &self.record.record.config;
        serde_json::from_value::<TrainingConfig>(recorded.clone())
            .map_or_else(|_| recorded.clone(), |c| c.to_json())
    }
}

/// Loads a run (by id or unique prefix) and its checkpoints' metrics.
pub fn load(reg: &Registry, id: &str) -> Result<LoadedRun> {
    let record = reg.runs().get(id)?;
    load_record(reg, record)
}

fn load_record(reg: &Registry, record: RunRecord) -> Result<LoadedRun> {
    let checkpoints = reg.runs().checkpoints::<EpochMetrics>(&record.id)?;
    let mut history = Vec::with_capacity(checkpoints.len());
    let mut params = Vec::with_capacity(checkpoints.len());
    for c in checkpoints {
        history.push(c.metrics);
        params.push(c.params);
    }
    Ok(LoadedRun {
        record,
        history,
        params,
    })
}

/// A recorded text, or `or` when the record lacks it.
fn or<'a>(text: &'a str, or: &'a str) -> &'a str {
    if text.is_empty() { or } else { text }
}

fn fmt_metric(v: Option<f32>) -> String {
    v.map_or_else(|| "-".into(), |v| format!("{v:.4}"))
}

/// One row of the runs table.
pub struct RunRow {
    pub id: String,
    pub status: String,
    pub pipeline: String,
    pub dataset: String,
    pub dataset_href: Option<String>,
    pub best: String,
    pub duration: String,
    pub host: String,
    pub epochs: String,
    pub started: String,
    pub model: Option<(String, String)>,
    best_loss: Option<f32>,
    seconds: Option<f64>,
    started_raw: String,
}

impl RunRow {
    fn of(r: &LoadedRun) -> Self {
        let (dataset, dataset_href) = r.dataset();
        RunRow {
            id: r.record.id.clone(),
            status: r.record.status.to_string(),
            pipeline: r.pipeline(),
            dataset,
            dataset_href,
            best: r.best().map_or_else(
                || "-".into(),
                |m| {
                    format!(
                        "val_loss {} · acc {} @{}",
                        fmt_metric(m.val_loss),
                        fmt_metric(m.val_accuracy),
                        m.epoch
                    )
                },
            ),
            best_loss: r.best().and_then(|m| m.val_loss),
            duration: r.seconds().map_or_else(
                || {
                    if r.record.ended.is_none() {
                        "running".into()
                    } else {
                        "-".into()
                    }
                },
                duration,
            ),
            seconds: r.seconds(),
            host: r.host(),
            epochs: format!("{}/{}", r.history.len(), r.planned_epochs()),
            started: when(&r.record.started),
            started_raw: r.record.started.clone(),
            model: r.record.model.as_ref().map(|m| (m.clone(), model_href(m))),
        }
    }
}

/// `ns/name@1.0.0` → its version page.
pub fn model_href(reference: &str) -> String {
    match reference.split_once('@') {
        Some((n, v)) => super::artifacts::version_href(n, v),
        None => super::artifacts::href(reference),
    }
}

/// A column header link that sorts by it.
pub struct SortLink {
    pub label: &'static str,
    pub href: String,
    pub aria: &'static str,
    pub arrow: &'static str,
}

#[derive(Template)]
#[template(path = "runs.html")]
struct ListPage {
    layout: Layout,
    rows: Vec<RunRow>,
    columns: Vec<SortLink>,
    total: usize,
    status: String,
    statuses: Vec<&'static str>,
    pages: Vec<(u64, String, bool)>,
}

const SORTS: &[(&str, &str)] = &[
    ("id", "Run"),
    ("status", "Status"),
    ("pipeline", "Pipeline"),
    ("dataset", "Dataset"),
    ("best", "Best (lowest val_loss)"),
    ("duration", "Duration"),
    ("host", "Host"),
    ("epochs", "Epochs"),
    ("started", "Started"),
];

/// `GET /runs?sort=&order=&status=&page=`.
pub async fn list(State(console): State<Arc<Console>>, RawQuery(q): RawQuery) -> Result<Response> {
    let params = Params::parse(q.as_deref(), &["sort", "order", "status", "page"])?;
    let keys: Vec<&str> = SORTS.iter().map(|s| s.0).collect();
    let sort = params.choice("sort", &keys)?.unwrap_or("started");
    let default_order = if sort == "started" { "desc" } else { "asc" };
    let order = params
        .choice("order", &["asc", "desc"])?
        .unwrap_or(default_order);
    let statuses = vec!["running", "completed", "failed", "interrupted"];
    let status = params.choice("status", &statuses)?.unwrap_or("");
    let page_no = params.number("page", 1, 1_000_000, 1)?;
    let data = blocking(move || {
        let reg = console.registry()?;
        let mut rows = Vec::new();
        for record in reg.runs().list()? {
            if !status.is_empty() && record.status.as_str() != status {
                continue;
            }
            rows.push(RunRow::of(&load_record(&reg, record)?));
        }
        sort_rows(&mut rows, sort, order == "desc");
        let total = rows.len();
        let pages = total.div_ceil(PAGE_ROWS).max(1) as u64;
        if page_no > pages {
            return Err(ConsoleError::BadRequest(format!(
                "`page` must be from 1 to {pages}, not {page_no}"
            )));
        }
        let rows: Vec<RunRow> = rows
            .into_iter()
            .skip((page_no as usize - 1) * PAGE_ROWS)
            .take(PAGE_ROWS)
            .collect();
        let link = |s: &str, o: &str, p: u64| {
            let mut q = format!("/runs?sort={s}&order={o}");
            if !status.is_empty() {
                q.push_str(&format!("&status={status}"));
            }
            if p > 1 {
                q.push_str(&format!("&page={p}"));
            }
            q
        };
        let columns = SORTS
            .iter()
            .map(|(key, label)| {
                let current = *key == sort;
                let next = if current && order == "asc" {
                    "desc"
                } else {
                    "asc"
                };
                SortLink {
                    label,
                    href: link(key, next, 1),
                    aria: match (current, order) {
                        (false, _) => "none",
                        (true, "asc") => "ascending",
                        (true, _) => "descending",
                    },
                    arrow: match (current, order) {
                        (false, _) => "",
                        (true, "asc") => " ▲",
                        (true, _) => " ▼",
                    },
                }
            })
            .collect();
        Ok(ListPage {
            layout: Layout::new("Runs", "runs"),
            rows,
            columns,
            total,
            status: status.to_string(),
            statuses,
            pages: (1..=pages)
                .map(|p| (p, link(sort, order, p), p == page_no))
                .collect(),
        })
    })
    .await?;
    page(&data)
}

fn sort_rows(rows: &mut [RunRow], key: &str, desc: bool) {
    let num = |v: Option<f64>| v.unwrap_or(f64::INFINITY);
    rows.sort_by(|a, b| {
        let o = match key {
            "id" => a.id.cmp(&b.id),
            "status" => a.status.cmp(&b.status),
            "pipeline" => a.pipeline.cmp(&b.pipeline),
            "dataset" => a.dataset.cmp(&b.dataset),
            "best" => num(a.best_loss.map(f64::from)).total_cmp(&num(b.best_loss.map(f64::from))),
            "duration" => num(a.seconds).total_cmp(&num(b.seconds)),
            "host" => a.host.cmp(&b.host),
            "epochs" => a
                .epochs
                .len()
                .cmp(&b.epochs.len())
                .then(a.epochs.cmp(&b.epochs)),
            _ => a.started_raw.cmp(&b.started_raw),
        };
        let o = o.then_with(|| a.id.cmp(&b.id));
        if desc { o.reverse() } else { o }
    });
}

pub struct EpochRow {
    pub epoch: u32,
    pub train_loss: String,
    pub val_loss: String,
    pub val_accuracy: String,
    pub seconds: String,
    pub params: String,
    pub best: bool,
}

pub struct Fact {
    pub label: String,
    pub value: String,
    pub href: Option<String>,
}

pub struct ChartView {
    pub id: String,
    pub title: String,
    pub data: String,
}

#[derive(Template)]
#[template(path = "run.html")]
struct RunPage {
    layout: Layout,
    id: String,
    status: String,
    facts: Vec<Fact>,
    options: Vec<(String, String)>,
    plugins: Vec<Fact>,
    charts: Vec<ChartView>,
    epochs: Vec<EpochRow>,
    epochs_total: usize,
    pages: Vec<(u64, String, bool)>,
    error: Option<String>,
    lineage: Option<String>,
}

fn options_table(options: &Value) -> Vec<(String, String)> {
    match options {
        Value::Object(o) => o.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        other => vec![("config".into(), text(other))],
    }
}

/// `GET /runs/{id}?epochs_page=`.
pub async fn show(
    State(console): State<Arc<Console>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let params = Params::parse(q.as_deref(), &["epochs_page"])?;
    let page_no = params.number("epochs_page", 1, 1_000_000, 1)?;
    let data = blocking(move || {
        let reg = console.registry()?;
        let r = load(&reg, &id)?;
        let rec = &r.record.record;
        let id = r.record.id.clone();
        let (dataset, dataset_href) = r.dataset();
        let mut facts = vec![
            Fact {
                label: "Pipeline".into(),
                value: r.pipeline(),
                href: rec.pipeline.version.as_deref().map(model_href),
            },
            Fact {
                label: "Dataset".into(),
                value: format!("{dataset} ({})", or(&rec.dataset.digest, "-")),
                href: dataset_href,
            },
            Fact {
                label: "Started".into(),
                value: when(&r.record.started),
                href: None,
            },
            Fact {
                label: "Ended".into(),
                value: r.record.ended.as_deref().map_or("-".into(), when),
                href: None,
            },
            Fact {
                label: "Duration".into(),
                value: r.seconds().map_or("-".into(), duration),
                href: None,
            },
            Fact {
                label: "Host".into(),
                value: format!(
                    "{} ({} {}, {}, {} CPUs) on {}",
                    or(&rec.host.hostname, "-"),
                    or(&rec.host.os, "-"),
                    or(&rec.host.arch, "-"),
                    or(&rec.host.cpu, "-"),
                    rec.host.cpus,
                    or(&rec.host.device, "-"),
                ),
                href: None,
            },
            Fact {
                label: "tensorlet".into(),
                value: or(&rec.tensorlet_version, "-").to_string(),
                href: None,
            },
            Fact {
                label: "Seed".into(),
                value: rec.seed.to_string(),
                href: None,
            },
        ];
        if let Some(m) = &r.record.model {
            facts.push(Fact {
                label: "Model".into(),
                value: m.clone(),
                href: Some(model_href(m)),
            });
        }
        let plugins = rec
            .plugins
            .stage_names()
            .into_iter()
            .map(|stage| {
                let p = rec.plugins.stage(&stage);
                let name = p
                    .and_then(|p| p.artifact.as_deref().or(Some(p.name.as_str())))
                    .map_or("?", |n| or(n, "?"));
                Fact {
                    label: stage.clone(),
                    value: format!("{name} · {}", p.map_or("-", |p| or(&p.digest, "-"))),
                    href: p.and_then(|p| p.artifact.as_deref()).map(model_href),
                }
            })
            .collect();
        let best = r.best().map(|m| m.epoch);
        let total = r.history.len();
        let pages = total.div_ceil(PAGE_ROWS).max(1) as u64;
        if page_no > pages {
            return Err(ConsoleError::BadRequest(format!(
                "`epochs_page` must be from 1 to {pages}, not {page_no}"
            )));
        }
        let epochs = r
            .history
            .iter()
            .zip(&r.params)
            .skip((page_no as usize - 1) * PAGE_ROWS)
            .take(PAGE_ROWS)
            .map(|(m, p)| EpochRow {
                epoch: m.epoch,
                train_loss: format!("{:.4}", m.train_loss),
                val_loss: fmt_metric(m.val_loss),
                val_accuracy: fmt_metric(m.val_accuracy),
                seconds: format!("{:.3}", m.seconds),
                params: short(p),
                best: best == Some(m.epoch),
            })
            .collect();
        let charts = [Metric::Loss, Metric::Accuracy]
            .into_iter()
            .map(|metric| {
                let detail = format!("/runs/{id}/curves.json?chart={}", metric.name());
                let c = chart::run_chart(&r.history, metric, None, CHART_POINTS, Some(detail));
                ChartView {
                    id: format!("chart-{}", metric.name()),
                    title: c.title.clone(),
                    data: embed_json(&c),
                }
            })
            .collect();
        let lineage = r
            .record
            .model
            .as_ref()
            .and_then(|m| m.split_once('@').map(|(n, v)| format!("/lineage/{n}/{v}")));
        Ok(RunPage {
            layout: Layout::new(format!("Run {id}"), "runs"),
            status: r.record.status.to_string(),
            facts,
            options: options_table(&r.options()),
            plugins,
            charts,
            epochs,
            epochs_total: total,
            pages: (1..=pages)
                .map(|p| {
                    (
                        p,
                        format!("/runs/{id}?epochs_page={p}#epochs"),
                        p == page_no,
                    )
                })
                .collect(),
            error: r.record.error.clone(),
            lineage,
            id,
        })
    })
    .await?;
    page(&data)
}

/// `GET /runs/{id}/curves.json?chart=loss|accuracy&from=&to=&points=`: a
/// chart's data, for zooming in at full resolution.
pub async fn curves(
    State(console): State<Arc<Console>>,
    Path(id): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let params = Params::parse(q.as_deref(), &["chart", "from", "to", "points"])?;
    let metric = Metric::parse(
        params
            .choice("chart", &["loss", "accuracy"])?
            .unwrap_or("loss"),
    )
    .expect("a chart name");
    let from = params.number("from", 0, u64::from(u32::MAX), 0)? as u32;
    let to = params.number("to", 0, u64::from(u32::MAX), u64::from(u32::MAX))? as u32;
    if from > to {
        return Err(ConsoleError::BadRequest(format!(
            "`from` ({from}) is after `to` ({to})"
        )));
    }
    let points = params.number("points", 10, 5000, CHART_POINTS as u64)? as usize;
    let data = blocking(move || {
        let reg = console.registry()?;
        let r = load(&reg, &id)?;
        Ok(chart::run_chart(
            &r.history,
            metric,
            Some((from, to)),
            points,
            None,
        ))
    })
    .await?;
    Ok(json(&data))
}

fn json(v: &ChartData) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json")],
        serde_json::to_string(v).unwrap_or_default(),
    )
        .into_response()
}

/// A row of the comparison: a field and its value per run.
pub struct CompareRow {
    pub field: String,
    pub values: Vec<String>,
    pub differs: bool,
}

#[derive(Template)]
#[template(path = "compare.html")]
struct ComparePage {
    layout: Layout,
    runs: Vec<(String, String)>,
    rows: Vec<CompareRow>,
    charts: Vec<ChartView>,
}

/// The rows of `runs compare`.
fn comparison(runs: &[LoadedRun]) -> Vec<CompareRow> {
    let mut rows = Vec::new();
    let mut add = |field: &str, f: &dyn Fn(&LoadedRun) -> String| {
        let values: Vec<String> = runs.iter().map(f).collect();
        let differs = values.iter().any(|v| v != &values[0]);
        rows.push(CompareRow {
            field: field.to_string(),
            values,
            differs,
        });
    };
    add("status", &|r| r.record.status.to_string());
    add("pipeline", &|r| r.pipeline());
    add("dataset", &|r| {
        or(&r.record.record.dataset.digest, "-").to_string()
    });
    let mut keys: BTreeMap<String, ()> = BTreeMap::new();
    for r in runs {
        if let Value::Object(o) = r.options() {
            keys.extend(o.keys().map(|k| (k.clone(), ())));
        }
    }
    for k in keys.keys() {
        add(&format!("config.{k}"), &|r| text(&r.options()[k]));
    }
    let stages = tensorlet_registry::RunPlugins::stage_names_of(
        runs.iter().map(|r| &r.record.record.plugins),
    );
    for stage in &stages {
        add(stage, &|r| {
            let p = r.record.record.plugins.stage(stage);
            p.map_or("-", |p| or(&p.digest, "-")).to_string()
        });
    }
    add("device", &|r| {
        or(&r.record.record.host.device, "-").to_string()
    });
    add("host", &|r| {
        or(&r.record.record.host.hostname, "-").to_string()
    });
    add("tensorlet", &|r| {
        or(&r.record.record.tensorlet_version, "-").to_string()
    });
    add("epochs done", &|r| r.history.len().to_string());
    add("best epoch", &|r| {
        r.best().map_or("-".into(), |m| m.epoch.to_string())
    });
    add("best val_loss", &|r| {
        fmt_metric(r.best().and_then(|m| m.val_loss))
    });
    add("best val_accuracy", &|r| {
        fmt_metric(r.best().and_then(|m| m.val_accuracy))
    });
    add("final train_loss", &|r| {
        fmt_metric(r.history.last().map(|m| m.train_loss))
    });
    add("final val_accuracy", &|r| {
        fmt_metric(r.history.last().and_then(|m| m.val_accuracy))
    });
    add("final params", &|r| {
        r.params.last().map_or("-".into(), |p| short(p))
    });
    add("model", &|r| r.record.model.clone().unwrap_or("-".into()));
    rows
}

/// `GET /runs/compare?run=a&run=b[&run=…]`.
pub async fn compare(
    State(console): State<Arc<Console>>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    let params = Params::parse(q.as_deref(), &["run"])?;
    let ids: Vec<String> = params.all("run").into_iter().map(String::from).collect();
    if !(2..=8).contains(&ids.len()) {
        return Err(ConsoleError::BadRequest(format!(
            "compare takes 2 to 8 runs (`?run=<id>&run=<id>`), not {}",
            ids.len()
        )));
    }
    let data = blocking(move || {
        let reg = console.registry()?;
        let runs = ids
            .iter()
            .map(|id| load(&reg, id))
            .collect::<Result<Vec<_>>>()?;
        let series: Vec<(String, &[EpochMetrics])> = runs
            .iter()
            .map(|r| (r.record.id.clone(), r.history.as_slice()))
            .collect();
        let charts = [Metric::Loss, Metric::Accuracy]
            .into_iter()
            .map(|metric| {
                let c = chart::compare_chart(&series, metric, CHART_POINTS);
                ChartView {
                    id: format!("chart-{}", metric.name()),
                    title: c.title.clone(),
                    data: embed_json(&c),
                }
            })
            .collect();
        Ok(ComparePage {
            layout: Layout::new("Compare runs", "runs"),
            rows: comparison(&runs),
            runs: runs
                .iter()
                .map(|r| (r.record.id.clone(), format!("/runs/{}", r.record.id)))
                .collect(),
            charts,
        })
    })
    .await?;
    page(&data)
}
