//! Central run tracking: trainers on other machines record their runs on
//! one registry ([`crate::Registry::track`]), each change a [`RunEvent`]
//! signed by the trainer's key.
//!
//! A registry accepts a run's events only when its trust policy allows the
//! signing key for the run's namespace, the rule that admits publishes: a
//! run starts under a namespace, and every later event must name the same
//! one. Events carry their blobs (fitted state, a checkpoint's params) by
//! digest, so the signature covers them too. Every event can be sent again
//! without harm (a lost answer is retried), so a trainer that lost its
//! connection catches up by sending what the registry lacks.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::{RegistryError, Result};
use crate::keys::{KeyPair, PublicKey};
use crate::manifest::Signature;
use crate::runs::{RunDetails, RunEnd, RunResult, RunStatus};

/// One change to a tracked run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunEvent {
    /// The run's id, chosen by the trainer ([`crate::new_run_id`]).
    pub run_id: String,
    /// The namespace the run is recorded under.
    pub namespace: String,
    /// What changed.
    pub change: RunChange,
}

/// What a [`RunEvent`] changes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum RunChange {
    /// A new run, with what it recorded when it started.
    Start {
        /// The pipeline, as the run's listings show it.
        pipeline: String,
        /// The record.
        record: Box<RunDetails>,
    },
    /// The fitted preprocessor state (the event's one blob).
    State {
        /// Its digest.
        digest: String,
    },
    /// The params after an epoch (the event's one blob) and its metrics.
    Checkpoint {
        /// 1-based epoch.
        epoch: u32,
        /// The params' digest.
        params: String,
        /// The epoch's metrics, as the trainer wrote them.
        metrics: Value,
    },
    /// The run continues after `after_epoch`.
    Resume {
        /// The epochs it keeps.
        after_epoch: u32,
    },
    /// The run ended.
    End {
        /// How.
        status: RunStatus,
        /// The model it published.
        model: Option<String>,
        /// Why it failed.
        error: Option<String>,
        /// What a completed run produced.
        result: Option<RunResult>,
    },
}

impl RunChange {
    /// The change that records `end`.
    pub fn end(end: &RunEnd) -> Self {
        let (model, error, result) = match end {
            RunEnd::Completed { model, result } => (model.clone(), None, Some(result.clone())),
            RunEnd::Failed { error } => (None, Some(error.clone()), None),
            RunEnd::Interrupted => (None, None, None),
        };
        RunChange::End {
            status: end.status(),
            model,
            error,
            result,
        }
    }

    /// The digest of the blob the change carries, if it carries one.
    pub fn blob(&self) -> Option<&str> {
        match self {
            RunChange::State { digest } => Some(digest),
            RunChange::Checkpoint { params, .. } => Some(params),
            _ => None,
        }
    }
}

/// A [`RunEvent`] as sent: the event as JSON and a signature over its
/// canonical bytes. The signature covers the JSON as the trainer wrote it,
/// so a registry that knows fewer record fields still verifies it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedRunEvent {
    /// The event.
    pub event: Value,
    /// By the trainer's key.
    pub signature: Signature,
}

impl SignedRunEvent {
    /// Signs `event` with `key`.
    pub fn sign(event: &RunEvent, key: &KeyPair) -> Self {
        let event = serde_json::to_value(event).expect("a run event serialises");
        SignedRunEvent {
            signature: Signature {
                key_id: key.key_id(),
                public_key: key.public().to_string(),
                signature: key.sign(&crate::canonical::to_vec(&event)),
            },
            event,
        }
    }

    /// The event and the key that signed it, checked: the key id matches
    /// the key, the signature verifies over the event, and the event is
    /// well formed. Whether the key is trusted is the trust policy's
    /// question.
    pub fn open(&self) -> Result<(RunEvent, PublicKey)> {
        let sig = &self.signature;
        let what = self.event["run_id"]
            .as_str()
            .map_or_else(|| "a run event".to_string(), |id| format!("run {id}"));
        let refuse = |reason: &str| RegistryError::Refused {
            artifact: what.clone(),
            key_id: sig.key_id.clone(),
            reason: reason.to_string(),
        };
        let key = PublicKey::parse(&sig.public_key)
            .map_err(|_| refuse("its signature carries a malformed public key"))?;
        if key.key_id() != sig.key_id {
            return Err(refuse(
                "the signature's key id does not match its public key",
            ));
        }
        if !key.verify(&crate::canonical::to_vec(&self.event), &sig.signature) {
            return Err(refuse(
                "the signature does not verify over the event: it was altered or signed by \
                 another key",
            ));
        }
        let event: RunEvent = serde_json::from_value(self.event.clone())
            .map_err(|e| RegistryError::Invalid(format!("{what}: malformed run event: {e}")))?;
        check_run_id(&event.run_id)?;
        crate::reference::check_name(&format!("{}/x", event.namespace)).map_err(|_| {
            RegistryError::Invalid(format!(
                "run {}: `{}` is not a namespace",
                event.run_id, event.namespace
            ))
        })?;
        if let Some(d) = event.change.blob() {
            crate::digest::check_digest(d)?;
        }
        Ok((event, key))
    }
}

