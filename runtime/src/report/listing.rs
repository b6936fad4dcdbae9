//! Listings of the registry's contents as the CLI prints them: artifact
//! versions (`tensorlet list`), the trust policy (`trust list`) and the
//! signing keys (`key list`).

use std::fmt;

use serde::Serialize;
use tensorlet_registry::{ArtifactSummary, TrustEntry};

/// `tensorlet list`: one line per artifact version under a header, with
/// its status (yanked, aliases).
pub struct ArtifactTable<'a>(pub &'a [ArtifactSummary]);

impl fmt::Display for ArtifactTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{:<40} {:<12} {:<19} {:<16} STATUS",
            "ARTIFACT", "KIND", "DIGEST", "KEY"
        )?;
        for a in self.0 {
            let mut status = Vec::new();
            if a.yanked {
                status.push("yanked".to_string());
            }
            if !a.aliases.is_empty() {
                status.push(format!("@{}", a.aliases.join(" @")));
            }
            writeln!(
                f,
                "{:<40} {:<12} {:<19} {:<16} {}",
                a.reference(),
                a.kind.as_str(),
                &a.digest[..a.digest.len().min(19)],
                a.key_id,
                status.join(" ")
            )?;
        }
        Ok(())
    }
}

/// `tensorlet trust list`: each trusted key with its namespaces, or how to
/// add one.
pub struct TrustTable<'a>(pub &'a [TrustEntry]);

impl fmt::Display for TrustTable<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return writeln!(
                f,
                "no trusted keys; add one with `tensorlet trust add <public key> --namespace <ns>`"
            );
        }
        for e in self.0 {
            writeln!(
                f,
                "{}  {:<24} {}",
                e.key_id,
                e.namespaces.join(","),
                e.public_key
            )?;
        }
        Ok(())
    }
}

/// One signing key as `tensorlet key list` shows it (JSON keys in this order).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct KeyRow {
    /// The key id.
    pub key_id: String,
    /// The key's name.
    pub name: String,
    /// `ed25519:<hex>`.
    pub public_key: String,
}

impl fmt::Display for KeyRow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:<16} {}  {}", self.name, self.key_id, self.public_key)
    }
}

#[cfg(test)]
mod tests {
    use tensorlet_registry::Kind;

    use super::*;

    fn summary(yanked: bool, aliases: &[&str]) -> ArtifactSummary {
        ArtifactSummary {
            name: "acme/iris-model".into(),
            version: "0.1.0".into(),
            kind: Kind::Model,
            digest: format!("sha256:{}", "a".repeat(64)),
            key_id: "0123456789abcdef".into(),
            yanked,
            created: "2026-12-04T10:00:00Z".into(),
            aliases: aliases.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn artifacts_are_a_table_with_their_status() {
        let all = [
            summary(false, &[]),
            summary(true, &["production", "staging"]),
        ];
        let text = ArtifactTable(&all).to_string();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            format!(
                "{:<40} {:<12} {:<19} {:<16} STATUS",
                "ARTIFACT", "KIND", "DIGEST", "KEY"
            )
        );
        let row = format!(
            "{:<40} {:<12} sha256:aaaaaaaaaaaa 0123456789abcdef ",
            "acme/iris-model@0.1.0", "model"
        );
        assert_eq!(lines[1], row);
        assert_eq!(lines[2], format!("{row}yanked @production @staging"));
        assert_eq!(lines.len(), 3);
    }

    #[test]
    fn trusted_keys_or_how_to_trust_one() {
        assert_eq!(
            TrustTable(&[]).to_string(),
            "no trusted keys; add one with `tensorlet trust add <public key> --namespace <ns>`\n"
        );
        let e = TrustEntry {
            key_id: "k1".into(),
            public_key: "ed25519:00".into(),
            namespaces: vec!["acme".into(), "demo".into()],
            added: "2026-12-04T10:00:00Z".into(),
        };
        assert_eq!(
            TrustTable(&[e]).to_string(),
            format!("k1  {:<24} ed25519:00\n", "acme,demo")
        );
    }

    #[test]
    fn a_key_row_reads_name_id_and_public_key() {
        let k = KeyRow {
            key_id: "k1".into(),
            name: "alice".into(),
            public_key: "ed25519:00".into(),
        };
        assert_eq!(k.to_string(), format!("{:<16} k1  ed25519:00", "alice"));
        assert_eq!(
            serde_json::to_string(&k).unwrap(),
            r#"{"key_id":"k1","name":"alice","public_key":"ed25519:00"}"#
        );
    }
}
