//! Content addresses: `sha256:<hex>` of some bytes, and the check that a
//! string is one.

use sha2::{Digest, Sha256};

use crate::error::{RegistryError, Result};

/// `sha256:<hex>` of some bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `sha256:<hex>` of a file's bytes, read in pieces (never held whole).
pub fn digest_file(path: &std::path::Path) -> Result<String> {
    let mut file = std::fs::File::open(path).map_err(|e| RegistryError::io(path, e))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| RegistryError::io(path, e))?;
    Ok(format!("sha256:{}", hex::encode(hasher.finalize())))
}

/// Checks `sha256:` + 64 lowercase hex digits.
pub fn check_digest(d: &str) -> Result<()> {
    let ok = d.strip_prefix("sha256:").is_some_and(|h| {
        h.len() == 64
            && h.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    });
    if ok {
        Ok(())
    } else {
        Err(RegistryError::Invalid(format!(
            "`{d}` is not a digest; expected `sha256:` and 64 lowercase hex digits"
        )))
    }
}
