//! Artifacts through OCI registries and fleets that follow a central
//! registry, with the real binary and real servers: the CNCF distribution
//! registry (Debian's `docker-registry`, started on loopback with a temporary
//! storage directory) and `tensorlet registry serve`.
//!
//! The OCI tests need `/usr/bin/docker-registry`, so they are ignored by
//! default (`cargo test … -- --ignored` runs them; `.ci/run` installs it) and
//! fail, saying what to install, when run without it. See `docs/testing.md`.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tensorlet_runtime::registry::digest;

use common::{RegistryServer, fails, ok, s};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const MODEL: &str = "tensorlet/iris-model";

fn run(home: &Path, args: &[&str]) -> Output {
    common::tensorlet_env(home, args, &[("TENSORLET_DEVICE", "cpu")])
}

/// A home with the demo's signed iris and digits models (key `demo`,
/// namespace `tensorlet`) and `iris.csv`.
fn publisher() -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    ok(&run(tmp.path(), &["demo", "--out", s(tmp.path())]));
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

/// A certificate for 127.0.0.1 from a private CA (made with `openssl`) and
/// an htpasswd file with the login `ci` / `s3cret`.
struct Secured {
    dir: tempfile::TempDir,
    /// The CA that signed `cert`.
    ca: std::path::PathBuf,
    cert: std::path::PathBuf,
    key: std::path::PathBuf,
    htpasswd: std::path::PathBuf,
}

impl Secured {
    fn new() -> Secured {
        let dir = tempfile::tempdir().unwrap();
        let path = |f: &str| dir.path().join(f);
        let (cert, key) = (path("cert.pem"), path("key.pem"));
        let openssl = |args: &[&str]| {
            let out = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("run openssl (apt-get install openssl; .ci/run does)");
            assert!(
                out.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        };
        // A private CA, and the registry's certificate signed by it.
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut ca = vec![
            "req",
            "-x509",
            "-days",
            "2",
            "-subj",
            "/CN=tensorlet test CA",
        ];
        ca.extend(ec);
        ca.extend(["-keyout", "ca.key", "-out", "ca.pem"]);
        openssl(&ca);
        let mut csr = vec!["req", "-new", "-subj", "/CN=127.0.0.1"];
        csr.extend(ec);
        csr.extend(["-keyout", "key.pem", "-out", "cert.csr"]);
        openssl(&csr);
        std::fs::write(
            path("ext.cnf"),
            "basicConstraints=critical,CA:FALSE\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n",
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "cert.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
            "-out",
            "cert.pem",
        ]);
        // bcrypt (cost 5) of `s3cret`, as `htpasswd -B` writes it.
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(
            &htpasswd,
            "ci:$2b$05$oCLZWnuItMRvNvaXX9k/rugHVBv5wA.i.yG8PridZB10YoXYKl4IO\n",
        )
        .unwrap();
        Secured {
            ca: dir.path().join("ca.pem"),
            dir,
            cert,
            key,
            htpasswd,
        }
    }

    /// A Docker client configuration holding `user:password` for `host`.
    fn docker_config(&self, host: &str, user: &str, password: &str) -> std::path::PathBuf {
        let dir = self.dir.path().join(format!("docker-{user}"));
        std::fs::create_dir_all(&dir).unwrap();
        let auth = base64(format!("{user}:{password}").as_bytes());
        std::fs::write(
            dir.join("config.json"),
            json!({"auths": {host: {"auth": auth}}}).to_string(),
        )
        .unwrap();
        dir
    }
}

fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The CNCF distribution registry on a free loopback port.
struct OciRegistry {
    child: Child,
    port: u16,
    _storage: tempfile::TempDir,
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        kill(&mut self.child);
    }
}

impl OciRegistry {
    /// Starts one; a test that runs where it is not installed fails with
    /// what to install.
    fn start() -> OciRegistry {
        Self::start_with(None)
    }

