//! Actions: promote, rollback, alias set and yank, through the same library
//! calls as the CLI's `promote`, `rollback`, `alias set` and `yank`, so each
//! is verified (an untrusted or tampered version is never pointed at) and
//! audited exactly as there. Every action is a POST with this process's
//! token, refused when actions are off or the request is cross-site
//! ([`crate::security::check_action`]).

use std::sync::Arc;

use askama::Template;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use tensorlet_runtime::registry::{Reference, Registry, Selector, check_name, check_version};

use super::{Layout, Params, blocking, page};
use crate::Console;
use crate::error::{ConsoleError, Result};
use crate::security;

#[derive(Template)]
#[template(path = "outcome.html")]
struct Outcome {
    layout: Layout,
    message: String,
    back: String,
}

/// Checks the request, parses its form (only `fields` and the token), runs
/// `act` on the registry and shows what it did.
async fn act(
    console: Arc<Console>,
    headers: HeaderMap,
    body: Bytes,
    fields: &'static [&'static str],
    act: impl FnOnce(&Registry, &Params) -> Result<(String, String)> + Send + 'static,
) -> Result<Response> {
    let raw = std::str::from_utf8(&body)
        .map_err(|_| ConsoleError::BadRequest("the form is not UTF-8".into()))?
        .to_string();
    let outcome = blocking(move || {
        let reg = console.registry()?;
        let mut allowed = fields.to_vec();
        allowed.push("token");
        let form = Params::parse(Some(&raw), &allowed)?;
        security::check_action(&console, &reg, &headers, form.get("token"))?;
        let (message, back) = act(&reg, &form)?;
        Ok(Outcome {
            layout: Layout::new("Done", "artifacts"),
            message,
            back,
        })
    })
    .await?;
    page(&outcome)
}

fn name_field(form: &Params) -> Result<String> {
    let name = form.required("name")?;
    check_name(name)?;
    Ok(name.to_string())
}

/// `POST /actions/promote` (`name`, `version`, `alias`): `tensorlet promote
/// name@version --to alias`.
pub async fn promote(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    act(
        console,
        headers,
        body,
        &["name", "version", "alias"],
        |reg, form| {
            let name = name_field(form)?;
            let version = check_version(form.required("version")?)?;
            let alias = form.required("alias")?;
            let m = reg.promote(
                &Reference {
                    name: name.clone(),
                    selector: Selector::Version(version),
                },
                alias,
            )?;
            let message = match &m.from {
                Some(from) if from == &m.to => {
                    format!("{}@{} already points at {}.", m.name, m.alias, m.to)
                }
                Some(from) => format!(
                    "Promoted {}@{}: {from} → {} ({}).",
                    m.name, m.alias, m.to, m.digest
                ),
                None => format!(
                    "Promoted {}@{}: (unset) → {} ({}).",
                    m.name, m.alias, m.to, m.digest
                ),
            };
            Ok((message, super::artifacts::href(&name)))
        },
    )
    .await
}

/// `POST /actions/rollback` (`name`, `alias`): `tensorlet rollback name
/// --alias alias`.
pub async fn rollback(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    act(console, headers, body, &["name", "alias"], |reg, form| {
        let name = name_field(form)?;
        let m = reg.rollback(&name, form.required("alias")?)?;
        Ok((
            format!(
                "Rolled back {}@{}: {} → {} ({}).",
                m.name,
                m.alias,
                m.from.as_deref().unwrap_or("(unset)"),
                m.to,
                m.digest
            ),
            super::artifacts::href(&name),
        ))
    })
    .await
}

/// `POST /actions/alias` (`name`, `alias`, `version`): `tensorlet alias set
/// name alias version`.
pub async fn alias_set(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    act(
        console,
        headers,
        body,
        &["name", "alias", "version"],
        |reg, form| {
            let name = name_field(form)?;
            let (alias, version) = (form.required("alias")?, form.required("version")?);
            let previous = reg.alias_set(&name, alias, version)?;
            let message = match previous {
                Some(p) if p != version => format!("Moved {name}@{alias} from {p} to {version}."),
                Some(_) => format!("{name}@{alias} already points at {version}."),
                None => format!("{name}@{alias} now points at {version}."),
            };
            Ok((message, super::artifacts::href(&name)))
        },
    )
    .await
}

/// `POST /actions/yank` (`name`, `version`): `tensorlet yank name@version`.
pub async fn yank(
    State(console): State<Arc<Console>>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response> {
    act(console, headers, body, &["name", "version"], |reg, form| {
        let name = name_field(form)?;
        let version = check_version(form.required("version")?)?;
        let s = reg.yank(&Reference {
            name: name.clone(),
            selector: Selector::Version(version),
        })?;
        Ok((
            format!("Yanked {} ({}).", s.reference(), s.digest),
            super::artifacts::href(&name),
        ))
    })
    .await
}
