//! Following a central registry: what `tensorlet sync` and
//! `tensorlet serve --follow` share. An [`Upstream`] is a tensorlet HTTP
//! registry or an OCI registry; a [`Follower`] asks it cheaply what a
//! reference points at now, and pulls (verifying against the local trust
//! policy) and caches only when that changed.

use std::collections::BTreeMap;
use std::sync::Mutex;

use serde_json::json;
use tensorlet_registry::client::{self, Remote};
use tensorlet_registry::http::HttpClient;
use tensorlet_registry::oci::{self, OciRemote, OciSelector};
use tensorlet_registry::{
    ArtifactSummary, Kind, Reference, Registry, RegistryError, Selector, VerifiedArtifact,
};

/// A central registry to pull from.
#[derive(Debug)]
pub enum Upstream {
    /// `https://host:port` (or `http://`): a `tensorlet registry serve`.
    Http(Remote),
    /// `oci://host[:port][/prefix]`: an OCI registry.
    Oci(Box<OciRemote>),
}

/// Every model among `artifacts` that has a `production` alias, as
/// `ns/name@production`, sorted, each once.
pub fn production_models(artifacts: impl IntoIterator<Item = ArtifactSummary>) -> Vec<String> {
    let mut names: Vec<String> = artifacts
        .into_iter()
        .filter(|a| a.kind == Kind::Model && a.aliases.iter().any(|x| x == "production"))
        .map(|a| format!("{}@production", a.name))
        .collect();
    names.sort();
    names.dedup();
    names
}

impl Upstream {
    /// Parses `https://…`, `http://…` (a tensorlet registry, reached through
    /// `http`) or `oci://…`.
    pub fn parse(s: &str, http: HttpClient) -> Result<Self, RegistryError> {
        if s.starts_with("oci://") {
            Ok(Upstream::Oci(Box::new(OciRemote::new(s)?)))
        } else if s.starts_with("http://") || s.starts_with("https://") {
            Ok(Upstream::Http(Remote::with_client(s, http)?))
        } else {
            Err(RegistryError::Invalid(format!(
                "`{s}` is not a registry; name a tensorlet registry (`https://host:7070`, or \
                 `http://` on a trusted network) or an OCI registry (`oci://host:5000[/prefix]`)"
            )))
        }
    }

    /// The upstream's URL, for messages.
    pub fn url(&self) -> String {
        match self {
            Upstream::Http(r) => r.url().to_string(),
            Upstream::Oci(o) => o.url(),
        }
    }

    /// The tag an OCI registry holds `r` under: its version or its alias.
    fn oci_selector(r: &Reference) -> Result<OciSelector, RegistryError> {
        match &r.selector {
            Selector::Alias(a) => Ok(OciSelector::Tag(a.clone())),
            Selector::Version(v) => Ok(OciSelector::Tag(v.to_string())),
            Selector::Latest | Selector::Digest(_) => Err(RegistryError::Invalid(format!(
                "`{r}`: an OCI registry is read by tag; name a version (`{0}@1.2.0`) or an \
                 alias (`{0}@production`)",
                r.name
            ))),
        }
    }

    /// What `reference` resolves to upstream now, as an opaque token that
    /// changes when it moves: the manifest digest (one small request: a
    /// `resolve` on a tensorlet registry, a `HEAD` on an OCI registry).
    pub fn head(&self, r: &Reference) -> Result<String, RegistryError> {
        match self {
            Upstream::Http(remote) => remote.resolve(r).map(|(s, _)| s.digest),
            Upstream::Oci(remote) => {
                remote
                    .head(&r.name, &Self::oci_selector(r)?)?
                    .ok_or_else(|| {
                        RegistryError::NotFound(format!(
                            "{} has no tag for {r}",
                            remote.location(&r.name)
                        ))
                    })
            }
        }
    }

