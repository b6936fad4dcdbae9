//! Audit: the log, newest first, filterable by action and subject, under
//! the state of its verification (`tensorlet audit verify`): the chain, the
//! node's signatures, the signed checkpoint and the index; when it fails,
//! the first bad entry is named and marked in the table.

use std::collections::BTreeSet;
use std::sync::Arc;

use askama::Template;
use axum::extract::{RawQuery, State};
use axum::response::Response;

use super::{Layout, Params, blocking, page, when};
use crate::Console;
use crate::error::{ConsoleError, Result};

const PAGE_ROWS: usize = 100;

pub struct EntryRow {
    pub seq: i64,
    pub time: String,
    pub action: String,
    pub subject: String,
    pub detail: String,
    pub hash: String,
    pub bad: bool,
}

#[derive(Template)]
#[template(path = "audit.html")]
struct AuditPage {
    layout: Layout,
    verified: bool,
    verification: String,
    bad_entry: Option<i64>,
    entries: Vec<EntryRow>,
    total: usize,
    matching: usize,
    actions: Vec<String>,
    action: String,
    subject: String,
    pages: Vec<(u64, String, bool)>,
}

/// The entry a verification failure names first ("entry 7 (…) was edited").
fn named_entry(message: &str) -> Option<i64> {
    let at = message.find("entry ")?;
    message[at + "entry ".len()..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// `GET /audit?action=&subject=&page=`.
pub async fn log(State(console): State<Arc<Console>>, RawQuery(q): RawQuery) -> Result<Response> {
    let params = Params::parse(q.as_deref(), &["action", "subject", "page"])?;
    let action = params.get("action").unwrap_or("").to_string();
    let subject = params.get("subject").unwrap_or("").to_string();
    let page_no = params.number("page", 1, 1_000_000, 1)?;
    let data = blocking(move || {
        let reg = console.registry()?;
        let (verified, verification, bad_entry) = match reg.audit_verify() {
            Ok(r) => (
                true,
                format!(
                    "The log verifies: {} entries, hash-chained and signed by this node; the \
                     signed checkpoint records {}.",
                    r.entries, r.checkpoint
                ),
                None,
            ),
            Err(e) => {
                let m = e.to_string();
                (false, m.clone(), named_entry(&m))
            }
        };
        let log = reg.audit_log()?;
        let total = log.len();
        let actions: Vec<String> = log
            .iter()
            .map(|e| e.action.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        if !action.is_empty() && !actions.contains(&action) {
            return Err(ConsoleError::BadRequest(format!(
                "`action` must be one of the actions in the log ({}), not `{action}`",
                actions.join(", ")
            )));
        }
        let needle = subject.to_lowercase();
        let matching: Vec<EntryRow> = log
            .into_iter()
            .rev()
            .filter(|e| action.is_empty() || e.action == action)
            .filter(|e| needle.is_empty() || e.subject.to_lowercase().contains(&needle))
            .map(|e| EntryRow {
                bad: bad_entry == Some(e.seq),
                seq: e.seq,
                time: when(&e.time),
                action: e.action,
                subject: e.subject,
                detail: e.detail.to_string(),
                hash: e.hash,
            })
            .collect();
        let count = matching.len();
        let pages = count.div_ceil(PAGE_ROWS).max(1) as u64;
        if page_no > pages {
            return Err(ConsoleError::BadRequest(format!(
                "`page` must be from 1 to {pages}, not {page_no}"
            )));
        }
        let link = |p: u64| {
            let mut q = form_urlencoded::Serializer::new(String::new());
            if !action.is_empty() {
                q.append_pair("action", &action);
            }
            if !subject.is_empty() {
                q.append_pair("subject", &subject);
            }
            q.append_pair("page", &p.to_string());
            format!("/audit?{}", q.finish())
        };
        Ok(AuditPage {
            layout: Layout::new("Audit log", "audit"),
            verified,
            verification,
            bad_entry,
            entries: matching
                .into_iter()
                .skip((page_no as usize - 1) * PAGE_ROWS)
                .take(PAGE_ROWS)
                .collect(),
            total,
            matching: count,
            pages: (1..=pages).map(|p| (p, link(p), p == page_no)).collect(),
            actions,
            action,
            subject,
        })
    })
    .await?;
    page(&data)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_first_bad_entry_is_found_in_the_message() {
        assert_eq!(
            super::named_entry("audit log: entry 7 (promote acme/x@prod) was edited"),
            Some(7)
        );
        assert_eq!(super::named_entry("the checkpoint file is missing"), None);
    }
}
