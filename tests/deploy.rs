//! Every Kubernetes manifest under `deploy/` is checked as the API server
//! checks it with strict field validation (`tests/deploy/validate.py`):
//! built-in kinds against the OpenAPI schemas of Kubernetes
//! [`KUBERNETES`], custom resources against their CRDs (KServe's, KEDA's and
//! SpinKube's, vendored in `tests/deploy/vendor/`), so a misspelled field fails
//! the tests.

#[path = "common/venv.rs"]
mod venv;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The Kubernetes version whose schemas the built-in kinds are checked against.
const KUBERNETES: &str = "1.33.0";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Every YAML file under `dir`, sorted.
fn manifests(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(manifests(&path));
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            found.push(path);
        }
    }
    found.sort();
    found
}

/// Runs the validator on `files`: (whether all are valid, what it printed).
fn validate(files: &[PathBuf]) -> (bool, String) {
    let mut validator = Command::new(venv::python());
    validator
        .arg(root().join("tests/deploy/validate.py"))
        .args(["--kubernetes", KUBERNETES]);
    for crds in ["keda", "kserve", "spinkube"] {
        validator
            .arg("--crds")
            .arg(root().join("tests/deploy/vendor").join(crds));
    }
    let out = validator.args(files).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        matches!(out.status.code(), Some(0 | 1)),
        "the validator failed to run: {text}"
    );
    (out.status.success(), text)
}

#[test]
#[ignore = "needs kubernetes-validate from PyPI: bash tests/clients/install.sh"]
fn every_manifest_under_deploy_is_valid() {
    let files = manifests(&root().join("deploy"));
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for want in [
        "cluster-serving-runtime.yaml",
        "inference-service.yaml",
        "keda-scaledobject.yaml",
        "registry.yaml",
        "spin-app.yaml",
        "spin-app-executor.yaml",
        "tensorlet-serve.yaml",
    ] {
        assert!(names.iter().any(|n| n == want), "{want} not in {names:?}");
    }
    let (ok, text) = validate(&files);
    assert!(ok, "{text}");
}

#[test]
#[ignore = "needs kubernetes-validate from PyPI: bash tests/clients/install.sh"]
fn a_misspelled_field_fails_validation() {
    let tmp = tempfile::tempdir().unwrap();
    // (manifest, field, its misspelling, what the validator must name)
    let cases = [
        (
            "tensorlet-serve.yaml",
            "replicas: 3",
            "replcas: 3",
            "'replcas' was unexpected",
        ),
        (
            "tensorlet-serve.yaml",
            "readinessProbe:",
            "readynessProbe:",
            "'readynessProbe' was unexpected",
        ),
        (
            "keda-scaledobject.yaml",
            "minReplicaCount: 2",
            "minReplicas: 2",
            "ScaledObject tensorlet-serve: spec: Additional properties are not allowed \
             ('minReplicas' was unexpected)",
        ),
        (
            "keda-scaledobject.yaml",
            "  name: tensorlet-serve\nspec:",
            "  nmae: tensorlet-serve\nspec:",
            "'nmae' was unexpected",
        ),
        (
            "keda-scaledobject.yaml",
            "maxReplicaCount: 20",
            "maxReplicaCount: twenty",
            "'twenty' is not of type 'integer'",
        ),
        (
            "kserve/inference-service.yaml",
            "storageUri:",
            "storageURI:",
            "InferenceService iris: spec.predictor.model: Additional properties are not \
             allowed ('storageURI' was unexpected)",
        ),
        (
            "kserve/cluster-serving-runtime.yaml",
            "autoSelect: true",
            "autoselect: true",
            "'autoselect' was unexpected",
        ),
        (
            "spinkube/spin-app.yaml",
            "executor: containerd-shim-spin",
            "exector: containerd-shim-spin",
            "SpinApp iris-model: spec: Additional properties are not allowed \
             ('exector' was unexpected)",
        ),
        (
            "spinkube/spin-app.yaml",
            "path: /v2/health/ready",
            "pth: /v2/health/ready",
            "spec.checks.readiness.httpGet: Additional properties are not allowed \
             ('pth' was unexpected)",
        ),
        (
            "spinkube/spin-app.yaml",
            "replicas: 2",
            "replicas: two",
            "spec.replicas: 'two' is not of type 'integer'",
        ),
        (
            "spinkube/spin-app-executor.yaml",
            "runtimeClassName: wasmtime-spin-v2",
            "runtimeClass: wasmtime-spin-v2",
            "SpinAppExecutor containerd-shim-spin: spec.deploymentConfig: Additional \
             properties are not allowed ('runtimeClass' was unexpected)",
        ),
        (
            "spinkube/spin-app-executor.yaml",
            "handler: spin",
            "handlr: spin",
            "RuntimeClass wasmtime-spin-v2: (the document): 'handler' is a required property",
        ),
    ];
    for (i, (file, field, typo, named)) in cases.into_iter().enumerate() {
        let text = std::fs::read_to_string(root().join("deploy").join(file)).unwrap();
        assert!(text.contains(field), "{file} has no `{field}`");
        let bad = tmp.path().join(format!("{i}.yaml"));
        std::fs::write(&bad, text.replacen(field, typo, 1)).unwrap();
        let (ok, out) = validate(&[bad]);
        assert!(!ok, "{file} with `{typo}` passed: {out}");
        assert!(out.contains(named), "{file} with `{typo}`: {out}");
    }
}
