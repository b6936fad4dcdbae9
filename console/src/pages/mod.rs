//! The page handlers, one module per page, and what they share: the layout,
//! the HTML response, query-parameter validation and formatting.

pub mod actions;
pub mod artifacts;
pub mod audit;
pub mod datasets;
pub mod lineage;
pub mod runs;
pub mod serving;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{ConsoleError, Result};

/// What every page's frame needs: the title and which section is current.
pub struct Layout {
    /// The page's title.
    pub title: String,
    /// The section whose link is marked current (`artifacts`, `runs`, …).
    pub active: &'static str,
    /// Whether this is the serving-only console of `tensorlet serve`.
    pub serving_only: bool,
}

impl Layout {
    /// A page of the full console.
    pub fn new(title: impl Into<String>, active: &'static str) -> Self {
        Layout {
            title: title.into(),
            active,
            serving_only: false,
        }
    }

    /// tensorlet's version.
    pub fn version(&self) -> &'static str {
        env!("CARGO_PKG_VERSION")
    }

    /// The vendored uPlot's version, for the footer's licence notice.
    pub fn uplot_version(&self) -> &'static str {
        crate::assets::UPLOT_VERSION
    }

    /// The `aria-current` attribute for the nav link of `section`.
    pub fn current(&self, section: &str) -> &'static str {
        if self.active == section {
            "page"
        } else {
            "false"
        }
    }
}

/// An HTML response.
pub fn html(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
        body,
    )
        .into_response()
}

/// Renders a template as a 200 page.
pub fn page(t: &impl askama::Template) -> Result<Response> {
    Ok(html(StatusCode::OK, t.render()?))
}

/// Query parameters (or form fields), checked against the names a page
/// accepts: an unknown name is an error rather than silently ignored.
pub struct Params {
    pairs: Vec<(String, String)>,
}

impl Params {
    /// Parses `raw` (`a=1&b=2`), accepting only `allowed` names.
    pub fn parse(raw: Option<&str>, allowed: &[&str]) -> Result<Self> {
        let pairs: Vec<(String, String)> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        if let Some((k, _)) = pairs.iter().find(|(k, _)| !allowed.contains(&k.as_str())) {
            return Err(ConsoleError::BadRequest(format!(
                "unknown parameter `{k}`; this page takes {}",
                if allowed.is_empty() {
                    "no parameters".to_string()
                } else {
                    allowed
                        .iter()
                        .map(|a| format!("`{a}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            )));
        }
        Ok(Params { pairs })
    }

    /// The value of `key` (the last one given), or `None` when absent or empty.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    }

    /// A required value.
    pub fn required(&self, key: &str) -> Result<&str> {
        self.get(key)
            .ok_or_else(|| ConsoleError::BadRequest(format!("`{key}` is required")))
    }

    /// Every non-empty value of `key`, in order.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.pairs
            .iter()
            .filter(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// A whole number in `min..=max`, or `default` when absent.
    pub fn number(&self, key: &str, min: u64, max: u64, default: u64) -> Result<u64> {
        let Some(v) = self.get(key) else {
            return Ok(default);
        };
        match v.parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(ConsoleError::BadRequest(format!(
                "`{key}` must be a whole number from {min} to {max}, not `{v}`"
            ))),
        }
    }

    /// One of `choices`, or `None` when absent.
    pub fn choice<'c>(&self, key: &str, choices: &[&'c str]) -> Result<Option<&'c str>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match choices.iter().find(|c| **c == v) {
            Some(c) => Ok(Some(c)),
            None => Err(ConsoleError::BadRequest(format!(
                "`{key}` must be one of {}, not `{v}`",
                choices
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        }
    }
}

/// `sha256:0123456789ab…` → `0123456789ab` (12 hex digits), for tables.
pub fn short(digest: &str) -> String {
    let hex = digest.trim_start_matches("sha256:");
    hex[..hex.len().min(12)].to_string()
}

/// Bytes for people: `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    tensorlet_runtime::human_bytes(usize::try_from(n).unwrap_or(usize::MAX))
}

/// Seconds for people: `850 ms`, `12.3 s`, `4 min 05 s`, `2 h 03 min`.
pub fn duration(secs: f64) -> String {
    if secs < 1.0 {
        format!("{:.0} ms", secs * 1000.0)
    } else if secs < 60.0 {
        format!("{secs:.1} s")
    } else if secs < 3600.0 {
        let s = secs.round() as u64;
        format!("{} min {:02} s", s / 60, s % 60)
    } else {
        let m = (secs / 60.0).round() as u64;
        format!("{} h {:02} min", m / 60, m % 60)
    }
}

/// `2026-12-04T11:38:51.123Z` → `2026-12-04 11:38:51`.
pub fn when(rfc3339: &str) -> String {
    let t = rfc3339.replace('T', " ");
    t.get(..19).map_or(t.clone(), str::to_string)
}

/// Seconds since the Unix epoch of a `YYYY-MM-DDTHH:MM:SS[.mmm]Z` time.
pub fn epoch_seconds(rfc3339: &str) -> Option<f64> {
    let b = rfc3339.as_bytes();
    if b.len() < 19 {
        return None;
    }
    let num = |r: std::ops::Range<usize>| rfc3339.get(r)?.parse::<i64>().ok();
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hh, mm, ss) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let frac = rfc3339
        .get(19..)
        .and_then(|r| r.strip_prefix('.'))
        .map(|r| r.trim_end_matches('Z'))
        .and_then(|r| format!("0.{r}").parse::<f64>().ok())
        .unwrap_or(0.0);
    // Days from civil (Howard Hinnant).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60 + ss) as f64 + frac)
}

/// A JSON value as one line of text: strings bare, null as `-`.
pub fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Null => "-".into(),
        other => other.to_string(),
    }
}

/// JSON to embed in a `<script type="application/json">` block: `<` is
/// escaped so that no `</script>` inside a value can end the block.
pub fn embed_json(v: &impl serde::Serialize) -> String {
    serde_json::to_string(v)
        .unwrap_or_else(|_| "null".into())
        .replace('<', "\\u003c")
}

/// Runs `f` on the blocking pool (registry calls are SQLite and file reads).
pub async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(ConsoleError::Internal(format!("page worker: {e}"))))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_parse_to_epoch_seconds() {
        assert_eq!(epoch_seconds("1970-01-01T00:00:00Z"), Some(0.0));
        assert_eq!(
            epoch_seconds("2000-03-01T00:00:01.500Z"),
            Some(951_868_801.5)
        );
        assert_eq!(epoch_seconds("nonsense"), None);
    }

    #[test]
    fn params_refuse_unknown_names_and_bad_values() {
        let p = Params::parse(
            Some("sort=status&page=2&run=a&run=b"),
            &["sort", "page", "run"],
        )
        .unwrap();
        assert_eq!(p.get("sort"), Some("status"));
        assert_eq!(p.all("run"), ["a", "b"]);
        assert_eq!(p.number("page", 1, 10, 1).unwrap(), 2);
        assert!(p.number("page", 3, 10, 3).is_err());
        assert!(p.choice("sort", &["id"]).is_err());
        let e = Params::parse(Some("srot=id"), &["sort"]).err().unwrap();
        assert!(e.to_string().contains("unknown parameter `srot`"), "{e}");
    }

    #[test]
    fn embedded_json_cannot_end_its_script_block() {
        let s = embed_json(&serde_json::json!({"x": "</script><script>alert(1)"}));
        assert!(!s.contains("</"), "{s}");
    }
}
