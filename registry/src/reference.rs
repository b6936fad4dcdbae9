//! Artifact references: `ns/name`, `ns/name@1.2.0`, `ns/name@production`,
//! `ns/name@sha256:…`.

use std::fmt;
use std::str::FromStr;

use crate::digest::check_digest;
use crate::error::{RegistryError, Result};

/// Which version of `ns/name` a reference means.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Selector {
    /// The highest non-yanked version.
    Latest,
    /// Exactly this version (yanked or not).
    Version(semver::Version),
    /// The version an alias points at.
    Alias(String),
    /// The version whose manifest has this digest.
    Digest(String),
}

/// A parsed reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reference {
    /// `namespace/name`.
    pub name: String,
    /// Which version.
    pub selector: Selector,
}

fn segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.as_bytes()[0].is_ascii_alphanumeric()
        && s.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_' | b'.')
        })
}

/// Checks `namespace/name`: two segments of lowercase letters, digits, `-`,
/// `_`, `.`, each starting with a letter or digit.
pub fn check_name(name: &str) -> Result<()> {
    match name.split_once('/') {
        Some((ns, n)) if segment_ok(ns) && segment_ok(n) => Ok(()),
        _ => Err(RegistryError::Invalid(format!(
            "`{name}` is not an artifact name; expected `namespace/name` in lowercase letters, \
             digits, `-`, `_` and `.` (for example `acme/iris`)"
        ))),
    }
}

/// Checks a semantic version (`1.2.0`, `1.2.0-rc.1`).
pub fn check_version(version: &str) -> Result<semver::Version> {
    semver::Version::parse(version).map_err(|e| {
        RegistryError::Invalid(format!(
            "`{version}` is not a semantic version ({e}); write it like `1.2.0`"
        ))
    })
}

/// Checks an alias name: lowercase letters, digits, `-`, `_`, starting with a
/// letter (so it can never be mistaken for a version).
pub fn check_alias(alias: &str) -> Result<()> {
    let ok = alias.len() <= 64
        && alias.as_bytes().first().is_some_and(u8::is_ascii_lowercase)
        && alias
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'-' | b'_'))
        && alias != "latest"
        && alias != "sha256";
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "`{alias}` is not a valid alias; use lowercase letters, digits, `-` and `_`, starting \
             with a letter (for example `production`); `latest` is reserved"
        )))
    }
}

impl FromStr for Reference {
    type Err = RegistryError;

    fn from_str(s: &str) -> Result<Self> {
        let (name, sel) = match s.split_once('@') {
            Some((n, sel)) => (n, Some(sel)),
            None => (s, None),
        };
        check_name(name).map_err(|_| {
            RegistryError::Invalid(format!(
                "`{s}` is not an artifact reference; write `namespace/name`, \
                 `namespace/name@1.2.0`, `namespace/name@<alias>` or `namespace/name@sha256:<hex>`"
            ))
        })?;
        let selector = match sel {
            None | Some("latest") => Selector::Latest,
            Some(d) if d.starts_with("sha256:") => {
                check_digest(d)?;
                Selector::Digest(d.to_string())
            }
            Some(v) if v.as_bytes().first().is_some_and(u8::is_ascii_digit) => {
                Selector::Version(check_version(v)?)
            }
            Some(a) => {
                check_alias(a)?;
                Selector::Alias(a.to_string())
            }
        };
        Ok(Reference {
            name: name.to_string(),
            selector,
        })
    }
}

impl Reference {
    /// Parses a reference string.
    pub fn parse(s: &str) -> Result<Self> {
        s.parse()
    }

    /// The namespace.
    pub fn namespace(&self) -> &str {
        self.name.split_once('/').map_or("", |(ns, _)| ns)
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.selector {
            Selector::Latest => write!(f, "{}", self.name),
            Selector::Version(v) => write!(f, "{}@{v}", self.name),
            Selector::Alias(a) => write!(f, "{}@{a}", self.name),
            Selector::Digest(d) => write!(f, "{}@{d}", self.name),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form() {
        let r: Reference = "acme/iris@1.2.0".parse().unwrap();
        assert_eq!(r.selector, Selector::Version(semver::Version::new(1, 2, 0)));
        let r: Reference = "acme/iris@production".parse().unwrap();
        assert_eq!(r.selector, Selector::Alias("production".into()));
        let d = format!("sha256:{}", "a".repeat(64));
        let r: Reference = format!("acme/iris@{d}").parse().unwrap();
        assert_eq!(r.selector, Selector::Digest(d));
        let r: Reference = "acme/iris".parse().unwrap();
        assert_eq!(r.selector, Selector::Latest);
        assert_eq!(r.namespace(), "acme");
        for bad in [
            "iris",
            "Acme/iris",
            "acme/iris@1.2",
            "acme/iris@sha256:xyz",
            "a/b/c",
        ] {
            assert!(bad.parse::<Reference>().is_err(), "{bad}");
        }
    }
}