    /// Pulls what `reference` points at upstream (and everything it pins),
    /// verifies it against `reg`'s trust policy and caches it there; an alias
    /// is then pointed at the same version locally, so `reg` serves it with no
    /// network.
    pub fn sync(&self, reg: &Registry, r: &Reference) -> Result<VerifiedArtifact, RegistryError> {
        let artifact = match self {
            Upstream::Http(remote) => client::pull(reg, remote, r)?,
            Upstream::Oci(remote) => oci::pull(reg, remote, &r.name, &Self::oci_selector(r)?)?,
        };
        if let Selector::Alias(alias) = &r.selector {
            let here = reg.resolve(r).map(|s| s.digest).ok();
            if here.as_deref() != Some(artifact.digest()) {
                reg.alias_set(&r.name, alias, &artifact.manifest().version)?;
            }
        }
        Ok(artifact)
    }

    /// Every model the upstream has a `production` alias for (tensorlet
    /// registries only: an OCI registry cannot be listed portably).
    pub fn production_models(&self) -> Result<Vec<String>, RegistryError> {
        match self {
            Upstream::Http(remote) => Ok(production_models(remote.list()?)),
            Upstream::Oci(o) => Err(RegistryError::Invalid(format!(
                "an OCI registry ({}) cannot be listed; name the models to follow with --model \
                 ns/name@production",
                o.url()
            ))),
        }
    }
}

/// What one poll of a followed reference found.
#[derive(Debug, PartialEq, Eq)]
pub enum Followed {
    /// It points where it pointed at the last poll.
    Unchanged,
    /// It moved; the new target is verified and cached (`ns/name@version`).
    Synced(String),
    /// It moved to something this node refuses (the reason); it stays
    /// refused until the reference moves again or this node's trust policy
    /// changes (`tensorlet trust add`), when it is tried again.
    Refused(String),
}

/// Follows references in an upstream registry for one node.
pub struct Follower {
    upstream: Upstream,
    reg: Mutex<Registry>,
    seen: Mutex<BTreeMap<String, Seen>>,
}

/// What the last poll of a reference found.
#[derive(Debug)]
struct Seen {
    /// The upstream's token for it.
    token: String,
    /// For a refused target: the trust policy it was refused under.
    refused_under: Option<String>,
}

impl Seen {
    /// Whether a poll that found `token` must pull again: the reference
    /// moved, or its refused target may pass under the trust policy now in
    /// force (`policy`, asked only when it matters).
    fn stale(seen: Option<&Seen>, token: &str, policy: impl FnOnce() -> String) -> bool {
        match seen {
            Some(s) if s.token == token => match &s.refused_under {
                None => false,
                Some(under) => *under != policy(),
            },
            _ => true,
        }
    }
}

/// The local trust policy, as a value that changes when it does.
fn trust_fingerprint(reg: &Registry) -> String {
    match reg.trust_list() {
        Ok(entries) => entries
            .iter()
            .map(|e| format!("{}={}", e.key_id, e.namespaces.join(",")))
            .collect::<Vec<_>>()
            .join(";"),
        Err(e) => format!("unreadable: {e}"),
    }
}

impl Follower {
    /// A follower that caches into `reg`.
    pub fn new(upstream: Upstream, reg: Registry) -> Self {
        Follower {
            upstream,
            reg: Mutex::new(reg),
            seen: Mutex::new(BTreeMap::new()),
        }
    }

    /// The upstream.
    pub fn upstream(&self) -> &Upstream {
        &self.upstream
    }

