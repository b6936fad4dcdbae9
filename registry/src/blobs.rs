//! The blob store: files named by their sha256 under `blobs/sha256/`, each
//! listed in the `blobs` table. Components, weights, dataset snapshots and
//! run checkpoints all live here, so identical bytes share one file.
//!
//! A blob is written durably (see [`crate::durable`]) before the
//! transaction that refers to it commits, so a row never names a file that
//! a crash could lose.

use std::path::{Path, PathBuf};

use rusqlite::{Connection, params};

use crate::db::Db;
use crate::digest::{check_digest, digest};
use crate::durable;
use crate::error::{RegistryError, Result};
use crate::time::now_rfc3339;

/// The blob files of a registry.
pub(crate) struct Blobs {
    dir: PathBuf,
}

impl Blobs {
    /// The store under `home` (`blobs/sha256/`, created if missing).
    pub(crate) fn open(home: &Path) -> Result<Self> {
        let dir = home.join("blobs").join("sha256");
        std::fs::create_dir_all(&dir).map_err(|e| RegistryError::io(home, e))?;
        Ok(Blobs { dir })
    }

    fn path(&self, d: &str) -> PathBuf {
        self.dir.join(d.trim_start_matches("sha256:"))
    }

    /// Writes a blob: durably with `sync` (temporary file, fsync, rename,
    /// fsync of the directory), else atomically only. A blob already present
    /// with the right content is kept.
    pub(crate) fn write(&self, d: &str, bytes: &[u8], sync: bool) -> Result<()> {
        let path = self.path(d);
        if let Ok(existing) = std::fs::read(&path)
            && digest(&existing) == d
        {
            return Ok(());
        }
        let tmp = self.dir.join(format!(
            ".{}.{}.{:?}.tmp",
            d.trim_start_matches("sha256:"),
            std::process::id(),
            std::thread::current().id()
        ));
        durable::replace(&path, &tmp, bytes, sync)
    }

    /// A blob's bytes as the file holds them, unchecked.
    pub(crate) fn read(&self, d: &str) -> Result<Vec<u8>> {
        let path = self.path(d);
        std::fs::read(&path).map_err(|e| RegistryError::io(path, e))
    }

    /// A blob's bytes, checked against its digest.
    pub(crate) fn get(&self, d: &str) -> Result<Vec<u8>> {
        check_digest(d)?;
        let bytes = self
            .read(d)
            .map_err(|_| RegistryError::NotFound(format!("blob {d} is not in this registry")))?;
        if digest(&bytes) != d {
            return Err(RegistryError::Refused {
                artifact: d.to_string(),
                key_id: "none".into(),
                reason: "the blob file was modified".into(),
            });
        }
        Ok(bytes)
    }

    /// Stores a file's bytes durably, copied and hashed in pieces (a large
    /// dataset is never held in memory), and lists them in the `blobs`
    /// table; returns their digest and size. A blob already present with
    /// the right content is kept.
    pub(crate) fn put_file(&self, db: &Db, path: &Path) -> Result<(String, u64)> {
        use sha2::Digest;
        use std::io::{Read, Write};
        let tmp = self.dir.join(format!(
            ".file.{}.{:?}.tmp",
            std::process::id(),
            std::thread::current().id()
        ));
        let copied = (|| -> std::io::Result<(String, u64)> {
            let mut from = std::fs::File::open(path)?;
            let mut to = std::fs::File::create(&tmp)?;
            let mut hasher = sha2::Sha256::new();
            let mut buf = vec![0u8; 1 << 20];
            let mut size = 0u64;
            loop {
                let n = from.read(&mut buf)?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
                to.write_all(&buf[..n])?;
                size += n as u64;
            }
            to.sync_all()?;
            Ok((format!("sha256:{}", hex::encode(hasher.finalize())), size))
        })();
        let (d, size) = match copied {
            Ok(c) => c,
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                return Err(RegistryError::io(path, e));
            }
        };
        let target = self.path(&d);
        if self.verified_path(&d).is_ok() {
            let _ = std::fs::remove_file(&tmp);
        } else {
            std::fs::rename(&tmp, &target).map_err(|e| RegistryError::io(&target, e))?;
            durable::sync_dir(&self.dir);
        }
        list(&db.lock(), &d, size as usize).map_err(|e| db.err(e))?;
        Ok((d, size))
    }

    /// The file of a blob, after checking (in pieces) that it holds what its
    /// digest says: for a large blob read by path rather than into memory.
    pub(crate) fn verified_path(&self, d: &str) -> Result<PathBuf> {
        check_digest(d)?;
        let path = self.path(d);
        if !path.is_file() {
            return Err(RegistryError::NotFound(format!(
                "blob {d} is not in this registry"
            )));
        }
        if crate::digest::digest_file(&path)? != d {
            return Err(RegistryError::Refused {
                artifact: d.to_string(),
                key_id: "none".into(),
                reason: "the blob file was modified".into(),
            });
        }
        Ok(path)
    }

    /// Stores bytes durably and lists them in the `blobs` table; returns
    /// their digest.
    pub(crate) fn put(&self, db: &Db, bytes: &[u8]) -> Result<String> {
        let d = digest(bytes);
        self.write(&d, bytes, true)?;
        list(&db.lock(), &d, bytes.len()).map_err(|e| db.err(e))?;
        Ok(d)
    }
}

/// Lists a written blob in the `blobs` table (once).
pub(crate) fn list(conn: &Connection, d: &str, size: usize) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT OR IGNORE INTO blobs (digest, size, created) VALUES (?1, ?2, ?3)",
        params![d, size as i64, now_rfc3339()],
    )
    .map(drop)
}
