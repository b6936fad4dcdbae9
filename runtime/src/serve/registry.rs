//! Serving from a registry: verified model artifacts as deployments
//! ([`RegistrySource`]), serving events in the audit log ([`AuditEvents`]),
//! and the watch that swaps in what a followed alias points at now
//! ([`Watch`]), optionally after a [`Follower`] pulled it from a central
//! registry.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::json;
use tensorlet_registry::{Kind, Reference, Registry, Selector};

use super::{Deployment, ModelSource, ServeEvents, Server};
use crate::Runtime;
use crate::fleet::{Followed, Follower};
use crate::source::Sources;

/// The name a model is served under: `ns/name@x` -> `name`.
pub fn served_name(reference: &str) -> String {
    let name = reference.split('@').next().unwrap_or(reference);
    name.rsplit('/').next().unwrap_or(name).to_string()
}

/// Loads verified model artifacts from the registry (local, or pulled from a
/// remote and cached).
pub struct RegistrySource {
    rt: Arc<Runtime>,
    reg: Mutex<Registry>,
    sources: Sources,
}

impl RegistrySource {
    /// Loads from `reg` (and the remote of `sources`, if any) into `rt`.
    pub fn new(rt: Arc<Runtime>, reg: Registry, sources: Sources) -> Self {
        RegistrySource {
            rt,
            reg: Mutex::new(reg),
            sources,
        }
    }

    /// The manifest digest `reference` resolves to now (cheap: no blob reads
    /// unless there is a remote, whose target is pulled and verified first).
    pub fn current(&self, reference: &str) -> Result<String, String> {
        let r = Reference::parse(reference).map_err(|e| e.to_string())?;
        let reg = self.reg.lock().expect("registry lock");
        if self.sources.remote().is_some() {
            self.sources
                .fetch(&reg, reference)
                .map_err(|e| e.to_string())?;
        }
        reg.resolve(&r).map(|s| s.digest).map_err(|e| e.to_string())
    }
}

impl ModelSource for RegistrySource {
    fn load(&self, name: &str, reference: &str) -> Result<Deployment, String> {
        let reg = self.reg.lock().expect("registry lock");
        let artifact = self
            .sources
            .fetch(&reg, reference)
            .map_err(|e| format!("{e}"))?;
        if artifact.kind() != Kind::Model {
            return Err(format!(
                "{} is a {}, not a model",
                artifact.reference(),
                artifact.kind()
            ));
        }
        let model =
            crate::artifacts::load_model(&self.rt, &reg, &artifact).map_err(|e| format!("{e}"))?;
        let version = artifact.manifest().version.to_string();
        Ok(Deployment::new(
            name,
            &version,
            &artifact.reference(),
            model,
        ))
    }
}

/// Called with (served name, reference, error) when a deploy fails.
pub type OnFailure = Box<dyn Fn(&str, &str, &str) + Send + Sync>;

/// Records serving events in the audit log: `serve.deploy`,
/// `serve.undeploy`, `serve.deploy_failed`, `serve.invocations`,
/// `serve.shed`, `serve.restored`.
pub struct AuditEvents {
    reg: Mutex<Registry>,
    on_failure: OnFailure,
}

impl AuditEvents {
    /// Records into `reg`; `on_failure` also hears of failed deploys.
    pub fn new(reg: Registry, on_failure: OnFailure) -> Self {
        AuditEvents {
            reg: Mutex::new(reg),
            on_failure,
        }
    }

    /// Appends an entry; a failure to write is logged, not returned.
    pub fn record(&self, action: &str, subject: &str, detail: serde_json::Value) {
        if let Err(e) = self
            .reg
            .lock()
            .expect("registry lock")
            .record(action, subject, detail)
        {
            tracing::error!("cannot write the audit log: {e}");
        }
    }
}

impl ServeEvents for AuditEvents {
    fn loaded(&self, name: &str, version: &str, reference: &str) {
        self.record(
            "serve.deploy",
            reference,
            json!({ "model": name, "version": version }),
        );
    }