    /// Asks the upstream where `reference` points; when that changed since
    /// the last poll, pulls, verifies and caches it. A refusal is reported
    /// once (audited as `follow.refused`); an upstream that cannot be
    /// reached, or that fails over TLS or HTTP, is an error, to be retried
    /// with backoff.
    pub fn poll(&self, reference: &str) -> Result<Followed, RegistryError> {
        let r = Reference::parse(reference)?;
        let token = self.upstream.head(&r)?;
        let reg = self.reg.lock().expect("registry lock");
        let stale = Seen::stale(
            self.seen.lock().expect("seen lock").get(reference),
            &token,
            || trust_fingerprint(&reg),
        );
        if !stale {
            return Ok(Followed::Unchanged);
        }
        let mut refused_under = None;
        let followed = match self.upstream.sync(&reg, &r) {
            Ok(a) => Followed::Synced(a.reference()),
            Err(e @ (RegistryError::Remote { .. } | RegistryError::Unreachable { .. })) => {
                return Err(e);
            }
            Err(e) => {
                let reason = e.to_string();
                refused_under = Some(trust_fingerprint(&reg));
                if let Err(audit) = reg.record(
                    "follow.refused",
                    reference,
                    json!({"from": self.upstream.url(), "target": token, "reason": reason}),
                ) {
                    tracing::error!("cannot write the audit log: {audit}");
                }
                Followed::Refused(format!(
                    "{reference} at {} moved to {token}, which this node refuses: {reason}",
                    self.upstream.url()
                ))
            }
        };
        self.seen.lock().expect("seen lock").insert(
            reference.to_string(),
            Seen {
                token,
                refused_under,
            },
        );
        Ok(followed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn summary(name: &str, kind: Kind, aliases: &[&str]) -> ArtifactSummary {
        ArtifactSummary {
            name: name.into(),
            version: "1.0.0".into(),
            kind,
            digest: "sha256:00".into(),
            key_id: "k".into(),
            yanked: false,
            created: String::new(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn production_models_are_models_with_the_alias_once_each() {
        let all = vec![
            summary("acme/b-model", Kind::Model, &["production"]),
            summary("acme/a-model", Kind::Model, &["staging", "production"]),
            summary("acme/b-model", Kind::Model, &["production"]),
            summary("acme/iris", Kind::Pipeline, &["production"]),
            summary("acme/c-model", Kind::Model, &["staging"]),
        ];
        assert_eq!(
            production_models(all),
            ["acme/a-model@production", "acme/b-model@production"]
        );
    }

    #[test]
    fn a_poll_pulls_when_the_reference_moved_or_the_policy_changed() {
        let called = std::cell::Cell::new(false);
        let policy = |p: &'static str| {
            let called = &called;
            move || {
                called.set(true);
                p.to_string()
            }
        };
        // Never seen, or moved: pull.
        assert!(Seen::stale(None, "t1", policy("p")));
        let synced = Seen {
            token: "t1".into(),
            refused_under: None,
        };
        assert!(Seen::stale(Some(&synced), "t2", policy("p")));
        // Synced and unmoved: nothing to do, and the policy is not read.
        assert!(!Seen::stale(Some(&synced), "t1", policy("p")));
        assert!(!called.get());
        // Refused and unmoved: tried again only under another policy.
        let refused = Seen {
            token: "t1".into(),
            refused_under: Some("p".into()),
        };
        assert!(!Seen::stale(Some(&refused), "t1", policy("p")));
        assert!(Seen::stale(Some(&refused), "t1", policy("p+new key")));
    }

    #[test]
    fn upstreams_are_http_or_oci_and_oci_is_read_by_tag() {
        let http = HttpClient::new(&Default::default()).unwrap();
        let u = Upstream::parse("http://127.0.0.1:7070/", http.clone()).unwrap();
        assert!(matches!(u, Upstream::Http(_)));
        assert_eq!(u.url(), "http://127.0.0.1:7070");
        assert!(matches!(
            Upstream::parse("oci://127.0.0.1:5000/team", http.clone()).unwrap(),
            Upstream::Oci(_)
        ));
        let e = Upstream::parse("ftp://x", http).unwrap_err().to_string();
        assert!(e.contains("`ftp://x` is not a registry"), "{e}");

        let tag = |r: &str| Upstream::oci_selector(&Reference::parse(r).unwrap());
        assert!(matches!(tag("a/b@production"), Ok(OciSelector::Tag(t)) if t == "production"));
        assert!(matches!(tag("a/b@1.2.0"), Ok(OciSelector::Tag(t)) if t == "1.2.0"));
        let e = tag("a/b").unwrap_err().to_string();
        assert!(e.contains("an OCI registry is read by tag"), "{e}");
    }
}