    /// Starts one that serves HTTPS with `tls`'s certificate and key and asks
    /// for `tls`'s htpasswd logins.
    fn start_secured(tls: &Secured) -> OciRegistry {
        Self::start_with(Some(tls))
    }

    fn start_with(secured: Option<&Secured>) -> OciRegistry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: apt-get install docker-registry (see docs/testing.md)"
        );
        let storage = tempfile::tempdir().unwrap();
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port();
            let config = storage.path().join("config.yml");
            let mut yaml = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n\
                 storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
                 http:\n  addr: 127.0.0.1:{port}\n",
                storage.path().join("data").display()
            );
            if let Some(t) = secured {
                yaml.push_str(&format!(
                    "  tls:\n    certificate: {}\n    key: {}\n\
                     auth:\n  htpasswd:\n    realm: tensorlet-test\n    path: {}\n",
                    t.cert.display(),
                    t.key.display(),
                    t.htpasswd.display()
                ));
            }
            std::fs::write(&config, yaml).unwrap();
            let mut child = Command::new(REGISTRY_BIN)
                .arg("serve")
                .arg(&config)
                .stdout(Stdio::null())
                // It logs every 404 as an error; keep its log for failures.
                .stderr(std::fs::File::create(storage.path().join("registry.log")).unwrap())
                .spawn()
                .expect("start docker-registry");
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(10) {
                if let Ok(Some(_)) = child.try_wait() {
                    break; // the port was taken meanwhile: try another
                }
                let up = match secured {
                    // A TLS listener: accepting connections is enough.
                    Some(_) => std::net::TcpStream::connect(("127.0.0.1", port)).is_ok(),
                    None => http("GET", port, "/v2/", &[], &[]).is_some_and(|(st, _, _)| st == 200),
                };
                if up {
                    return OciRegistry {
                        child,
                        port,
                        _storage: storage,
                    };
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            kill(&mut child);
        }
        panic!(
            "docker-registry did not start: {}",
            std::fs::read_to_string(storage.path().join("registry.log")).unwrap_or_default()
        );
    }

    fn base(&self) -> String {
        format!("oci://127.0.0.1:{}/fleet", self.port)
    }
}

/// Status, headers (names in lowercase) and body of an HTTP answer.
type Reply = (u16, Vec<(String, String)>, Vec<u8>);

/// A minimal HTTP/1.1 exchange.
fn http(
    method: &str,
    port: u16,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<Reply> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\
         Content-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).ok()?;
    s.write_all(body).ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut lines = head.lines();
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    if headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"))
    {
        body = dechunk(&body);
    }
    Some((status, headers, body))
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(nl) = b.windows(2).position(|w| w == b"\r\n") else {
            return out;
        };
        let n = usize::from_str_radix(String::from_utf8_lossy(&b[..nl]).trim(), 16).unwrap_or(0);
        if n == 0 {
            return out;
        }
        out.extend_from_slice(&b[nl + 2..nl + 2 + n]);
        b = &b[nl + 2 + n + 2..];
    }
}

/// GETs an OCI manifest (as the Wasm tools do) and returns it with its digest.
fn oci_manifest(port: u16, repo: &str, reference: &str) -> (Value, String) {
    let (status, headers, body) = http(
        "GET",
        port,
        &format!("/v2/{repo}/manifests/{reference}"),
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
        &[],
    )
    .unwrap();
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    let d = headers
        .iter()
        .find(|(k, _)| k == "docker-content-digest")
        .map(|(_, v)| v.clone())
        .unwrap();
    assert_eq!(d, digest(&body));
    (serde_json::from_slice(&body).unwrap(), d)
}

fn oci_blob(port: u16, repo: &str, d: &str) -> Vec<u8> {
    let (status, _, body) = http("GET", port, &format!("/v2/{repo}/blobs/{d}"), &[], &[]).unwrap();
    assert_eq!(status, 200);
    assert_eq!(digest(&body), d);
    body
}

