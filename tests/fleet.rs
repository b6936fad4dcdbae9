//! Artifacts through OCI registries and fleets that follow a central
//! registry, with the real binary and real servers: the CNCF distribution
//! registry (Debian's `docker-registry`, started on loopback with a temporary
//! storage directory) and `tensorlet registry serve`.
//!
//! The OCI tests need `/usr/bin/docker-registry`, so they are ignored by
//! default (`cargo test … -- --ignored` runs them; `.ci/run` installs it) and
//! fail, saying what to install, when run without it. See `docs/testing.md`.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tensorlet_runtime::registry::digest;

use common::http::{json_or_null, request, try_request};
use common::oci::{OciRegistry, Secured};
use common::tls::Ca;
use common::{RegistryServer, fails, ok, s};

const MODEL: &str = "tensorlet/iris-model";

fn run(home: &Path, args: &[&str]) -> Output {
    common::tensorlet_env(home, args, &[("TENSORLET_DEVICE", "cpu")])
}

/// A home with the demo's signed iris and digits models (key `demo`,
/// namespace `tensorlet`) and `iris.csv`.
fn publisher() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    ok(&run(
        tmp.path(),
        &["demo", "--out", s(tmp.path()), "--only", "iris,digits"],
    ));
    tmp
}

/// A home that trusts `home`'s key `key` for namespace `tensorlet`.
fn trusting(homes: &[(&Path, &str)]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    for (home, key) in homes {
        let export = ok(&run(home, &["key", "export", key]));
        let public = export
            .lines()
            .find(|l| l.starts_with("ed25519:"))
            .unwrap_or_else(|| panic!("no public key in: {export}"));
        ok(&run(
            tmp.path(),
            &["trust", "add", public, "--namespace", "tensorlet"],
        ));
    }
    tmp
}

