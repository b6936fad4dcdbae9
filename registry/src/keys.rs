//! ed25519 keys: generation, files under `$TENSORLET_HOME/keys/`, key ids.
//!
//! A private key is `keys/<name>.key` (the 32-byte seed in hex, file mode
//! 0600); its public half is `keys/<name>.pub` (`ed25519:<hex>`). A key id is
//! the first 16 hex digits of the sha256 of the 32 public key bytes.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};

use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::error::{RegistryError, Result};

/// The name of the key that signs audit checkpoints; created on first use.
pub const NODE_KEY: &str = "node";

/// An ed25519 public key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Parses `ed25519:<64 hex digits>` (the prefix may be left out).
    pub fn parse(s: &str) -> Result<Self> {
        let bad = || {
            RegistryError::Invalid(format!(
                "`{s}` is not a public key; expected `ed25519:` followed by 64 hex digits, as \
                 printed by `tensorlet keygen` or `tensorlet key export`"
            ))
        };
        let hex_part = s.trim().strip_prefix("ed25519:").unwrap_or(s.trim());
        let bytes: [u8; 32] = hex::decode(hex_part)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(bad)?;
        VerifyingKey::from_bytes(&bytes)
            .map(PublicKey)
            .map_err(|_| bad())
    }

    /// First 16 hex digits of sha256(public key bytes).
    pub fn key_id(&self) -> String {
        hex::encode(&Sha256::digest(self.0.as_bytes())[..8])
    }

    /// Verifies a signature with `verify_strict` (rejects malleable and
    /// small-order forms).
    pub fn verify(&self, message: &[u8], signature_hex: &str) -> bool {
        let Some(bytes) = hex::decode(signature_hex)
            .ok()
            .and_then(|b| <[u8; 64]>::try_from(b).ok())
        else {
            return false;
        };
        self.0
            .verify_strict(message, &Signature::from_bytes(&bytes))
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ed25519:{}", hex::encode(self.0.as_bytes()))
    }
}

/// A named private key.
pub struct KeyPair {
    name: String,
    signing: SigningKey,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyPair({}, {})", self.name, self.public())
    }
}

impl KeyPair {
    /// A fresh key from the operating system's random source.
    pub fn generate(name: &str) -> Result<Self> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed)
            .map_err(|e| RegistryError::Key(format!("cannot get random bytes for a key: {e}")))?;
        Ok(KeyPair {
            name: name.to_string(),
            signing: SigningKey::from_bytes(&seed),
        })
    }

    /// The key's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.signing.verifying_key())
    }

    /// The key id of the public half.
    pub fn key_id(&self) -> String {
        self.public().key_id()
    }

    /// Signs `message`; the signature in hex.
    pub fn sign(&self, message: &[u8]) -> String {
        hex::encode(self.signing.sign(message).to_bytes())
    }
}

/// The `keys/` directory.
#[derive(Clone, Debug)]
pub struct KeyStore {
    dir: PathBuf,
}

/// Checks a key name: letters, digits, `-`, `_`, `.`; not starting with `.`.
pub fn check_key_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "`{name}` is not a valid key name; use letters, digits, `-`, `_` and `.`"
        )))
    }
}

impl KeyStore {
    /// The key store in `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        KeyStore { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn private_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    fn public_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.pub"))
    }

    /// Generates and stores a new key; refuses to overwrite an existing one.
    pub fn create(&self, name: &str) -> Result<KeyPair> {
        check_key_name(name)?;
        let key = KeyPair::generate(name)?;
        self.store(&key)?;
        Ok(key)
    }

    /// Writes a key atomically with mode 0600: a temporary file linked into
    /// place, so a concurrent reader never sees a half-written key and an
    /// existing key is never replaced.
    fn store(&self, key: &KeyPair) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| RegistryError::io(&self.dir, e))?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            // Only the owner lists the keys (best effort: the files are 0600 anyway).
            let _ = std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700));
        }
        let path = self.private_path(&key.name);
        if path.exists() {
            return Err(RegistryError::Key(format!(
                "a key named `{}` exists already ({}); choose another name",
                key.name,
                path.display()
            )));
        }
        let tmp = self.dir.join(format!(
            ".{}.{}.{}.tmp",
            key.name,
            std::process::id(),
            hex::encode(&Sha256::digest(key.public().0.as_bytes())[..4])
        ));
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
        let mut f = opts.open(&tmp).map_err(|e| RegistryError::io(&tmp, e))?;
        f.write_all(format!("{}\n", hex::encode(key.signing.to_bytes())).as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| RegistryError::io(&tmp, e))?;
        let linked = std::fs::hard_link(&tmp, &path);
        let _ = std::fs::remove_file(&tmp);
        match linked {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(RegistryError::Key(format!(
                    "a key named `{}` exists already ({}); choose another name",
                    key.name,
                    path.display()
                )));
            }
            Err(e) => return Err(RegistryError::io(&path, e)),
        }
        let pub_path = self.public_path(&key.name);
        std::fs::write(&pub_path, format!("{}\n", key.public()))
            .map_err(|e| RegistryError::io(&pub_path, e))?;
        Ok(())
    }

    /// Loads a private key.
    pub fn load(&self, name: &str) -> Result<KeyPair> {
        check_key_name(name)?;
        let path = self.private_path(name);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(RegistryError::Key(format!(
                    "there is no key named `{name}` in {}; create one with `tensorlet keygen {name}`",
                    self.dir.display()
                )));
            }
            Err(e) => return Err(RegistryError::io(&path, e)),
        };
        let seed: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| {
                RegistryError::Key(format!(
                    "{} is not a tensorlet private key (64 hex digits)",
                    path.display()
                ))
            })?;
        Ok(KeyPair {
            name: name.to_string(),
            signing: SigningKey::from_bytes(&seed),
        })
    }

    /// Loads a key, creating it when there is none (the node key).
    pub fn load_or_create(&self, name: &str) -> Result<KeyPair> {
        if self.private_path(name).exists() {
            return self.load(name);
        }
        match self.create(name) {
            Ok(k) => Ok(k),
            // Another process created it in between.
            Err(RegistryError::Key(_)) => self.load(name),
            Err(e) => Err(e),
        }
    }

    /// Names of the stored keys, sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let mut names = Vec::new();
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
            Err(e) => return Err(RegistryError::io(&self.dir, e)),
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(stem) = name.strip_suffix(".key")
                && !stem.starts_with('.')
            {
                names.push(stem.to_string());
            }
        }
        names.sort();
        Ok(names)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_sign() {
        let dir = tempfile::tempdir().unwrap();
        let store = KeyStore::new(dir.path());
        let k = store.create("alice").unwrap();
        assert!(store.create("alice").is_err());
        let again = store.load("alice").unwrap();
        assert_eq!(k.public(), again.public());
        let sig = k.sign(b"hello");
        assert!(k.public().verify(b"hello", &sig));
        assert!(!k.public().verify(b"hellp", &sig));
        let parsed = PublicKey::parse(&k.public().to_string()).unwrap();
        assert_eq!(parsed.key_id().len(), 16);
        assert_eq!(parsed, k.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(dir.path().join("alice.key"))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(store.list().unwrap(), vec!["alice".to_string()]);
    }
}
