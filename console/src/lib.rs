#![recursion_limit = "256"]
//! tensorlet's web console: a view over the registry and the server.
//!
//! The console is not a second store. Its handlers make the same library
//! calls the CLI makes (`Registry::list`, `runs`, `checkpoints`, `audit_log`,
//! `audit_verify`, `promote`, …) and render the answers as server-rendered
//! HTML (askama templates), with a little JavaScript for charts (uPlot,
//! vendored) and live refresh; every asset is in the binary. [`app`] is the
//! console of a `$TENSORLET_HOME` (`tensorlet ui`), [`serving::app`] the
//! live-serving pages a `tensorlet serve` adds to its admin address.
//!
//! Actions (promote, rollback, alias set, yank) are offered only when the
//! home holds a signing key of a person (not only the node key), the console
//! listens on loopback (or was told `allow_remote_actions`), and the
//! artifacts are local; each is a POST carrying this process's token, and a
//! cross-site request (`Origin`, `Sec-Fetch-Site`) is refused. On loopback,
//! requests whose `Host` is not a loopback name are refused, so that a page
//! elsewhere cannot reach the console by rebinding its DNS name.
//!
//! ```no_run
//! # async fn run() -> std::io::Result<()> {
//! use tensorlet_console::{Console, ConsoleConfig};
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:7080").await?;
//! let console = Console::new(ConsoleConfig::new(
//!     "/home/me/.tensorlet".into(),
//!     listener.local_addr()?,
//! ));
//! axum::serve(listener, tensorlet_console::app(console)).await
//! # }
//! ```

mod assets;
pub mod bench;
mod chart;
mod error;
pub mod pages;
pub mod plot;
mod security;
pub mod serving;
mod svg;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::response::Redirect;
use axum::routing::{get, post};
use tensorlet_runtime::registry::Registry;
use tensorlet_runtime::registry::client::Remote;
use tensorlet_runtime::registry::http::{HttpClient, HttpSettings};

pub use error::ConsoleError;
use error::Result;

/// How a console is set up. Everything is explicit: the library reads no
/// environment variables.
#[derive(Clone, Debug)]
pub struct ConsoleConfig {
    /// The home whose registry, runs, datasets and audit log are shown.
    pub home: PathBuf,
    /// The address the console listens on: on loopback, actions may be
    /// offered and only loopback `Host` names are answered.
    pub addr: SocketAddr,
    /// A remote registry (`http://host:port`) whose artifacts the Artifacts
    /// pages show, judged by the home's trust policy. Default: none.
    pub remote: Option<String>,
    /// Offer actions on a non-loopback address too. Default: off.
    pub allow_remote_actions: bool,
    /// A `tensorlet serve` admin address (`http://127.0.0.1:8081`) whose
    /// serving state the Serving page shows. Default: none.
    pub serving_url: Option<String>,
    /// How the remote registry and the serving address are reached: the
    /// CAs trusted besides the system's, and the timeouts (the serving
    /// page waits at most 5 s whatever these say). Default:
    /// `HttpSettings::default()`.
    pub http: HttpSettings,
}

impl ConsoleConfig {
    /// A console of `home` on `addr`, with the defaults above.
    pub fn new(home: PathBuf, addr: SocketAddr) -> Self {
        ConsoleConfig {
            home,
            addr,
            remote: None,
            allow_remote_actions: false,
            serving_url: None,
            http: HttpSettings::default(),
        }
    }

    /// What to tell whoever starts a console off loopback: that anyone who
    /// can reach it can act (with `allow_remote_actions`), or that actions
    /// are off. `None` on loopback.
    pub fn exposure(&self) -> Option<String> {
        let addr = self.addr;
        if addr.ip().is_loopback() {
            None
        } else if self.allow_remote_actions {
            Some(format!(
                "warning: the console listens on {addr} with --allow-remote-actions: anyone who \
                 can reach it can move aliases and yank versions in {}",
                self.home.display()
            ))
        } else {
            Some(format!(
                "note: the console listens on {addr}, not on loopback: actions are off"
            ))
        }
    }
}

/// The console's state: its settings, the registry (opened on first use
/// and kept), this process's action token and what it has worked out once.
pub struct Console {
    config: ConsoleConfig,
    registry: Mutex<Option<Arc<Registry>>>,
    token: String,
    /// Schema and row count of dataset snapshots, by digest (immutable).
    dataset_info: Mutex<HashMap<String, Arc<pages::datasets::DatasetInfo>>>,
    /// HTTP clients, made on first use: (for the remote registry, for the
    /// serving address), or why they could not be.
    http: OnceLock<std::result::Result<(HttpClient, HttpClient), String>>,
}

impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Console({})", self.config.home.display())
    }
}

