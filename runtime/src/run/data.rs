//! The training data of a run: a CSV file, or a registered dataset's
//! snapshot, pinned by digest so that a resumed run trains on the same rows.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use tensorlet_registry::{Dataset, Registry, RunData, digest_file};

/// The training data of a run.
#[derive(Debug)]
pub struct DataSource {
    /// The file to read.
    pub path: PathBuf,
    /// `sha256:` of its bytes.
    pub digest: String,
    /// The registered dataset, when named by one.
    pub dataset: Option<Dataset>,
    _snapshot: Option<tempfile::TempDir>,
}

impl DataSource {
    /// A CSV path, or else a dataset name (`name` or `name@sha256:…`).
    pub fn open(reg: &Registry, arg: &str) -> Result<Self> {
        let path = Path::new(arg);
        if path.is_file() {
            return DataSource::file(path);
        }
        if arg.contains(['/', '\\', '.']) && !arg.contains("@sha256:") {
            bail!(
                "{arg}: no such file; --data takes a CSV file or the name of a dataset registered \
                 with `tensorlet dataset add`"
            );
        }
        DataSource::dataset(reg, arg)
    }

    /// A data file as it is now (hashed as it is read, never held whole).
    pub fn file(path: &Path) -> Result<Self> {
        let file_digest =
            digest_file(path).with_context(|| format!("cannot read {}", path.display()))?;
        Ok(DataSource {
            path: std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
            digest: file_digest,
            dataset: None,
            _snapshot: None,
        })
    }

    /// A registered dataset: its snapshot, after checking that the file it
    /// was registered from has not changed since (when named without a digest).
    pub fn dataset(reg: &Registry, spec: &str) -> Result<Self> {
        let ds = reg.datasets().get(spec)?;
        if !spec.contains('@')
            && let Ok(now) = digest_file(Path::new(&ds.path))
            && now != ds.digest
        {
            bail!(
                "dataset `{}` changed since it was registered: {} now has digest {}, but `{}` was \
                 registered as {}; register the new contents with `tensorlet dataset add {} {}`, \
                 or train on the registered snapshot with `--data {}`",
                ds.name,
                ds.path,
                now,
                ds.name,
                ds.digest,
                ds.name,
                ds.path,
                ds.reference()
            );
        }
        let blob = reg
            .blob_path(&ds.digest)
            .with_context(|| format!("the snapshot of dataset {} is missing", ds.reference()))?;
        // The snapshot under its file's name (the name says its format),
        // linked rather than copied: a dataset may be larger than memory.
        let dir = tempfile::tempdir().context("cannot create a temporary directory")?;
        let name = Path::new(&ds.path).file_name().map_or_else(
            || format!("{}.csv", ds.name),
            |n| n.to_string_lossy().into(),
        );
        let path = dir.path().join(name);
        link_or_copy(&blob, &path)?;
        Ok(DataSource {
            path,
            digest: ds.digest.clone(),
            dataset: Some(ds),
            _snapshot: Some(dir),
        })
    }

    /// The data a run recorded (its `dataset`): the same dataset snapshot,
    /// or the same file with the same digest.
    pub fn from_record(reg: &Registry, rec: &RunData) -> Result<Self> {
        let want = Some(rec.digest.as_str())
            .filter(|d| !d.is_empty())
            .context("the run's record has no dataset digest")?;
        if let Some(name) = &rec.name {
            return DataSource::dataset(reg, &format!("{name}@{want}"));
        }
        let path = rec
            .path
            .as_deref()
            .context("the run's record has no data path")?;
        let d = DataSource::file(Path::new(path))?;
        if d.digest != want {
            bail!(
                "{path} changed since the run started (now {}, recorded {want}); a resumed run \
                 must train on the same data. Register data with `tensorlet dataset add` to keep \
                 a snapshot of it",
                d.digest
            );
        }
        Ok(d)
    }

    /// What a run records about its data; [`DataSource::from_record`] reads it back.
    pub fn record(&self) -> RunData {
        RunData {
            digest: self.digest.clone(),
            name: self.dataset.as_ref().map(|d| d.name.clone()),
            path: Some(
                self.dataset
                    .as_ref()
                    .map_or_else(|| self.path.display().to_string(), |d| d.path.clone()),
            ),
        }
    }
}

/// `to` as a link to `from` (a hard link, else a symbolic one), or else a
/// copy made in pieces.
fn link_or_copy(from: &Path, to: &Path) -> Result<()> {
    if std::fs::hard_link(from, to).is_ok() {
        return Ok(());
    }
    #[cfg(unix)]
    if std::os::unix::fs::symlink(from, to).is_ok() {
        return Ok(());
    }
    std::fs::copy(from, to)
        .map(drop)
        .with_context(|| format!("cannot copy {} to {}", from.display(), to.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tensorlet_registry::digest;

    #[test]
    fn a_recorded_file_is_found_again_only_unchanged() {
        let home = tempfile::tempdir().unwrap();
        let reg = Registry::open(home.path()).unwrap();
        let csv = home.path().join("rows.csv");
        std::fs::write(&csv, "a,label\n1,0\n").unwrap();
        let d = DataSource::open(&reg, csv.to_str().unwrap()).unwrap();
        assert_eq!(d.digest, digest(b"a,label\n1,0\n"));
        let rec = d.record();
        assert_eq!(rec.name, None);
        assert_eq!(
            DataSource::from_record(&reg, &rec).unwrap().digest,
            d.digest
        );
        std::fs::write(&csv, "a,label\n2,1\n").unwrap();
        let e = DataSource::from_record(&reg, &rec).unwrap_err().to_string();
        assert!(e.contains("changed since the run started"), "{e}");
        let e = DataSource::open(&reg, "missing.csv")
            .unwrap_err()
            .to_string();
        assert!(e.contains("missing.csv: no such file"), "{e}");
    }

    #[test]
    fn a_dataset_trains_on_its_snapshot_and_refuses_a_changed_source() {
        let home = tempfile::tempdir().unwrap();
        let reg = Registry::open(home.path()).unwrap();
        let csv = home.path().join("iris.csv");
        std::fs::write(&csv, "x,label\n1,0\n").unwrap();
        let (ds, _) = reg.datasets().add("iris", &csv).unwrap();
        let d = DataSource::open(&reg, "iris").unwrap();
        assert_eq!(std::fs::read(&d.path).unwrap(), b"x,label\n1,0\n");
        assert_eq!(d.record().name.as_deref(), Some("iris"));

        std::fs::write(&csv, "x,label\n9,1\n").unwrap();
        let e = DataSource::open(&reg, "iris").unwrap_err().to_string();
        assert!(
            e.contains("dataset `iris` changed since it was registered"),
            "{e}"
        );
        // Named with its digest, the snapshot is used whatever the file holds now.
        let pinned = DataSource::open(&reg, &ds.reference()).unwrap();
        assert_eq!(std::fs::read(&pinned.path).unwrap(), b"x,label\n1,0\n");
        let again = DataSource::from_record(&reg, &d.record()).unwrap();
        assert_eq!(again.digest, ds.digest);
    }
}
