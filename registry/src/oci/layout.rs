//! OCI image layouts on disk (the OCI image-layout specification): a
//! directory holding `oci-layout`, `index.json` and `blobs/sha256/<hex>`, so
//! that artifacts travel as plain files (a Kubernetes volume, the directory
//! KServe's storage initializer downloads to `/mnt/models`) and are read back
//! with the same checks as a registry pull. Manifests and blobs are stored as
//! a registry stores them; a tag is the `org.opencontainers.image.ref.name`
//! annotation of its manifest's entry in `index.json`, written
//! `repository:tag`, because one layout holds several repositories (a model
//! and the plugins it pins).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{RegistryError, Result};

/// The annotation that names a manifest's tag in `index.json`.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An OCI image layout directory.
pub(super) struct Layout {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Index {
    #[serde(rename = "schemaVersion")]
    schema_version: u32,
    #[serde(rename = "mediaType", default, skip_serializing_if = "Option::is_none")]
    media_type: Option<String>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Clone, Serialize, Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType")]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

fn io(path: &Path, source: std::io::Error) -> RegistryError {
    RegistryError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Writes `bytes` to `path` whole or not at all (a temporary file renamed).
fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().expect("a path in the layout");
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        path.file_name().expect("a file name").to_string_lossy(),
        std::process::id()
    ));
    std::fs::write(&tmp, bytes).map_err(|e| io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io(path, e))
}

/// The digest of the manifest `selector` (a tag or a digest) names in
/// `repo`, when `index` lists it.
fn find(index: &Index, repo: &str, selector: &str) -> Option<String> {
    if selector.starts_with("sha256:") {
        let listed = index.manifests.iter().any(|m| m.digest == selector);
        return listed.then(|| selector.to_string());
    }
    let name = format!("{repo}:{selector}");
    index
        .manifests
        .iter()
        .find(|m| m.annotations.get(REF_NAME) == Some(&name))
        .map(|m| m.digest.clone())
}

impl Layout {
    /// The layout in `dir` (created by the first write).
    pub(super) fn new(dir: &Path) -> Self {
        Layout {
            dir: dir.to_path_buf(),
        }
    }

