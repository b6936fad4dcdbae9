//! What `tensorlet serve` serves: the models named (or every model with a
//! `production` alias), each under a name of its own, and what the first
//! poll of a followed reference tells the operator.

use std::collections::BTreeMap;
use std::net::SocketAddr;

use anyhow::{Context, Result, bail};
use tensorlet_registry::{Reference, RegistryError};

use super::registry::served_name;
use crate::fleet::Followed;

/// The references to serve by served name: `given`, or when none is given
/// what `production` finds. Refused when none is found, when a reference
/// does not parse, or when two would be served under one name.
pub fn served(
    given: &[String],
    production: impl FnOnce() -> Result<Vec<String>>,
) -> Result<BTreeMap<String, String>> {
    let references = if given.is_empty() {
        let found = production()?;
        if found.is_empty() {
            bail!(
                "no model has a `production` alias; name models with --model ns/name@alias, \
                 or promote one with `tensorlet alias set <ns/name> production <version>`"
            );
        }
        found
    } else {
        given.to_vec()
    };
    let mut by_name: BTreeMap<String, String> = BTreeMap::new();
    for t in &references {
        Reference::parse(t).with_context(|| format!("--model {t}"))?;
        if let Some(other) = by_name.insert(served_name(t), t.clone()) {
            bail!(
                "{t} and {other} would both be served as `{}`; serve them from separate servers",
                served_name(t)
            );
        }
    }
    Ok(by_name)
}

/// `by_name` with its one model served as `name` instead (`--model-name`,
/// KServe's InferenceService name); an error when it holds several.
pub fn renamed(by_name: BTreeMap<String, String>, name: &str) -> Result<BTreeMap<String, String>> {
    if by_name.len() != 1 {
        bail!(
            "--model-name names the one model served, and {} would be served ({}); name \
             models with --model, or serve them under their own names",
            by_name.len(),
            by_name.values().cloned().collect::<Vec<_>>().join(", ")
        );
    }
    let reference = by_name.into_values().next().expect("one model");
    Ok(BTreeMap::from([(name.to_string(), reference)]))
}

/// What to tell about the first poll of `reference` at `upstream` when a
/// follower starts: what it synced or refused, or, when no connection to
/// the upstream could be made, that the local cache serves meanwhile.
/// Any other failure (TLS, an HTTP error, a reference the upstream does not
/// have) is an error.
pub fn first_poll(
    reference: &str,
    upstream: &str,
    polled: Result<Followed, RegistryError>,
) -> Result<Option<String>> {
    Ok(match polled {
        Ok(Followed::Synced(v)) => Some(format!("following {reference} at {upstream}: {v}")),
        Ok(Followed::Unchanged) => None,
        Ok(Followed::Refused(e)) => Some(format!("{e}; serving the local cache")),
        Err(e) if e.is_unreachable() => Some(format!(
            "warning: cannot follow {reference}: {e}; serving the local cache and retrying \
             with backoff"
        )),
        Err(e) => bail!("cannot follow {reference}: {e}"),
    })
}