fn kill(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// GETs an OCI manifest (as the Wasm tools do) and returns it with its digest.
fn oci_manifest(oci: &OciRegistry, repo: &str, reference: &str) -> (Value, String) {
    let r = request(
        "GET",
        oci.addr(),
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
        &[],
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let d = r.header("docker-content-digest").unwrap().to_string();
    assert_eq!(d, digest(&r.body));
    (serde_json::from_slice(&r.body).unwrap(), d)
}

fn oci_blob(oci: &OciRegistry, repo: &str, d: &str) -> Vec<u8> {
    let r = request(
        "GET",
        oci.addr(),
        &format!("/v2/{repo}/blobs/{d}"),
        &[],
        &[],
    );
    assert_eq!(r.status, 200);
    assert_eq!(digest(&r.body), d);
    r.body
}

fn oci_put_blob(oci: &OciRegistry, repo: &str, bytes: &[u8]) -> String {
    let r = request(
        "POST",
        oci.addr(),
        &format!("/v2/{repo}/blobs/uploads/"),
        &[],
        &[],
    );
    assert_eq!(r.status, 202);
    let location = r.header("location").unwrap();
    let path = location
        .split_once("://")
        .map_or(location, |(_, rest)| &rest[rest.find('/').unwrap()..]);
    let d = digest(bytes);
    let sep = if path.contains('?') { '&' } else { '?' };
    let r = request(
        "PUT",
        oci.addr(),
        &format!("{path}{sep}digest={d}"),
        &[("Content-Type", "application/octet-stream")],
        bytes,
    );
    assert_eq!(r.status, 201, "{}", r.text());
    d
}

/// `tensorlet serve` as a process; its address, and its stderr collected.
struct Serving {
    child: Child,
    addr: String,
    stderr: Arc<std::sync::Mutex<String>>,
}

impl Drop for Serving {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

fn serve(home: &Path, extra: &[&str]) -> Serving {
    serve_env(home, extra, &[])
}

/// [`serve`] with more environment variables.
fn serve_env(home: &Path, extra: &[&str], env: &[(&str, &str)]) -> Serving {
    let model = format!("{MODEL}@production");
    serve_models(home, &[&["--model", &model], extra].concat(), env)
}

/// `tensorlet serve` on a free loopback port, HTTP only.
const SERVE: [&str; 7] = [
    "serve",
    "--addr",
    "127.0.0.1:0",
    "--admin-addr",
    "off",
    "--grpc-addr",
    "off",
];

/// [`SERVE`] of the models `args` name.
fn serve_models(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Serving {
    let mut child = Command::new(env!("CARGO_BIN_EXE_tensorlet"))
        .args(SERVE)
        .args(args)
        .env("TENSORLET_HOME", home)
        .env("TENSORLET_DEVICE", "cpu")
        .env_remove("TENSORLET_REGISTRY")
        .env_remove("TENSORLET_CA_FILE")
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = Arc::new(std::sync::Mutex::new(String::new()));
    let err = BufReader::new(child.stderr.take().unwrap());
    let sink = stderr.clone();
    std::thread::spawn(move || {
        for l in err.lines().map_while(Result::ok) {
            eprintln!("[serve] {l}");
            let mut s = sink.lock().unwrap();
            s.push_str(&l);
            s.push('\n');
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let addr = loop {
        let line = lines
            .next()
            .unwrap_or_else(|| panic!("serve exited: {}", stderr.lock().unwrap()))
            .unwrap();
        // "serving iris-model 0.1.0 at http://127.0.0.1:PORT/v2/models/iris-model/infer"
        if line.starts_with("serving ") {
            break common::http_addr(&line).unwrap();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Serving {
        child,
        addr,
        stderr,
    }
}

fn infer(addr: &str) -> (u16, Value) {
    infer_model(addr, "iris-model")
}

/// Two iris rows to the model served as `model`.
fn infer_model(addr: &str, model: &str) -> (u16, Value) {
    let body = json!({ "inputs": [{ "name": "input", "shape": [2, 4], "datatype": "FP64",
                       "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]] }] });
    match try_request(
        "POST",
        addr,
        &format!("/v2/models/{model}/infer"),
        &[("Content-Type", "application/json")],
        &serde_json::to_vec(&body).unwrap(),
    ) {
        Ok(r) => (r.status, json_or_null(&r)),
        Err(_) => (0, Value::Null),
    }
}

fn ready(addr: &str) -> Value {
    json_or_null(&request(
        "GET",
        addr,
        "/v2/models/iris-model/ready",
        &[],
        &[],
    ))
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn show_digest(home: &Path, reference: &str) -> String {
    let out = ok(&run(home, &["show", reference, "--json"]));
    let v: Value = serde_json::from_str(&out).unwrap();
    v["summary"]["digest"]
        .as_str()
        .or_else(|| v["digest"].as_str())
        .unwrap_or_else(|| panic!("no digest in {v}"))
        .to_string()
}

fn audit_log(home: &Path) -> String {
    ok(&run(home, &["audit", "log"]))
}

#[test]
#[ignore = "needs docker-registry: apt-get install docker-registry"]
fn oci_push_uses_the_wasm_layout_and_pull_verifies_against_local_trust() {
    let oci = OciRegistry::start();
    let publ = publisher();
    let pub_home = publ.path();
    let base = oci.base();
    let dest = format!("{base}/{MODEL}:0.1.0");

    // Tags are semantic versions, and the repository is named for the artifact.
    let e = fails(&run(
        pub_home,
        &["push", MODEL, &format!("{base}/{MODEL}:production")],
    ));
    assert!(e.contains("not a semantic version"), "{e}");
    let e = fails(&run(
        pub_home,
        &["push", MODEL, &format!("{base}/tensorlet/other:0.1.0")],
    ));
    assert!(e.contains("not of tensorlet/iris-model"), "{e}");

    let out = ok(&run(pub_home, &["push", &format!("{MODEL}@0.1.0"), &dest]));
    let pushed: Vec<&str> = out.lines().filter(|l| l.starts_with("pushed")).collect();
    // The model, its pipeline and the pipeline's plugins, each in its repository.
    assert!(pushed.len() >= 4, "{out}");
    assert!(out.contains(&format!("{MODEL}:0.1.0")), "{out}");

    // Plugins follow the CNCF Wasm OCI artifact layout.
    let mut plugins = 0;
    for line in &pushed {
        let location = line.split_whitespace().nth(1).unwrap();
        let path = location.split_once("/fleet/").unwrap().1;
        let (repo_tail, tag) = path.rsplit_once(':').unwrap();
        let repo = format!("fleet/{repo_tail}");
        let (m, _) = oci_manifest(&oci, &repo, tag);
        assert_eq!(m["mediaType"], "application/vnd.oci.image.manifest.v1+json");
        assert!(
            m["annotations"]["dev.tensorlet.signature"].is_string(),
            "{m}"
        );
        if m["config"]["mediaType"] != "application/vnd.wasm.config.v0+json" {
            continue;
        }
        plugins += 1;
        let layers = m["layers"].as_array().unwrap();
        assert_eq!(layers.len(), 1, "{m}");
        assert_eq!(layers[0]["mediaType"], "application/wasm");
        let config: Value = serde_json::from_slice(&oci_blob(
            &oci,
            &repo,
            m["config"]["digest"].as_str().unwrap(),
        ))
        .unwrap();
        assert_eq!(config["architecture"], "wasm");
        assert_eq!(config["os"], "wasip2");
        assert_eq!(config["layerDigests"], json!([layers[0]["digest"]]));
        let exports = config["component"]["exports"].as_array().unwrap();
        assert!(
            exports
                .iter()
                .any(|e| e.as_str().unwrap().starts_with("tensorlet:ml/")),
            "{config}"
        );
        let wasm = oci_blob(&oci, &repo, layers[0]["digest"].as_str().unwrap());
        assert_eq!(&wasm[..8], b"\0asm\x0d\x00\x01\x00", "a component");
        // Its tensorlet manifest pins exactly these bytes.
        let tm: Value =
            serde_json::from_str(m["annotations"]["dev.tensorlet.manifest"].as_str().unwrap())
                .unwrap();
        assert_eq!(tm["blobs"]["component"], json!(digest(&wasm)));
    }
    assert!(plugins >= 2, "{out}");

    // The model is an image manifest whose first layer is its tensorlet
    // manifest: that layer's digest is the artifact's digest.
    let model_repo = format!("fleet/{MODEL}");
    let (m, model_oci_digest) = oci_manifest(&oci, &model_repo, "0.1.0");
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.tensorlet.config.v1+json"
    );
    assert_eq!(
        m["layers"][0]["mediaType"],
        "application/vnd.tensorlet.manifest.v1+json"
    );
    let model_digest = show_digest(pub_home, &format!("{MODEL}@0.1.0"));
    assert_eq!(m["layers"][0]["digest"], json!(model_digest));
    assert!(
        m["layers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["mediaType"] == "application/vnd.tensorlet.safetensors.v1"),
        "{m}"
    );

    // Pushing again uploads nothing.
    let again = ok(&run(pub_home, &["push", &format!("{MODEL}@0.1.0"), &dest]));
    assert!(!again.contains("pushed "), "{again}");
    assert!(again.contains(&model_oci_digest), "{again}");

    // A node that trusts the key pulls, verifies and caches everything, then
    // predicts from its cache.
    let node = trusting(&[(pub_home, "demo")]);
    let out = ok(&run(node.path(), &["pull", &dest]));
    assert!(out.contains(&model_digest), "{out}");
    ok(&run(node.path(), &["verify", &format!("{MODEL}@0.1.0")]));
    let csv = pub_home.join("iris.csv");
    let predicted = ok(&run(
        node.path(),
        &[
            "predict",
            &format!("{MODEL}@0.1.0"),
            "--input",
            s(&csv),
            "--json",
        ],
    ));
    let here = ok(&run(
        pub_home,
        &[
            "predict",
            &format!("{MODEL}@0.1.0"),
            "--input",
            s(&csv),
            "--json",
        ],
    ));
    assert_eq!(predicted, here, "the pulled model predicts the same");
    assert!(audit_log(node.path()).contains("pull"));

    // KServe's `storageUri` naming the artifact (STORAGE_URI): pulled,
    // verified and served under the InferenceService's name.
    let kserve = trusting(&[(pub_home, "demo")]);
    let server = serve_models(
        kserve.path(),
        &["--model-name", "iris"],
        &[("STORAGE_URI", dest.as_str())],
    );
    let (status, out) = infer_model(&server.addr, "iris");
    assert_eq!(status, 200, "{out}");
    drop(server);

    // A node that does not trust the key refuses it and caches nothing.
    let stranger = tempfile::tempdir().unwrap();
    let e = fails(&run(stranger.path(), &["pull", &dest]));
    assert!(e.contains("not in this trust policy"), "{e}");
    assert!(e.contains("tensorlet trust add"), "{e}");
    let listed = ok(&run(stranger.path(), &["list"]));
    assert!(!listed.contains(MODEL), "{listed}");
    assert!(audit_log(stranger.path()).contains("pull.refused"));

    // Someone with write access to the registry swaps the model's manifest
    // layer for an altered one: the signature no longer verifies.
    let layer0 = m["layers"][0]["digest"].as_str().unwrap();
    let mut tm: Value = serde_json::from_slice(&oci_blob(&oci, &model_repo, layer0)).unwrap();
    tm["config"]["tampered"] = json!(true);
    let altered = serde_json::to_vec(&tm).unwrap();
    let altered_digest = oci_put_blob(&oci, &model_repo, &altered);
    let mut forged = m.clone();
    forged["layers"][0]["digest"] = json!(altered_digest);
    forged["layers"][0]["size"] = json!(altered.len());
    let r = request(
        "PUT",
        oci.addr(),
        &format!("/v2/{model_repo}/manifests/0.1.0"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        &serde_json::to_vec(&forged).unwrap(),
    );
    assert_eq!(r.status, 201, "{}", r.text());
    let fresh = trusting(&[(pub_home, "demo")]);
    let e = fails(&run(fresh.path(), &["pull", &dest]));
    assert!(e.contains("signature does not verify"), "{e}");
    // ... and the publisher refuses to overwrite the version it holds.
    let e = fails(&run(pub_home, &["push", &format!("{MODEL}@0.1.0"), &dest]));
    assert!(e.contains("already"), "{e}");
}

#[test]
#[ignore = "needs docker-registry: apt-get install docker-registry"]
fn oci_over_tls_with_a_login_and_clear_errors_for_each_missing_piece() {
    let tls = Secured::new();
    let oci = OciRegistry::start_secured(&tls);
    let publ = publisher();
    let pub_home = publ.path();
    let host = format!("127.0.0.1:{}", oci.port);
    let dest = format!("oci://{host}/secure/{MODEL}:0.1.0");
    let ca = s(&tls.ca).to_string();
    // Loopback is plain HTTP unless told otherwise; this registry speaks TLS.
    let tls_env = [
        ("TENSORLET_OCI_PLAIN_HTTP", "none"),
        ("HOME", s(tls.dir.path())),
    ];
    let push = |env: &[(&str, &str)]| {
        let mut all = tls_env.to_vec();
        all.extend_from_slice(env);
        common::tensorlet_env(pub_home, &["push", &format!("{MODEL}@0.1.0"), &dest], &all)
    };

    // A certificate from an unknown CA: say so, and how to trust it.
    let e = fails(&push(&[]));
    assert!(
        e.contains("unknown issuer") && e.contains("TENSORLET_CA_FILE"),
        "{e}"
    );
    // Trusted (through the OCI-only variable), but no login: say how to log in.
    let e = fails(&push(&[("TENSORLET_OCI_CA_FILE", &ca)]));
    assert!(
        e.contains("refused access") && e.contains("docker login") && e.contains("no credentials"),
        "{e}"
    );
    // A wrong password is named as such.
    let e = fails(&push(&[
        ("TENSORLET_OCI_CA_FILE", &ca),
        ("TENSORLET_OCI_USERNAME", "ci"),
        ("TENSORLET_OCI_PASSWORD", "wrong"),
    ]));
    assert!(e.contains("refused access") && e.contains("(ci)"), "{e}");
    // Plain HTTP to a TLS registry, and TLS to a plain one, are named too.
    let e = fails(&common::tensorlet_env(
        pub_home,
        &["push", MODEL, &dest],
        &[("HOME", s(tls.dir.path()))],
    ));
    assert!(
        e.contains("it speaks TLS") && e.contains("TENSORLET_OCI_PLAIN_HTTP=none"),
        "{e}"
    );
    let plain = OciRegistry::start();
    let e = fails(&common::tensorlet_env(
        pub_home,
        &["push", MODEL, &format!("{}/{MODEL}:0.1.0", plain.base())],
        &tls_env,
    ));
    assert!(
        e.contains("does not seem to speak TLS") && e.contains("TENSORLET_OCI_PLAIN_HTTP"),
        "{e}"
    );
    drop(plain);

    // With the CA and a login from the environment, the push lands.
    let out = ok(&push(&[
        ("TENSORLET_OCI_CA_FILE", &ca),
        ("TENSORLET_OCI_USERNAME", "ci"),
        ("TENSORLET_OCI_PASSWORD", "s3cret"),
    ]));
    assert!(out.contains(&format!("{MODEL}:0.1.0")), "{out}");

    // A device pulls with `docker login`'s credentials and verifies as ever;
    // it trusts the CA through the variable every https:// URL honours.
    let device = trusting(&[(pub_home, "demo")]);
    let docker = tls.docker_config(&host, "ci", "s3cret");
    let pull_env = [
        ("TENSORLET_OCI_PLAIN_HTTP", "none"),
        ("TENSORLET_CA_FILE", ca.as_str()),
        ("DOCKER_CONFIG", s(&docker)),
    ];
    let out = ok(&common::tensorlet_env(
        device.path(),
        &["pull", &dest],
        &pull_env,
    ));
    assert!(out.contains(&format!("{MODEL}@0.1.0")), "{out}");
    assert_eq!(
        show_digest(device.path(), &format!("{MODEL}@0.1.0")),
        show_digest(pub_home, &format!("{MODEL}@0.1.0"))
    );
    // A device that does not trust the publisher still refuses, over TLS too.
    let stranger = tempfile::tempdir().unwrap();
    let e = fails(&common::tensorlet_env(
        stranger.path(),
        &["pull", &dest],
        &pull_env,
    ));
    assert!(e.contains("not in this trust policy"), "{e}");
}

#[test]
fn sync_caches_an_alias_so_a_device_serves_and_predicts_offline() {
    let publ = publisher();
    let pub_home = publ.path();
    ok(&run(
        pub_home,
        &["alias", "set", MODEL, "production", "0.1.0"],
    ));
    let reference = format!("{MODEL}@production");

    // From a tensorlet registry: sync, stop the registry, serve.
    let device = trusting(&[(pub_home, "demo")]);
    {
        let central = RegistryServer::start(pub_home, &[]);
        let out = ok(&run(
            device.path(),
            &["sync", "--from", &central.url, &reference],
        ));
        assert!(out.contains(&format!("{MODEL}@0.1.0")), "{out}");
    }
    let server = serve(device.path(), &[]);
    let (status, out) = infer(&server.addr);
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["model_version"], "0.1.0");
    assert_eq!(out["outputs"][0]["data"], json!([0, 2]));
    drop(server);

    // Naming an alias the central registry lacks is an error that says so.
    let central = RegistryServer::start(pub_home, &[]);
    let e = fails(&run(
        device.path(),
        &["sync", "--from", &central.url, &format!("{MODEL}@canary")],
    ));
    assert!(e.contains("canary"), "{e}");
}

#[test]
#[ignore = "needs docker-registry: apt-get install docker-registry"]
fn sync_from_an_oci_registry_caches_an_alias_so_a_device_predicts_offline() {
    let publ = publisher();
    let pub_home = publ.path();
    ok(&run(
        pub_home,
        &["alias", "set", MODEL, "production", "0.1.0"],
    ));
    let reference = format!("{MODEL}@production");
    // Push with the alias, sync, stop the registry, predict.
    let oci = OciRegistry::start();
    let base = oci.base();
    ok(&run(
        pub_home,
        &[
            "push",
            &format!("{MODEL}@0.1.0"),
            &format!("{base}/{MODEL}:0.1.0"),
            "--alias",
            "production",
        ],
    ));
    let edge = trusting(&[(pub_home, "demo")]);
    let out = ok(&run(edge.path(), &["sync", "--from", &base, &reference]));
    assert!(out.contains(&format!("{MODEL}@0.1.0")), "{out}");
    drop(oci);
    let csv = pub_home.join("iris.csv");
    let offline = ok(&run(
        edge.path(),
        &["predict", &reference, "--input", s(&csv), "--json"],
    ));
    let here = ok(&run(
        pub_home,
        &["predict", &reference, "--input", s(&csv), "--json"],
    ));
    assert_eq!(offline, here);
    let e = fails(&run(edge.path(), &["sync", "--from", &base, MODEL]));
    assert!(e.contains("read by tag"), "{e}");
}

/// How the central registry moves `production`.
enum Central {
    Http(RegistryServer),
    Oci(OciRegistry),
}

impl Central {
    fn follow(&self) -> String {
        match self {
            Central::Http(h) => h.url.clone(),
            Central::Oci(o) => o.base(),
        }
    }

    fn promote(&self, home: &Path, version: &str) {
        match self {
            Central::Http(_) => {
                let model = format!("{MODEL}@{version}");
                ok(&run(home, &["promote", &model, "--to", "production"]));
            }
            Central::Oci(o) => {
                // Push the version, then move the alias tag with `promote`.
                let tagged = format!("{}/{MODEL}:{version}", o.base());
                ok(&run(
                    home,
                    &["push", &format!("{MODEL}@{version}"), &tagged],
                ));
                let out = ok(&run(home, &["promote", &tagged, "--to", "production"]));
                assert!(out.contains(&format!("-> {version}")), "{out}");
            }
        }
    }
}

fn train(home: &Path, key: &str, epochs: &str) {
    let data = home.join("iris.csv");
    ok(&run(
        home,
        &[
            "train",
            "tensorlet/iris",
            "--data",
            s(&data),
            "--key",
            key,
            "--epochs",
            epochs,
        ],
    ));
}

/// Two replicas follow one central registry: a promotion reaches both with no
/// failed request while a client hammers both; a promotion to a model signed
/// by a key one replica does not trust is refused and reported by that
/// replica, which keeps serving the version it has.
fn fleet_converges(oci: bool) {
    let publ = publisher();
    let home = publ.path();
    ok(&run(home, &["keygen", "mallory"]));
    let export = ok(&run(home, &["key", "export", "mallory"]));
    let mallory = export.lines().find(|l| l.starts_with("ed25519:")).unwrap();
    ok(&run(
        home,
        &["trust", "add", mallory, "--namespace", "tensorlet"],
    ));
    let central = if oci {
        Central::Oci(OciRegistry::start())
    } else {
        Central::Http(RegistryServer::start(home, &[]))
    };
    central.promote(home, "0.1.0");

    // Replica a trusts demo and mallory; replica b trusts only demo.
    let a_home = trusting(&[(home, "demo"), (home, "mallory")]);
    let b_home = trusting(&[(home, "demo")]);
    let follow = central.follow();
    let flags = ["--follow", follow.as_str(), "--poll", "0.2"];
    let a = serve(a_home.path(), &flags);
    let b = serve(b_home.path(), &flags);
    for r in [&a, &b] {
        let (status, out) = infer(&r.addr);
        assert_eq!(status, 200, "{out}");
        assert_eq!(out["model_version"], "0.1.0");
    }

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(AtomicUsize::new(0));
    let served = Arc::new(AtomicUsize::new(0));
    let hammer: Vec<_> = [a.addr.clone(), b.addr.clone()]
        .into_iter()
        .map(|addr| {
            let (stop, failures, served) = (stop.clone(), failures.clone(), served.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let (status, out) = infer(&addr);
                    if status != 200 {
                        eprintln!("failed request to {addr}: {status} {out}");
                        failures.fetch_add(1, Ordering::Relaxed);
                    }
                    served.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();

    train(home, "demo", "20");
    central.promote(home, "0.1.1");
    for r in [&a, &b] {
        wait_for("0.1.1 on both replicas", || {
            infer(&r.addr).1["model_version"] == "0.1.1"
        });
    }
    stop.store(true, Ordering::Relaxed);
    for h in hammer {
        h.join().unwrap();
    }
    assert!(served.load(Ordering::Relaxed) > 10);
    assert_eq!(
        failures.load(Ordering::Relaxed),
        0,
        "requests failed during the promotion"
    );

    // A model signed by mallory: a takes it, b refuses and reports it.
    train(home, "mallory", "5");
    central.promote(home, "0.1.2");
    wait_for("0.1.2 on replica a", || {
        infer(&a.addr).1["model_version"] == "0.1.2"
    });
    wait_for("replica b's refusal", || {
        ready(&b.addr)["deploy_error"].is_string()
    });
    let r = ready(&b.addr);
    assert_eq!(r["version"], "0.1.1", "b keeps serving what it had: {r}");
    let error = r["deploy_error"].as_str().unwrap();
    assert!(error.contains("not in this trust policy"), "{error}");
    let (status, out) = infer(&b.addr);
    assert_eq!((status, &out["model_version"]), (200, &json!("0.1.1")));
    assert!(
        b.stderr.lock().unwrap().contains("refuses"),
        "b logs the refusal"
    );
    let log = audit_log(b_home.path());
    assert!(log.contains("follow.refused"), "{log}");
    assert!(log.contains("pull.refused"), "{log}");
    assert!(!audit_log(a_home.path()).contains("follow.refused"));
    ok(&run(b_home.path(), &["audit", "verify"]));

    // Once b's operator trusts mallory, b takes the target it refused
    // without waiting for the alias to move again.
    ok(&run(
        b_home.path(),
        &["trust", "add", mallory, "--namespace", "tensorlet"],
    ));
    wait_for("0.1.2 on replica b after its trust policy changed", || {
        infer(&b.addr).1["model_version"] == "0.1.2"
    });

    if let Central::Oci(o) = &central {
        let model = format!("{}/{MODEL}", o.base());
        let e = fails(&run(home, &["rollback", &model, "--alias", "production"]));
        assert!(
            e.contains("keeps no history") && e.contains(":<version>"),
            "{e}"
        );
    }

    // The replicas keep what they synced: a restart serves with no registry.
    drop(a);
    drop(central);
    let offline = serve(a_home.path(), &[]);
    assert_eq!(infer(&offline.addr).1["model_version"], "0.1.2");
}

#[test]
fn two_followers_of_a_tensorlet_registry_converge_and_refuse_untrusted_models() {
    fleet_converges(false);
}

#[test]
#[ignore = "needs docker-registry: apt-get install docker-registry"]
fn two_followers_of_an_oci_registry_converge_and_refuse_untrusted_models() {
    fleet_converges(true);
}

/// Runs `tensorlet` with `env`, which must exit within 60 s (a server that
/// should refuse to start but serves instead fails the test, not hangs it).
fn run_bounded(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = common::command(home, args);
    let mut child = cmd
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            kill(&mut child);
            panic!("tensorlet {args:?} did not exit within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// A home holding `from`'s key `key` (to sign with), trusting it for
/// namespace `tensorlet`.
fn with_key(from: &Path, key: &str) -> tempfile::TempDir {
    let home = trusting(&[(from, key)]);
    std::fs::create_dir_all(home.path().join("keys")).unwrap();
    for f in [format!("{key}.key"), format!("{key}.pub")] {
        std::fs::copy(
            from.join("keys").join(&f),
            home.path().join("keys").join(&f),
        )
        .unwrap();
    }
    home
}

/// `tensorlet registry serve --tls-cert/--tls-key` with a certificate from a
/// private CA: publish, pull, verify, sync, audit checkpoint and follow work
/// over https with `TENSORLET_CA_FILE`; without the CA, with another CA, with
/// a certificate for another name and with an expired one, each command
/// fails naming the cause, and never falls back to its cache; plain HTTP
/// still works, and mixing up the two is named.
#[test]
fn a_tensorlet_registry_over_https_with_a_private_ca() {
    let publ = publisher();
    let home = publ.path();
    ok(&run(home, &["alias", "set", MODEL, "production", "0.1.0"]));
    let pki = tempfile::tempdir().unwrap();
    let ca = Ca::new("tensorlet test CA");
    let ca_file = ca.write(pki.path(), "ca");
    let (cert, key) = ca
        .issue(&["localhost", "127.0.0.1"])
        .write(pki.path(), "registry");
    let central = RegistryServer::start_tls(home, &cert, &key);
    let url = central.url.clone();
    let with_ca = [
        ("TENSORLET_DEVICE", "cpu"),
        ("TENSORLET_CA_FILE", s(&ca_file)),
    ];
    let device = with_key(home, "demo");
    let d = device.path();
    let tls = |args: &[&str]| common::tensorlet_env(d, args, &with_ca);

    // Publish: the server checks the signature against its own policy.
    let plugin = common::plugin_path("standardize");
    let out = ok(&tls(&[
        "publish",
        s(&plugin),
        "--name",
        "tensorlet/scale",
        "--version",
        "1.0.0",
        "--kind",
        "preprocessor",
        "--key",
        "demo",
        "--registry",
        &url,
    ]));
    assert!(out.contains("published tensorlet/scale@1.0.0"), "{out}");
    assert!(ok(&run(home, &["list"])).contains("tensorlet/scale"));
    let listed = ok(&tls(&["list", "--registry", &url]));
    assert!(
        listed.contains("tensorlet/scale") && listed.contains(MODEL),
        "{listed}"
    );

    // Pull and verify, by IP address and by host name.
    let out = ok(&tls(&[
        "pull",
        &format!("{MODEL}@0.1.0"),
        "--registry",
        &url,
    ]));
    assert!(
        out.contains("verified against the local trust policy"),
        "{out}"
    );
    let by_name = central.url_as("localhost");
    ok(&tls(&[
        "verify",
        "tensorlet/scale@1.0.0",
        "--registry",
        &by_name,
    ]));
    assert!(ok(&run(d, &["list"])).contains("tensorlet/scale"));

    // Sync an alias, and keep the server's audit checkpoint.
    let reference = format!("{MODEL}@production");
    let out = ok(&tls(&["sync", "--from", &url, &reference]));
    assert!(out.contains(&format!("{MODEL}@0.1.0")), "{out}");
    let out = ok(&tls(&["audit", "checkpoint", "--registry", &url]));
    assert!(out.contains("\"key_id\""), "{out}");

    // Follow: a replica takes a promotion made on the https registry.
    let replica = trusting(&[(home, "demo")]);
    let follower = serve_env(
        replica.path(),
        &["--follow", &url, "--poll", "0.2"],
        &with_ca[1..],
    );
    assert_eq!(infer(&follower.addr).1["model_version"], "0.1.0");
    train(home, "demo", "5");
    ok(&run(
        home,
        &["promote", &format!("{MODEL}@0.1.1"), "--to", "production"],
    ));
    wait_for("0.1.1 on the follower over https", || {
        infer(&follower.addr).1["model_version"] == "0.1.1"
    });
    drop(follower);

    // Without the CA the issuer is unknown: the message says so and what to
    // do, and predict does not fall back to the copy it has cached.
    let cpu = [("TENSORLET_DEVICE", "cpu")];
    let pinned = format!("{MODEL}@0.1.0");
    let e = fails(&common::tensorlet_env(
        d,
        &["pull", &pinned, "--registry", &url],
        &cpu,
    ));
    assert!(
        e.contains("unknown issuer") && e.contains("TENSORLET_CA_FILE"),
        "{e}"
    );
    let csv = home.join("iris.csv");
    let predict = ["predict", &pinned, "--input", s(&csv), "--registry", &url];
    let e = fails(&common::tensorlet_env(d, &predict, &cpu));
    assert!(e.contains("unknown issuer"), "{e}");
    assert!(
        !e.contains("local cache"),
        "a TLS failure is not an outage: {e}"
    );
    // ... while with no server at all the cache answers, saying why.
    let dead = format!(
        "https://127.0.0.1:{}",
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    );
    let offline = common::tensorlet_env(
        d,
        &["predict", &pinned, "--input", s(&csv), "--registry", &dead],
        &cpu,
    );
    assert_eq!(ok(&offline).lines().count(), 150);
    let warning = String::from_utf8_lossy(&offline.stderr);
    assert!(
        warning.contains("unreachable") && warning.contains("connection refused"),
        "{warning}"
    );

    // Another CA: named, with the file that was trusted instead.
    let other = Ca::new("another CA").write(pki.path(), "other");
    let e = fails(&common::tensorlet_env(
        d,
        &["pull", &pinned, "--registry", &url],
        &[("TENSORLET_CA_FILE", s(&other))],
    ));
    assert!(e.contains("unknown issuer") && e.contains(s(&other)), "{e}");
    // A follower that meets a TLS error at start stops with it.
    let out = run_bounded(
        replica.path(),
        &[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--admin-addr",
            "off",
            "--grpc-addr",
            "off",
            "--model",
            &reference,
            "--follow",
            &url,
        ],
        &[
            ("TENSORLET_CA_FILE", s(&other)),
            ("TENSORLET_DEVICE", "cpu"),
        ],
    );
    let e = fails(&out);
    assert!(
        e.contains("cannot follow") && e.contains("unknown issuer"),
        "{e}"
    );

    // A certificate for another name, and an expired one.
    let (named_cert, named_key) = ca.issue(&["registry.example"]).write(pki.path(), "named");
    let misnamed = RegistryServer::start_tls(home, &named_cert, &named_key);
    let e = fails(&tls(&["pull", &pinned, "--registry", &misnamed.url]));
    assert!(
        e.contains("another host name") && e.contains("registry.example"),
        "{e}"
    );
    let (old_cert, old_key) = ca
        .issue_expired(&["127.0.0.1"])
        .write(pki.path(), "expired");
    let expired = RegistryServer::start_tls(home, &old_cert, &old_key);
    let e = fails(&tls(&["sync", "--from", &expired.url, &reference]));
    assert!(e.contains("expired on 2001-01-01"), "{e}");

    // Plain HTTP still works; http:// to the https server and https:// to a
    // plain one are named.
    let plain = RegistryServer::start(home, &[]);
    let out = ok(&tls(&["sync", "--from", &plain.url, &reference]));
    assert!(out.contains(&format!("{MODEL}@0.1.1")), "{out}");
    let e = fails(&tls(&[
        "pull",
        &pinned,
        "--registry",
        &central.url.replacen("https://", "http://", 1),
    ]));
    assert!(e.contains("use an https:// URL"), "{e}");
    let e = fails(&tls(&[
        "pull",
        &pinned,
        "--registry",
        &plain.url.replacen("http://", "https://", 1),
    ]));
    assert!(e.contains("does not speak TLS"), "{e}");

    // The server checks its key and certificate before it serves.
    let (_, stray_key) = ca.issue(&["127.0.0.1"]).write(pki.path(), "stray");
    let e = fails(&run_bounded(
        home,
        &[
            "registry",
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--tls-cert",
            s(&cert),
            "--tls-key",
            s(&stray_key),
        ],
        &[],
    ));
    assert!(e.contains("does not belong to the certificate"), "{e}");
}

#[test]
fn a_model_travels_as_an_oci_image_layout_and_is_verified_before_serving() {
    let publ = publisher();
    let pub_home = publ.path();
    let files = tempfile::tempdir().unwrap();
    let dir = files.path().join("models");
    let layout = format!("oci-layout:{}", dir.display());
    let out = ok(&run(
        pub_home,
        &[
            "push",
            &format!("{MODEL}@0.1.0"),
            &format!("{layout}/{MODEL}:0.1.0"),
            "--alias",
            "production",
        ],
    ));
    assert!(out.contains(&format!("{layout}/{MODEL}:0.1.0")), "{out}");
    // An OCI image layout: the marker, an index naming every tag (the model's
    // and those of the plugins it pins), the manifests and blobs by digest.
    assert!(dir.join("oci-layout").is_file());
    let index: Value =
        serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let names: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"]
                .as_str()
                .unwrap()
        })
        .collect();
    for want in [
        "tensorlet/iris-model:0.1.0",
        "tensorlet/iris-model:production",
        "tensorlet/standardize:0.1.0",
    ] {
        assert!(names.contains(&want), "{want} not in {names:?}");
    }

    // A node that trusts the publisher verifies and serves it, under the
    // name KServe gives (the InferenceService's).
    let node = trusting(&[(pub_home, "demo")]);
    let model_dir = dir.to_str().unwrap();
    let server = serve_models(
        node.path(),
        &["--model-dir", model_dir, "--model-name", "iris"],
        &[],
    );
    let (status, out) = infer_model(&server.addr, "iris");
    assert_eq!(status, 200, "{out}");
    assert_eq!(out["outputs"][0]["data"], json!([0, 2]));
    assert!(
        server
            .stderr
            .lock()
            .unwrap()
            .contains("verified tensorlet/iris-model@0.1.0"),
        "{}",
        server.stderr.lock().unwrap()
    );
    drop(server);
    // `pull` reads a layout as it reads a registry.
    let other = trusting(&[(pub_home, "demo")]);
    let out = ok(&run(
        other.path(),
        &["pull", &format!("{layout}/{MODEL}:production")],
    ));
    assert!(out.contains(&format!("{MODEL}@0.1.0")), "{out}");

    // A node whose trust policy lacks the publisher's key refuses it: the
    // server stops with the reason (a pod that never turns ready), audited.
    let serve_args = SERVE;
    let stranger = tempfile::tempdir().unwrap();
    let e = fails(&run(
        stranger.path(),
        &[&serve_args[..], &["--model-dir", model_dir]].concat(),
    ));
    assert!(e.contains("not in this trust policy"), "{e}");
    assert!(audit_log(stranger.path()).contains("pull.refused"));

    // Altered weights: refused, whoever is trusted.
    let tampered = files.path().join("tampered");
    common::copy_tree(&dir, &tampered);
    let blobs = tampered.join("blobs/sha256");
    let largest = std::fs::read_dir(&blobs)
        .unwrap()
        .map(|e| e.unwrap().path())
        .max_by_key(|p| p.metadata().unwrap().len())
        .unwrap();
    let mut bytes = std::fs::read(&largest).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(&largest, bytes).unwrap();
    let node = trusting(&[(pub_home, "demo")]);
    let e = fails(&run(
        node.path(),
        &[
            &serve_args[..],
            &["--model-dir", tampered.to_str().unwrap()],
        ]
        .concat(),
    ));
    assert!(e.contains("do not hash to the digest"), "{e}");

    // KServe's `storageUri` itself, when it is a directory; a bucket is the
    // storage initializer's to download.
    let node = trusting(&[(pub_home, "demo")]);
    let server = serve_models(
        node.path(),
        &[],
        &[("STORAGE_URI", &format!("file://{model_dir}"))],
    );
    assert_eq!(infer(&server.addr).0, 200);
    drop(server);
    let e = fails(&common::tensorlet_env(
        node.path(),
        &serve_args,
        &[("STORAGE_URI", "s3://models/iris")],
    ));
    assert!(e.contains("--model-dir /mnt/models"), "{e}");

    // A directory that holds no layout says what to do.
    let empty = tempfile::tempdir().unwrap();
    let e = fails(&run(
        node.path(),
        &[
            &serve_args[..],
            &["--model-dir", empty.path().to_str().unwrap()],
        ]
        .concat(),
    ));
    assert!(
        e.contains("is not an OCI image layout") && e.contains("tensorlet push"),
        "{e}"
    );
}