    /// The directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    fn blob_path(&self, digest: &str) -> PathBuf {
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        self.dir.join("blobs/sha256").join(hex)
    }

    /// `index.json`, or an empty index for a directory that holds no layout
    /// yet when `create` (a push), or the error that says it is not one.
    fn index(&self, create: bool) -> Result<Index> {
        let path = self.dir.join("index.json");
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                RegistryError::Invalid(format!("{} is not an OCI image index: {e}", path.display()))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && create => Ok(Index {
                schema_version: 2,
                media_type: Some("application/vnd.oci.image.index.v1+json".into()),
                manifests: vec![],
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(RegistryError::NotFound(format!(
                    "{} is not an OCI image layout: it has no index.json (write one with \
                     `tensorlet push <ns/name@version> oci-layout:{}/<ns>/<name>:<version>`)",
                    self.dir.display(),
                    self.dir.display()
                )))
            }
            Err(e) => Err(io(&path, e)),
        }
    }

    /// The manifest digest `selector` (a tag or a digest) resolves to in
    /// `repo`, or `None` (also when the directory holds no layout yet, as a
    /// push asks before writing one).
    pub(super) fn head(&self, repo: &str, selector: &str) -> Result<Option<String>> {
        Ok(find(&self.index(true)?, repo, selector))
    }

    /// A manifest's bytes.
    pub(super) fn manifest(&self, what: &str, repo: &str, selector: &str) -> Result<Vec<u8>> {
        match find(&self.index(false)?, repo, selector) {
            Some(d) => self.blob(what, &d),
            None => Err(RegistryError::NotFound(format!(
                "{what} is not in the OCI image layout {}",
                self.dir.display()
            ))),
        }
    }

    /// A blob's bytes (checked against its digest by the caller).
    pub(super) fn blob(&self, what: &str, digest: &str) -> Result<Vec<u8>> {
        let path = self.blob_path(digest);
        std::fs::read(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => RegistryError::NotFound(format!(
                "{what}: the OCI image layout {} has no {}",
                self.dir.display(),
                path.display()
            )),
            _ => io(&path, e),
        })
    }

    /// Whether the layout holds a blob.
    pub(super) fn blob_exists(&self, digest: &str) -> bool {
        self.blob_path(digest).is_file()
    }

    /// Stores a blob (its digest checked by the caller).
    pub(super) fn put_blob(&self, digest: &str, bytes: &[u8]) -> Result<()> {
        let marker = self.dir.join("oci-layout");
        if !marker.is_file() {
            write_atomically(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        write_atomically(&self.blob_path(digest), bytes)
    }

    /// Stores an image manifest and tags it in `index.json` (replacing the
    /// tag's earlier manifest, as a registry moves a tag).
    pub(super) fn put_manifest(
        &self,
        repo: &str,
        tag: &str,
        media_type: &str,
        bytes: &[u8],
    ) -> Result<()> {
        let digest = crate::digest::digest(bytes);
        self.put_blob(&digest, bytes)?;
        let mut index = self.index(true)?;
        let name = format!("{repo}:{tag}");
        index
            .manifests
            .retain(|m| m.annotations.get(REF_NAME) != Some(&name));
        index.manifests.push(Descriptor {
            media_type: media_type.to_string(),
            digest,
            size: bytes.len() as u64,
            annotations: BTreeMap::from([(REF_NAME.to_string(), name)]),
        });
        let text = serde_json::to_vec_pretty(&index).expect("an index serializes");
        write_atomically(&self.dir.join("index.json"), &text)
    }

    /// Every `(repository, tag)` the layout holds, in `index.json`'s order.
    pub(super) fn tags(&self) -> Result<Vec<(String, String)>> {
        let index = self.index(false)?;
        Ok(index
            .manifests
            .iter()
            .filter_map(|m| {
                let (repo, tag) = m.annotations.get(REF_NAME)?.rsplit_once(':')?;
                Some((repo.to_string(), tag.to_string()))
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_and_blobs_round_trip_and_tags_move() {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(&tmp.path().join("models"));
        assert_eq!(layout.head("tensorlet/iris", "1.0.0").unwrap(), None);
        let e = layout.manifest("m", "tensorlet/iris", "1.0.0").unwrap_err();
        assert!(e.to_string().contains("has no index.json"), "{e}");
        let e = layout.tags().unwrap_err();
        assert!(e.to_string().contains("has no index.json"), "{e}");

        let blob = b"weights";
        let d = crate::digest::digest(blob);
        layout.put_blob(&d, blob).unwrap();
        assert!(layout.blob_exists(&d));
        assert_eq!(layout.blob("blob", &d).unwrap(), blob);

        let first = br#"{"schemaVersion":2,"n":1}"#;
        let second = br#"{"schemaVersion":2,"n":2}"#;
        let media = "application/vnd.oci.image.manifest.v1+json";
        layout
            .put_manifest("tensorlet/iris", "1.0.0", media, first)
            .unwrap();
        layout
            .put_manifest("tensorlet/iris", "production", media, first)
            .unwrap();
        layout
            .put_manifest("tensorlet/iris", "production", media, second)
            .unwrap();
        layout
            .put_manifest("tensorlet/mlp", "0.1.0", media, second)
            .unwrap();
        assert_eq!(
            layout.manifest("m", "tensorlet/iris", "1.0.0").unwrap(),
            first
        );
        assert_eq!(
            layout
                .manifest("m", "tensorlet/iris", "production")
                .unwrap(),
            second
        );
        let d2 = crate::digest::digest(second);
        assert_eq!(
            layout.head("tensorlet/iris", &d2).unwrap(),
            Some(d2.clone())
        );
        assert_eq!(layout.head("tensorlet/iris", "2.0.0").unwrap(), None);
        let e = layout
            .manifest("tensorlet/iris:2.0.0", "tensorlet/iris", "2.0.0")
            .unwrap_err();
        assert!(
            e.to_string().contains("is not in the OCI image layout"),
            "{e}"
        );
        let tags = layout.tags().unwrap();
        assert_eq!(
            tags,
            [
                ("tensorlet/iris".to_string(), "1.0.0".to_string()),
                ("tensorlet/iris".to_string(), "production".to_string()),
                ("tensorlet/mlp".to_string(), "0.1.0".to_string()),
            ]
        );
        // What the specification asks for: the marker file and an index.
        let marker = std::fs::read_to_string(tmp.path().join("models/oci-layout")).unwrap();
        assert_eq!(marker, r#"{"imageLayoutVersion":"1.0.0"}"#);
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(tmp.path().join("models/index.json")).unwrap())
                .unwrap();
        assert_eq!(index["schemaVersion"], 2);
        assert_eq!(index["manifests"].as_array().unwrap().len(), 3);
    }
}