/// Where a started server answers: each deployed `(name, version)` at the
/// public address, then the admin endpoint and serving pages when there
/// is an admin address, then the gRPC endpoint when there is one.
pub fn endpoints(
    addr: SocketAddr,
    deployed: &[(String, String)],
    admin: Option<SocketAddr>,
    grpc: Option<SocketAddr>,
) -> Vec<String> {
    let mut lines: Vec<String> = deployed
        .iter()
        .map(|(name, version)| {
            format!("serving {name} {version} at http://{addr}/v2/models/{name}/infer")
        })
        .collect();
    if let Some(a) = admin {
        lines.push(format!("admin endpoint at http://{a}/admin/deploy"));
        lines.push(format!("serving console at http://{a}/serving"));
    }
    if let Some(g) = grpc {
        lines.push(format!(
            "OIP over gRPC at {g} (inference.GRPCInferenceService)"
        ));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(r: &[&str]) -> Vec<String> {
        r.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_one_model_is_renamed_and_several_are_refused() {
        let one = served(&refs(&["tensorlet/iris-model@production"]), || Ok(vec![])).unwrap();
        let r = renamed(one, "iris").unwrap();
        assert_eq!(
            r.into_iter().collect::<Vec<_>>(),
            [(
                "iris".to_string(),
                "tensorlet/iris-model@production".to_string()
            )]
        );
        let two = served(
            &refs(&["tensorlet/iris-model@1.0.0", "tensorlet/digits-model@1.0.0"]),
            || Ok(vec![]),
        )
        .unwrap();
        let e = renamed(two, "iris").unwrap_err().to_string();
        assert!(e.contains("2 would be served"), "{e}");
    }

    #[test]
    fn serves_the_given_models_by_name() {
        let served = served(
            &refs(&["acme/iris@production", "acme/digits@1.0.0"]),
            || panic!("not asked when models are given"),
        )
        .unwrap();
        assert_eq!(
            served.into_iter().collect::<Vec<_>>(),
            [
                ("digits".to_string(), "acme/digits@1.0.0".to_string()),
                ("iris".to_string(), "acme/iris@production".to_string())
            ]
        );
    }

    #[test]
    fn defaults_to_the_production_models() {
        let production = served(&[], || Ok(refs(&["acme/iris@production"]))).unwrap();
        assert_eq!(production["iris"], "acme/iris@production");
        let none = served(&[], || Ok(Vec::new())).unwrap_err().to_string();
        assert!(
            none.starts_with("no model has a `production` alias"),
            "{none}"
        );
    }

    #[test]
    fn refuses_two_models_under_one_name() {
        let e = served(&refs(&["acme/iris@production", "other/iris@1.0.0"]), || {
            Ok(Vec::new())
        })
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "other/iris@1.0.0 and acme/iris@production would both be served as `iris`; serve \
             them from separate servers"
        );
        let e = served(&refs(&["no namespace"]), || Ok(Vec::new())).unwrap_err();
        assert_eq!(e.to_string(), "--model no namespace");
    }

    #[test]
    fn the_first_poll_reports_or_fails() {
        let url = "http://hub:7070";
        let said = |p| first_poll("acme/iris@production", url, p);
        assert_eq!(
            said(Ok(Followed::Synced("acme/iris@1.2.0".into()))).unwrap(),
            Some("following acme/iris@production at http://hub:7070: acme/iris@1.2.0".into())
        );
        assert_eq!(said(Ok(Followed::Unchanged)).unwrap(), None);
        assert_eq!(
            said(Ok(Followed::Refused("untrusted key".into()))).unwrap(),
            Some("untrusted key; serving the local cache".into())
        );
        let down = RegistryError::Unreachable {
            url: url.into(),
            message: "connection refused".into(),
        };
        let warning = said(Err(down)).unwrap().unwrap();
        assert!(warning.starts_with("warning: cannot follow acme/iris@production: "));
        assert!(warning.ends_with("; serving the local cache and retrying with backoff"));
        let missing = said(Err(RegistryError::NotFound("acme/iris".into()))).unwrap_err();
        assert_eq!(
            missing.to_string(),
            "cannot follow acme/iris@production: acme/iris"
        );
    }

    #[test]
    fn endpoints_name_each_model_and_the_admin_and_grpc_addresses() {
        let deployed = [
            ("digits".to_string(), "0.2.0".to_string()),
            ("iris".to_string(), "1.0.0".to_string()),
        ];
        let public = "127.0.0.1:8080".parse().unwrap();
        assert_eq!(
            endpoints(
                public,
                &deployed,
                Some("127.0.0.1:8081".parse().unwrap()),
                Some("127.0.0.1:9000".parse().unwrap())
            ),
            [
                "serving digits 0.2.0 at http://127.0.0.1:8080/v2/models/digits/infer",
                "serving iris 1.0.0 at http://127.0.0.1:8080/v2/models/iris/infer",
                "admin endpoint at http://127.0.0.1:8081/admin/deploy",
                "serving console at http://127.0.0.1:8081/serving",
                "OIP over gRPC at 127.0.0.1:9000 (inference.GRPCInferenceService)",
            ]
        );
        assert_eq!(endpoints(public, &deployed[..1], None, None).len(), 1);
    }
}
