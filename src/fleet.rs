//! Following a central registry: what `tensorlet sync` and
//! `tensorlet serve --follow` share. An [`Upstream`] is a tensorlet HTTP
//! registry or an OCI registry; a [`Follower`] asks it cheaply what a
//! reference points at now, and pulls (verifying against the local trust
//! policy) and caches only when that changed.

use std::collections::BTreeMap;
use std::sync::Mutex;

use anyhow::{Result, bail};
use serde_json::json;
use tensorlet_runtime::registry::client::{self, Remote};
use tensorlet_runtime::registry::oci::{self, OciRemote, OciSelector};
use tensorlet_runtime::registry::{
    Kind, Reference, Registry, RegistryError, Selector, VerifiedArtifact,
};

/// A central registry to pull from.
#[derive(Debug)]
pub enum Upstream {
    /// `https://host:port` (or `http://`): a `tensorlet registry serve`.
    Http(Remote),
    /// `oci://host[:port][/prefix]`: an OCI registry.
    Oci(Box<OciRemote>),
}

impl Upstream {
    /// Parses `https://…`, `http://…` or `oci://…`.
    pub fn parse(s: &str) -> Result<Self> {
        if s.starts_with("oci://") {
            Ok(Upstream::Oci(Box::new(OciRemote::new(s)?)))
        } else if s.starts_with("http://") || s.starts_with("https://") {
            Ok(Upstream::Http(crate::artifacts::remote(s)?))
        } else {
            bail!(
                "`{s}` is not a registry; name a tensorlet registry (`https://host:7070`, or \
                 `http://` on a trusted network) or an OCI registry (`oci://host:5000[/prefix]`)"
            )
        }
    }

    /// The upstream's URL, for messages.
    pub fn url(&self) -> String {
        match self {
            Upstream::Http(r) => r.url().to_string(),
            Upstream::Oci(o) => o.url(),
        }
    }

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
    pub fn production_models(&self) -> Result<Vec<String>> {
        match self {
            Upstream::Http(remote) => {
                let mut names: Vec<String> = remote
                    .list()?
                    .into_iter()
                    .filter(|a| {
                        a.kind == Kind::Model && a.aliases.iter().any(|x| x == "production")
                    })
                    .map(|a| format!("{}@production", a.name))
                    .collect();
                names.sort();
                names.dedup();
                Ok(names)
            }
            Upstream::Oci(o) => bail!(
                "an OCI registry ({}) cannot be listed; name the models to follow with --model \
                 ns/name@production",
                o.url()
            ),
        }
    }
}

/// What one poll of a followed reference found.
#[derive(Debug)]
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
struct Seen {
    /// The upstream's token for it.
    token: String,
    /// For a refused target: the trust policy it was refused under.
    refused_under: Option<String>,
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
        if let Some(seen) = self.seen.lock().expect("seen lock").get(reference)
            && seen.token == token
        {
            // A refused target is tried again once the trust policy changed.
            match &seen.refused_under {
                None => return Ok(Followed::Unchanged),
                Some(policy) if *policy == trust_fingerprint(&reg) => {
                    return Ok(Followed::Unchanged);
                }
                Some(_) => {}
            }
        }
        let result = self.upstream.sync(&reg, &r);
        let mut refused_under = None;
        let followed = match result {
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

/// The first poll of `reference` when a follower starts: reports on stderr
/// what it synced or refused, or, when no connection to the upstream can be
/// made, that it serves the local cache and retries. Any other failure (TLS,
/// an HTTP error, a reference the upstream does not have) is an error.
pub fn report_initial(f: &Follower, reference: &str) -> Result<()> {
    match f.poll(reference) {
        Ok(Followed::Synced(v)) => {
            eprintln!("following {reference} at {}: {v}", f.upstream().url());
        }
        Ok(Followed::Unchanged) => {}
        Ok(Followed::Refused(e)) => eprintln!("{e}; serving the local cache"),
        Err(e @ RegistryError::Unreachable { .. }) => eprintln!(
            "warning: cannot follow {reference}: {e}; serving the local cache and retrying \
             with backoff"
        ),
        Err(e) => bail!("cannot follow {reference}: {e}"),
    }
    Ok(())
}