    fn unloaded(&self, name: &str, version: &str, reference: &str) {
        self.record(
            "serve.undeploy",
            reference,
            json!({ "model": name, "version": version }),
        );
    }

    fn deploy_failed(&self, name: &str, reference: &str, error: &str) {
        (self.on_failure)(name, reference, error);
        self.record(
            "serve.deploy_failed",
            reference,
            json!({ "model": name, "error": error }),
        );
    }

    fn invocations(&self, counts: &[(String, String, u64)]) {
        for (model, version, n) in counts {
            self.record(
                "serve.invocations",
                model,
                json!({ "version": version, "count": n }),
            );
        }
    }

    fn shed(&self, name: &str, version: &str, reference: &str, reason: &str) {
        self.record(
            "serve.shed",
            reference,
            json!({ "model": name, "version": version, "reason": reason }),
        );
    }

    fn restored(&self, name: &str, version: &str, reference: &str) {
        self.record(
            "serve.restored",
            reference,
            json!({ "model": name, "version": version }),
        );
    }
}

/// Loads (verifying) and deploys (warming) what `reference` points at now;
/// returns its manifest digest. Failures are recorded for the ready endpoint,
/// the log and the audit log, and leave the current version serving.
pub fn deploy(
    server: &Server,
    source: &RegistrySource,
    name: &str,
    reference: &str,
) -> Result<String, String> {
    let recorded = |e: String| {
        server.record_failure(name, reference, &e);
        e
    };
    let digest = source.current(reference).map_err(recorded)?;
    let d = source.load(name, reference).map_err(recorded)?;
    // A failed warm-up is recorded by the server itself.
    server.deploy(d)?;
    Ok(digest)
}

/// Which manifest each served name runs, and which one last failed to
/// deploy (not retried until its reference moves again).
#[derive(Debug, Default)]
pub struct Targets {
    deployed: BTreeMap<String, String>,
    failed: BTreeMap<String, String>,
}

impl Targets {
    /// `name` serves `digest`.
    pub fn deployed(&mut self, name: &str, digest: &str) {
        self.deployed.insert(name.to_string(), digest.to_string());
        self.failed.remove(name);
    }

    /// `digest` could not be deployed as `name`.
    pub fn failed(&mut self, name: &str, digest: &str) {
        self.failed.insert(name.to_string(), digest.to_string());
    }

    /// Whether `digest` should be deployed as `name`: it is neither what
    /// serves nor what last failed.
    pub fn wants(&self, name: &str, digest: &str) -> bool {
        let is = |m: &BTreeMap<String, String>| m.get(name).is_some_and(|d| d == digest);
        !is(&self.deployed) && !is(&self.failed)
    }

    /// Whether nothing is deployed.
    pub fn is_empty(&self) -> bool {
        self.deployed.is_empty()
    }
}

/// The wait before the next poll: `poll` after a clean round, doubled
/// after trouble, up to 30 s.
pub fn next_wait(current: Duration, poll: Duration, trouble: bool) -> Duration {
    if trouble {
        (current * 2).min(Duration::from_secs(30))
    } else {
        poll
    }
}

/// The references among `served` (name → reference) that can move: aliases
/// and latest, not exact versions.
pub fn movable(served: &BTreeMap<String, String>) -> Vec<(String, String)> {
    served
        .iter()
        .filter(|(_, r)| {
            Reference::parse(r).is_ok_and(|r| !matches!(r.selector, Selector::Version(_)))
        })
        .map(|(n, r)| (n.clone(), r.clone()))
        .collect()
}

/// Called with (reference, new digest) before a moved reference is deployed.
pub type OnMove = Box<dyn Fn(&str, &str) + Send>;

/// Polls followed references and deploys what each resolves to when that
/// changes. Failures back off (up to 30 s) and leave the current version
/// serving.
pub struct Watch {
    /// The server to deploy into.
    pub server: Arc<Server>,
    /// Where versions come from.
    pub source: Arc<RegistrySource>,
    /// Pulls from a central registry first, when following one.
    pub follower: Option<Arc<Follower>>,
    /// (served name, reference) of each followed reference.
    pub follow: Vec<(String, String)>,
    /// What serves now.
    pub targets: Targets,
    /// Time between polls.
    pub poll: Duration,
    /// Told (reference, new digest) before a moved reference is deployed.
    pub on_move: OnMove,
}