fn oci_put_blob(port: u16, repo: &str, bytes: &[u8]) -> String {
    let (status, headers, _) = http(
        "POST",
        port,
        &format!("/v2/{repo}/blobs/uploads/"),
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(status, 202);
    let location = &headers.iter().find(|(k, _)| k == "location").unwrap().1;
    let path = location
        .split_once("://")
        .map_or(location.as_str(), |(_, rest)| {
            &rest[rest.find('/').unwrap()..]
        });
    let d = digest(bytes);
    let sep = if path.contains('?') { '&' } else { '?' };
    let (status, _, body) = http(
        "PUT",
        port,
        &format!("{path}{sep}digest={d}"),
        &[("Content-Type", "application/octet-stream")],
        bytes,
    )
    .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
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
    let mut child = Command::new(env!("CARGO_BIN_EXE_tensorlet"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--admin-addr",
            "off",
            "--model",
            &format!("{MODEL}@production"),
        ])
        .args(extra)
        .env("TENSORLET_HOME", home)
        .env("TENSORLET_DEVICE", "cpu")
        .env_remove("TENSORLET_REGISTRY")
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
        if let Some(rest) = line.strip_prefix("serving ") {
            break rest
                .split("http://")
                .nth(1)
                .and_then(|r| r.split('/').next())
                .unwrap()
                .to_string();
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
    let port = addr.rsplit(':').next().unwrap().parse().unwrap();
    let body = json!({ "inputs": [{ "name": "input", "shape": [2, 4], "datatype": "FP64",
                       "data": [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]] }] });
    let (status, _, body) = http(
        "POST",
        port,
        "/v2/models/iris-model/infer",
        &[("Content-Type", "application/json")],
        &serde_json::to_vec(&body).unwrap(),
    )
    .unwrap_or((0, vec![], vec![]));
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

fn ready(addr: &str) -> Value {
    let port = addr.rsplit(':').next().unwrap().parse().unwrap();
    let (_, _, body) = http("GET", port, "/v2/models/iris-model/ready", &[], &[]).unwrap();
    serde_json::from_slice(&body).unwrap_or(Value::Null)
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
        let (m, _) = oci_manifest(oci.port, &repo, tag);
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
            oci.port,
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
        let wasm = oci_blob(oci.port, &repo, layers[0]["digest"].as_str().unwrap());
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
    let (m, model_oci_digest) = oci_manifest(oci.port, &model_repo, "0.1.0");
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
    let mut tm: Value = serde_json::from_slice(&oci_blob(oci.port, &model_repo, layer0)).unwrap();
    tm["config"]["tampered"] = json!(true);
    let altered = serde_json::to_vec(&tm).unwrap();
    let altered_digest = oci_put_blob(oci.port, &model_repo, &altered);
    let mut forged = m.clone();
    forged["layers"][0]["digest"] = json!(altered_digest);
    forged["layers"][0]["size"] = json!(altered.len());
    let (status, _, body) = http(
        "PUT",
        oci.port,
        &format!("/v2/{model_repo}/manifests/0.1.0"),
        &[("Content-Type", "application/vnd.oci.image.manifest.v1+json")],
        &serde_json::to_vec(&forged).unwrap(),
    )
    .unwrap();
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
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

    // A certificate from an unknown CA: say how to trust it.
    let e = fails(&push(&[]));
    assert!(e.contains("TENSORLET_OCI_CA_FILE"), "{e}");
    // Trusted, but no login: say how to log in.
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

    // A device pulls with `docker login`'s credentials and verifies as ever.
    let device = trusting(&[(pub_home, "demo")]);
    let docker = tls.docker_config(&host, "ci", "s3cret");
    let pull_env = [
        ("TENSORLET_OCI_PLAIN_HTTP", "none"),
        ("TENSORLET_OCI_CA_FILE", ca.as_str()),
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