/// Checks a run id as a trainer may choose one: 1 to 64 ASCII letters,
/// digits and `-`.
pub fn check_run_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "`{id}` is not a run id; ids are letters, digits and `-` (like \
             `20261205-071500-3f2a`)"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event() -> RunEvent {
        RunEvent {
            run_id: "20261205-071500-3f2a".into(),
            namespace: "acme".into(),
            change: RunChange::Resume { after_epoch: 3 },
        }
    }

    #[test]
    fn a_signed_event_opens_only_unaltered() {
        let dir = tempfile::tempdir().unwrap();
        let key = crate::KeyStore::new(dir.path()).create("alice").unwrap();
        let signed = SignedRunEvent::sign(&event(), &key);
        let (opened, signer) = signed.open().unwrap();
        assert_eq!(opened, event());
        assert_eq!(signer.key_id(), key.key_id());

        let mut altered = signed.clone();
        altered.event["change"]["resume"]["after_epoch"] = 4.into();
        let e = altered.open().unwrap_err().to_string();
        assert!(e.contains("does not verify over the event"), "{e}");

        let mut bad_id = event();
        bad_id.run_id = "../etc".into();
        let e = SignedRunEvent::sign(&bad_id, &key)
            .open()
            .unwrap_err()
            .to_string();
        assert!(e.contains("is not a run id"), "{e}");
    }

    #[test]
    fn a_registry_records_only_trusted_consistent_events() {
        use serde_json::json;
        let dir = tempfile::tempdir().unwrap();
        let reg = crate::Registry::open(dir.path()).unwrap();
        let alice = reg.keygen("alice").unwrap();
        reg.trust_add(&alice.public(), &["acme".into()]).unwrap();
        let bob = reg.keygen("bob").unwrap();
        reg.trust_add(&bob.public(), &["other".into()]).unwrap();
        let send = |ns: &str, change: RunChange, key: &KeyPair, blob: &[u8]| {
            let event = RunEvent {
                run_id: "r-1".into(),
                namespace: ns.into(),
                change,
            };
            let blobs: Vec<Vec<u8>> = if blob.is_empty() {
                vec![]
            } else {
                vec![blob.to_vec()]
            };
            reg.track(&SignedRunEvent::sign(&event, key), &blobs)
                .map_err(|e| e.to_string())
        };
        let start = RunChange::Start {
            pipeline: "acme/iris@1.0.0".into(),
            record: Box::default(),
        };

        // A key trusted elsewhere is refused, and audited.
        let e = send("acme", start.clone(), &bob, b"").unwrap_err();
        assert!(e.contains("trusted only for namespace(s) other"), "{e}");
        let log = reg.audit_log().unwrap();
        assert_eq!(log.last().unwrap().action, "train.refused");
        assert!(reg.runs().find("r-1").unwrap().is_none());

        // Started (twice: a retry changes nothing), then a checkpoint whose
        // blob must hash to the digest the event names.
        send("acme", start.clone(), &alice, b"").unwrap();
        send("acme", start, &alice, b"").unwrap();
        let checkpoint = RunChange::Checkpoint {
            epoch: 1,
            params: crate::digest(b"params"),
            metrics: json!({"epoch": 1}),
        };
        let e = send("acme", checkpoint.clone(), &alice, b"other").unwrap_err();
        assert!(e.contains("does not hash to"), "{e}");
        send("acme", checkpoint, &alice, b"params").unwrap();
        let run = reg.runs().find("r-1").unwrap().unwrap();
        let tracked = run.tracked.unwrap();
        assert_eq!(
            (tracked.namespace.as_str(), tracked.key_id),
            ("acme", alice.key_id())
        );
        assert_eq!(reg.runs().checkpoints::<Value>("r-1").unwrap().len(), 1);

        // Another namespace's key cannot touch the run.
        let resume = RunChange::Resume { after_epoch: 1 };
        let e = send("other", resume.clone(), &bob, b"").unwrap_err();
        assert!(e.contains("recorded under namespace `acme`"), "{e}");

        // Once completed, only its end sent again is accepted.
        let end = RunChange::end(&RunEnd::Completed {
            model: None,
            result: RunResult::default(),
        });
        send("acme", end.clone(), &alice, b"").unwrap();
        send("acme", end, &alice, b"").unwrap();
        let e = send("acme", resume, &alice, b"").unwrap_err();
        assert!(e.contains("already completed"), "{e}");
        assert_eq!(reg.runs().get("r-1").unwrap().status, RunStatus::Completed);
    }
}