/// A [`Watch`] running on its own thread.
pub struct Watching {
    stop: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl Watching {
    /// Stops the watch and waits for its thread (at most one poll round).
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
    }
}

impl Watch {
    /// Runs on a thread of its own until [`Watching::stop`].
    pub fn start(self) -> Watching {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || self.run(&flag));
        Watching { stop, thread }
    }

    /// Runs until `stop` is set (checked every 200 ms).
    pub fn run(mut self, stop: &AtomicBool) {
        let tick = Duration::from_millis(200);
        let mut backoff = self.poll;
        while !stop.load(Ordering::Relaxed) {
            std::thread::sleep(backoff.min(tick));
            let mut slept = tick;
            while slept < backoff && !stop.load(Ordering::Relaxed) {
                std::thread::sleep(tick);
                slept += tick;
            }
            let trouble = self.round();
            backoff = next_wait(backoff, self.poll, trouble);
        }
    }

    /// One poll of every followed reference; whether anything went wrong.
    fn round(&mut self) -> bool {
        let mut trouble = false;
        for (name, reference) in &self.follow {
            if let Some(f) = &self.follower {
                match f.poll(reference) {
                    Ok(Followed::Refused(e)) => {
                        // Logged and audited (serve.deploy_failed); the
                        // current version keeps serving.
                        self.server.record_failure(name, reference, &e);
                    }
                    Ok(_) => {}
                    Err(e) if e.is_unreachable() => {
                        tracing::warn!("cannot follow {reference}: {e}");
                        trouble = true;
                    }
                    Err(e) => {
                        // Not an outage: TLS, an HTTP error or a missing
                        // reference, which retrying alone will not fix.
                        tracing::error!("cannot follow {reference}: {e}");
                        trouble = true;
                    }
                }
            }
            let digest = match self.source.current(reference) {
                Ok(d) => d,
                Err(e) => {
                    tracing::warn!("cannot resolve {reference}: {e}");
                    trouble = true;
                    continue;
                }
            };
            if !self.targets.wants(name, &digest) {
                continue;
            }
            (self.on_move)(reference, &digest);
            match deploy(&self.server, &self.source, name, reference) {
                Ok(_) => self.targets.deployed(name, &digest),
                Err(_) => {
                    self.targets.failed(name, &digest);
                    trouble = true;
                }
            }
        }
        trouble
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn served_names_drop_the_namespace_and_the_selector() {
        assert_eq!(served_name("acme/iris-model@production"), "iris-model");
        assert_eq!(served_name("acme/iris-model@1.2.0"), "iris-model");
        assert_eq!(served_name("acme/iris-model"), "iris-model");
        assert_eq!(served_name("iris"), "iris");
    }

    #[test]
    fn a_target_is_deployed_once_and_a_failed_one_not_retried_until_it_moves() {
        let mut t = Targets::default();
        assert!(t.is_empty());
        assert!(t.wants("iris", "d1"));
        t.deployed("iris", "d1");
        assert!(!t.is_empty());
        assert!(!t.wants("iris", "d1"));
        assert!(t.wants("iris", "d2"));
        t.failed("iris", "d2");
        assert!(!t.wants("iris", "d2"), "a failed digest waits for a move");
        assert!(t.wants("iris", "d3"));
        assert!(t.wants("digits", "d1"), "targets are per served name");
        t.deployed("iris", "d3");
        assert!(t.wants("iris", "d2"), "a deploy forgets the failure");
    }

    #[test]
    fn trouble_doubles_the_wait_up_to_30_s_and_a_clean_round_resets_it() {
        let poll = Duration::from_secs(2);
        assert_eq!(next_wait(poll, poll, true), Duration::from_secs(4));
        assert_eq!(
            next_wait(Duration::from_secs(20), poll, true),
            Duration::from_secs(30)
        );
        assert_eq!(next_wait(Duration::from_secs(30), poll, false), poll);
    }

    #[test]
    fn exact_versions_are_not_followed() {
        let served: BTreeMap<String, String> = [
            ("a", "acme/a@production"),
            ("b", "acme/b@1.0.0"),
            ("c", "acme/c"),
        ]
        .into_iter()
        .map(|(n, r)| (n.to_string(), r.to_string()))
        .collect();
        let names: Vec<String> = movable(&served).into_iter().map(|(n, _)| n).collect();
        assert_eq!(names, ["a", "c"]);
    }

    #[test]
    fn serving_events_land_in_the_audit_log_and_failures_are_told() {
        let home = tempfile::tempdir().unwrap();
        let told = Arc::new(Mutex::new(Vec::new()));
        let t = told.clone();
        let events = AuditEvents::new(
            Registry::open(home.path()).unwrap(),
            Box::new(move |n, r, e| t.lock().unwrap().push(format!("{n} {r} {e}"))),
        );
        events.loaded("iris", "1.0.0", "acme/iris@production");
        events.deploy_failed("iris", "acme/iris@production", "refused");
        events.invocations(&[("iris".into(), "1.0.0".into(), 7)]);
        assert_eq!(*told.lock().unwrap(), ["iris acme/iris@production refused"]);
        let log = Registry::open(home.path()).unwrap().audit_log().unwrap();
        let tail: Vec<(&str, &str)> = log
            .iter()
            .filter(|e| e.action.starts_with("serve."))
            .map(|e| (e.action.as_str(), e.subject.as_str()))
            .collect();
        assert_eq!(
            tail,
            [
                ("serve.deploy", "acme/iris@production"),
                ("serve.deploy_failed", "acme/iris@production"),
                ("serve.invocations", "iris"),
            ]
        );
        let n = log
            .iter()
            .find(|e| e.action == "serve.invocations")
            .unwrap();
        assert_eq!(n.detail["count"], 7);
    }
}

