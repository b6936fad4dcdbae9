//! Datasets: every registered dataset with its versions (one per content
//! digest), and for each its schema and row count, read from the snapshot
//! the registry keeps (so they describe the bytes a run trained on, not the
//! file as it is now). A snapshot is immutable, so what is read of it is
//! kept by digest.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Path, RawQuery, State};
use axum::response::Response;
use tensorlet_runtime::registry::{Dataset, Registry};

use super::{Layout, Params, blocking, bytes, page, when};
use crate::Console;
use crate::error::{ConsoleError, Result};

/// What a snapshot holds: its columns and rows.
#[derive(Clone, Debug, PartialEq)]
pub struct DatasetInfo {
    /// Columns in order: (name, type, role).
    pub columns: Vec<(String, &'static str, &'static str)>,
    /// Data rows (the header not counted).
    pub rows: usize,
}

/// Reads the header, the column types (`number` when every value parses as
/// one, else `text`) and the row count of CSV bytes. The label is the column
/// named `label`, else the last (as training reads it).
pub fn describe(csv: &[u8]) -> Result<DatasetInfo, String> {
    let text =
        std::str::from_utf8(csv).map_err(|_| "the snapshot is not UTF-8 text".to_string())?;
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let header: Vec<String> = lines
        .next()
        .ok_or("the snapshot is empty")?
        .split(',')
        .map(|f| f.trim().trim_matches('"').to_string())
        .collect();
    let mut numeric = vec![true; header.len()];
    let mut rows = 0;
    for line in lines {
        rows += 1;
        for (i, f) in line.split(',').enumerate().take(header.len()) {
            let f = f.trim().trim_matches('"');
            if numeric[i] && f.parse::<f64>().is_err() {
                numeric[i] = false;
            }
        }
    }
    let label = header
        .iter()
        .position(|h| h == "label")
        .unwrap_or(header.len().saturating_sub(1));
    let columns = header
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            (
                name,
                if numeric[i] { "number" } else { "text" },
                if i == label { "label" } else { "feature" },
            )
        })
        .collect();
    Ok(DatasetInfo { columns, rows })
}

/// The snapshot's description, worked out once per digest.
fn info(console: &Console, reg: &Registry, d: &Dataset) -> Result<Arc<DatasetInfo>, String> {
    let cache = || {
        console
            .dataset_info
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    };
    if let Some(i) = cache().get(&d.digest) {
        return Ok(i.clone());
    }
    let bytes = reg.blob(&d.digest).map_err(|e| e.to_string())?;
    let i = Arc::new(describe(&bytes)?);
    cache().insert(d.digest.clone(), i.clone());
    Ok(i)
}

/// One version of a dataset.
pub struct VersionView {
    pub digest: String,
    pub size: String,
    pub added: String,
    pub path: String,
    pub rows: String,
    pub schema: String,
    pub columns: Vec<(String, &'static str, &'static str)>,
    pub problem: Option<String>,
}

/// A dataset with its versions, newest first.
pub struct DatasetView {
    pub name: String,
    pub href: String,
    pub versions: Vec<VersionView>,
}

fn views(console: &Console, reg: &Registry, only: Option<&str>) -> Result<Vec<DatasetView>> {
    let mut by_name: BTreeMap<String, Vec<VersionView>> = BTreeMap::new();
    for d in reg.datasets().list()? {
        if only.is_some_and(|n| n != d.name) {
            continue;
        }
        let (rows, columns, problem) = match info(console, reg, &d) {
            Ok(i) => (i.rows.to_string(), i.columns.clone(), None),
            Err(e) => ("-".into(), Vec::new(), Some(e)),
        };
        by_name
            .entry(d.name.clone())
            .or_default()
            .push(VersionView {
                schema: columns
                    .iter()
                    .map(|(n, t, _)| format!("{n}: {t}"))
                    .collect::<Vec<_>>()
                    .join(", "),
                digest: d.digest.clone(),
                size: bytes(d.size),
                added: when(&d.added),
                path: d.path.clone(),
                rows,
                columns,
                problem,
            });
    }
    Ok(by_name
        .into_iter()
        .map(|(name, versions)| DatasetView {
            href: format!("/datasets/{name}"),
            name,
            versions,
        })
        .collect())
}

#[derive(Template)]
#[template(path = "datasets.html")]
struct ListPage {
    layout: Layout,
    datasets: Vec<DatasetView>,
}

/// `GET /datasets`.
pub async fn list(State(console): State<Arc<Console>>, RawQuery(q): RawQuery) -> Result<Response> {
    Params::parse(q.as_deref(), &[])?;
    let data = blocking(move || {
        let reg = console.registry()?;
        Ok(ListPage {
            layout: Layout::new("Datasets", "datasets"),
            datasets: views(&console, &reg, None)?,
        })
    })
    .await?;
    page(&data)
}

#[derive(Template)]
#[template(path = "dataset.html")]
struct ShowPage {
    layout: Layout,
    dataset: DatasetView,
}

/// `GET /datasets/{name}`.
pub async fn show(
    State(console): State<Arc<Console>>,
    Path(name): Path<String>,
    RawQuery(q): RawQuery,
) -> Result<Response> {
    Params::parse(q.as_deref(), &[])?;
    let data = blocking(move || {
        let reg = console.registry()?;
        let dataset = views(&console, &reg, Some(&name))?.pop().ok_or_else(|| {
            ConsoleError::NotFound(format!("there is no dataset `{name}` in this registry"))
        })?;
        Ok(ShowPage {
            layout: Layout::new(format!("Dataset {name}"), "datasets"),
            dataset,
        })
    })
    .await?;
    page(&data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn describes_columns_types_label_and_rows() {
        let i = describe(b"a,b,species\n1,2,0\n\n3,x,1\n").unwrap();
        assert_eq!(i.rows, 2);
        assert_eq!(
            i.columns,
            [
                ("a".to_string(), "number", "feature"),
                ("b".to_string(), "text", "feature"),
                ("species".to_string(), "number", "label"),
            ]
        );
        let l = describe(b"label,x\n1,2\n").unwrap();
        assert_eq!(l.columns[0].2, "label");
        assert!(describe(b"").is_err());
    }
}
