//! Durable file writes: a temporary file beside the target, fsynced and
//! renamed into place, then the directory fsynced, so that after a crash or
//! a power loss the file holds either its old or its new contents.

use std::io::Write;
use std::path::Path;

use crate::error::{RegistryError, Result};

/// Replaces `path` with `bytes` through the temporary file `tmp` (in the
/// same directory). Without `sync` the write is still atomic (a rename),
/// but a power loss may leave the file empty or missing.
pub(crate) fn replace(path: &Path, tmp: &Path, bytes: &[u8], sync: bool) -> Result<()> {
    let io = |e| RegistryError::io(tmp, e);
    let mut f = std::fs::File::create(tmp).map_err(io)?;
    f.write_all(bytes).map_err(io)?;
    if sync {
        f.sync_all().map_err(io)?;
    }
    drop(f);
    std::fs::rename(tmp, path).map_err(|e| RegistryError::io(path, e))?;
    if sync && let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        sync_dir(dir);
    }
    Ok(())
}

/// Fsyncs a directory so a rename in it is durable (best effort).
pub(crate) fn sync_dir(dir: &Path) {
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
}