impl Console {
    /// A console; nothing is opened until a page needs it.
    pub fn new(config: ConsoleConfig) -> Arc<Self> {
        Arc::new(Console {
            config,
            registry: Mutex::new(None),
            token: security::new_token(),
            dataset_info: Mutex::new(HashMap::new()),
            http: OnceLock::new(),
        })
    }

    /// The settings.
    pub fn config(&self) -> &ConsoleConfig {
        &self.config
    }

    /// The home's registry, opened on first use; a failure names the home
    /// and the cause, and the next page tries again. Blocking.
    pub fn registry(&self) -> Result<Arc<Registry>> {
        let mut slot = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(r) = slot.as_ref() {
            return Ok(r.clone());
        }
        let reg = Registry::open(&self.config.home).map_err(|e| ConsoleError::Unavailable {
            home: self.config.home.clone(),
            cause: e.to_string(),
        })?;
        let reg = Arc::new(reg);
        *slot = Some(reg.clone());
        Ok(reg)
    }

    /// The HTTP clients: (for the remote registry, for the serving address).
    fn http(&self) -> Result<&(HttpClient, HttpClient)> {
        self.http
            .get_or_init(|| {
                let settings = &self.config.http;
                let serving = HttpSettings {
                    connect_timeout: settings.connect_timeout.min(Duration::from_secs(5)),
                    timeout: settings.timeout.min(Duration::from_secs(5)),
                    ..settings.clone()
                };
                Ok((
                    HttpClient::new(settings).map_err(|e| e.to_string())?,
                    HttpClient::new(&serving).map_err(|e| e.to_string())?,
                ))
            })
            .as_ref()
            .map_err(|e| ConsoleError::Remote(format!("cannot set up the HTTP client: {e}")))
    }

    /// The client for the serving address (short timeouts).
    pub(crate) fn serving_client(&self) -> Result<&HttpClient> {
        Ok(&self.http()?.1)
    }

    /// The remote registry the Artifacts pages show, when one is set.
    pub(crate) fn remote(&self) -> Result<Option<Remote>> {
        match self.config.remote.as_deref() {
            None => Ok(None),
            Some(url) => Remote::with_client(url, self.http()?.0.clone())
                .map(Some)
                .map_err(|e| ConsoleError::Remote(e.to_string())),
        }
    }

    /// This process's action token (for forms).
    pub(crate) fn token(&self) -> &str {
        &self.token
    }
}

/// The console's router: every page of the home, the actions and the assets.
pub fn app(console: Arc<Console>) -> Router {
    let loopback = console.config.addr.ip().is_loopback();
    Router::new()
        .route("/", get(|| async { Redirect::to("/artifacts") }))
        .route("/artifacts", get(pages::artifacts::list))
        .route("/artifacts/{ns}/{name}", get(pages::artifacts::name))
        .route(
            "/artifacts/{ns}/{name}/{version}",
            get(pages::artifacts::version),
        )
        .route("/lineage/{ns}/{name}/{version}", get(pages::lineage::graph))
        .route("/runs", get(pages::runs::list))
        .route("/runs/compare", get(pages::runs::compare))
        .route("/runs/{id}", get(pages::runs::show))
        .route("/runs/{id}/curves.json", get(pages::runs::curves))
        .route("/datasets", get(pages::datasets::list))
        .route("/datasets/{name}", get(pages::datasets::show))
        .route("/audit", get(pages::audit::log))
        .route("/serving", get(pages::serving::remote_page))
        .route("/serving.json", get(pages::serving::remote_json))
        .route("/actions/promote", post(pages::actions::promote))
        .route("/actions/rollback", post(pages::actions::rollback))
        .route("/actions/alias", post(pages::actions::alias_set))
        .route("/actions/yank", post(pages::actions::yank))
        .route("/assets/{file}", get(assets::serve))
        .fallback(not_found)
        .with_state(console)
        .layer(axum::middleware::from_fn(move |req, next| {
            security::guard(loopback, req, next)
        }))
}

async fn not_found(uri: axum::http::Uri) -> ConsoleError {
    ConsoleError::NotFound(format!("there is no page {}", uri.path()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_console_off_loopback_says_who_can_act() {
        let home = PathBuf::from("/srv/tl");
        let local = ConsoleConfig::new(home.clone(), "127.0.0.1:7080".parse().unwrap());
        assert_eq!(local.exposure(), None);
        let mut open = ConsoleConfig::new(home, "0.0.0.0:7080".parse().unwrap());
        assert_eq!(
            open.exposure().unwrap(),
            "note: the console listens on 0.0.0.0:7080, not on loopback: actions are off"
        );
        open.allow_remote_actions = true;
        assert_eq!(
            open.exposure().unwrap(),
            "warning: the console listens on 0.0.0.0:7080 with --allow-remote-actions: anyone \
             who can reach it can move aliases and yank versions in /srv/tl"
        );
    }
}