/// What KServe hands a serving runtime: the directory its storage
/// initializer downloaded the `storageUri` to (`--model-dir`), or, without
/// one, the `storageUri` itself (`STORAGE_URI`) when it names a tensorlet
/// artifact in an OCI registry (`oci://host/…/ns/name:tag`) or a local
/// directory (`file://DIR`, `/DIR`).
#[derive(Clone, Debug, Default)]
pub struct Storage {
    /// An OCI image layout directory.
    pub model_dir: Option<std::path::PathBuf>,
    /// A storage URI.
    pub uri: Option<String>,
}

impl Storage {
    /// Imports what it names into `reg`, each artifact verified against the
    /// trust policy (a refusal is an error, and audited), and returns the
    /// references of the models to serve; none when it names nothing.
    pub fn import(&self, reg: &Registry) -> anyhow::Result<Vec<String>> {
        use tensorlet_registry::oci::{self, OciReference};
        let dir = match (&self.model_dir, self.uri.as_deref()) {
            (Some(dir), _) => dir.clone(),
            (None, None) => return Ok(vec![]),
            (None, Some(uri)) if uri.starts_with("oci://") => {
                let r = OciReference::parse(uri)?;
                let model = oci::pull(reg, &r.remote, &r.name, r.selected("serving")?)?;
                if model.kind() != Kind::Model {
                    anyhow::bail!("{uri} is a {}, not a model", model.kind());
                }
                return Ok(vec![model.reference()]);
            }
            (None, Some(uri)) if uri.starts_with("file://") || uri.starts_with('/') => {
                uri.trim_start_matches("file://").into()
            }
            (None, Some(uri)) => anyhow::bail!(
                "the storage URI `{uri}` is not one tensorlet reads: KServe's storage \
                 initializer downloads it to /mnt/models, which `--model-dir /mnt/models` \
                 serves; tensorlet itself reads `oci://host/…/ns/name:tag` artifacts and \
                 directories (`file://DIR`)"
            ),
        };
        let models = oci::import_layout(reg, &dir)?;
        Ok(models.iter().map(|m| m.reference()).collect())
    }
}
