//! Helpers shared by the integration tests: `tensorlet` as a process, HTTP
//! ([`http`]), a private CA for TLS ([`tls`]), the tests' Python ([`venv`]),
//! and servers to test against (`tensorlet registry serve` and `tensorlet
//! serve` here, the CNCF distribution registry in [`oci`]).
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod http;
pub mod oci;
pub mod tls;
pub mod venv;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use std::sync::OnceLock;

use tensorlet_runtime::gpu::{Device, Tensor};
use tensorlet_runtime::pipeline::PluginSource;
use tensorlet_runtime::registry::{Registry, VerifiedComponent};
use tensorlet_runtime::{Limits, Plugin, Runtime, RuntimeConfig};

/// Where build.rs put the plugin components.
pub fn plugin_path(stem: &str) -> PathBuf {
    Path::new(env!("TENSORLET_PLUGIN_DIR")).join(format!("{stem}.wasm"))
}

pub fn plugin_bytes(stem: &str) -> Vec<u8> {
    std::fs::read(plugin_path(stem)).expect("plugin built by build.rs")
}

/// A runtime with tight limits so misbehaving plugins are stopped quickly.
pub fn tight_runtime() -> Runtime {
    Runtime::new(RuntimeConfig {
        limits: Limits {
            deadline: Duration::from_millis(500),
            max_memory_bytes: 64 << 20,
            max_host_tensor_bytes: 64 << 20,
            max_instances: 16,
            ..Limits::default()
        },
        ..RuntimeConfig::default()
    })
    .unwrap()
}

/// The registry these tests load local components through: its
/// `allow_unsigned` is the development path the runtime accepts for bytes
/// that are not signed artifacts (and it audits each one).
pub fn dev_registry() -> &'static Registry {
    static REGISTRY: OnceLock<(tempfile::TempDir, Registry)> = OnceLock::new();
    &REGISTRY
        .get_or_init(|| {
            let home = tempfile::tempdir().unwrap();
            let reg = Registry::open(home.path()).unwrap();
            (home, reg)
        })
        .1
}

/// Local component bytes, let through unsigned (test builds only).
pub fn unsigned(name: &str, bytes: Vec<u8>) -> VerifiedComponent {
    dev_registry().allow_unsigned(name, bytes).unwrap()
}

/// Loads a local test component by name through the unsigned path.
pub fn load_bytes(rt: &Runtime, name: &str, bytes: Vec<u8>) -> tensorlet_runtime::Result<Plugin> {
    rt.load(&unsigned(name, bytes))
}

/// Wraps a test resolver of local stages into one that yields components.
pub fn unsigned_resolver(
    f: impl Fn(&PluginSource) -> tensorlet_runtime::Result<(String, Vec<u8>)>,
) -> impl Fn(&PluginSource) -> tensorlet_runtime::Result<VerifiedComponent> {
    move |s| {
        let (name, bytes) = f(s)?;
        Ok(unsigned(&name, bytes))
    }
}

/// For `Model::load` of a test model directory: every component unsigned.
pub fn unsigned_component(
    s: &tensorlet_runtime::model::StageMeta,
    bytes: Vec<u8>,
) -> tensorlet_runtime::Result<VerifiedComponent> {
    Ok(unsigned(&s.name, bytes))
}

pub fn load(rt: &Runtime, stem: &str) -> Plugin {
    load_bytes(rt, stem, plugin_bytes(stem)).unwrap()
}

pub fn tensor(dev: &Device, shape: &[u32], data: Vec<f32>) -> Tensor {
    dev.from_vec(shape, data).unwrap()
}

/// A small deterministic classification batch: `rows` x `features`, labels < `classes`.
pub fn batch(dev: &Device, rows: u32, features: u32, classes: u32) -> (Tensor, Tensor) {
    let x: Vec<f32> = (0..rows * features)
        .map(|i| ((i * 37 % 23) as f32 - 11.0) / 7.0)
        .collect();
    let y: Vec<f32> = (0..rows).map(|r| (r % classes) as f32).collect();
    (tensor(dev, &[rows, features], x), tensor(dev, &[rows], y))
}

/// The path of the repository's data set.
pub fn data(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("data")
        .join(name)
}

pub fn pipeline(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("plugins/pipelines")
        .join(format!("{name}.toml"))
}

/// The `tensorlet` binary with `home` as its state and no `TENSORLET_*`
/// settings from the environment.
pub fn command(home: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_tensorlet"));
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("TENSORLET_") {
            cmd.env_remove(k);
        }
    }
    cmd.args(args).env("TENSORLET_HOME", home);
    cmd
}

/// Runs [`command`] plus `env`.
pub fn tensorlet_env(home: &Path, args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = command(home, args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("run tensorlet")
}

/// [`tensorlet_env`] without extra variables.
pub fn tensorlet(home: &Path, args: &[&str]) -> Output {
    tensorlet_env(home, args, &[])
}

/// Asserts success; returns stdout.
pub fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "tensorlet failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Asserts failure with exit code 1; returns stderr.
pub fn fails(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "expected failure, got success: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8(out.stderr.clone()).unwrap()
}

/// A path as `&str`, for argument lists.
pub fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Creates key `name`; returns (key id, public key).
pub fn keygen(home: &Path, name: &str) -> (String, String) {
    let out = ok(&tensorlet(home, &["keygen", name]));
    let public = out.lines().last().unwrap().to_string();
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("key id "))
        .unwrap()
        .to_string();
    (id, public)
}

pub fn publish_plugin(home: &Path, stem: &str, name: &str, kind: &str, key: &str) -> Output {
    publish_plugin_with(home, stem, name, kind, key, &[])
}

/// [`publish_plugin`] with more arguments (e.g. `--graph model=x.onnx`).
pub fn publish_plugin_with(
    home: &Path,
    stem: &str,
    name: &str,
    kind: &str,
    key: &str,
    extra: &[&str],
) -> Output {
    let path = plugin_path(stem);
    let mut args = vec![
        "publish",
        s(&path),
        "--name",
        name,
        "--version",
        "1.0.0",
        "--kind",
        kind,
        "--key",
        key,
    ];
    args.extend_from_slice(extra);
    tensorlet(home, &args)
}

/// A home with key `alice` trusted for `acme`, the three plugins published
/// and the iris pipeline published as `acme/iris@1.0.0`.
pub fn published_home() -> (tempfile::TempDir, String) {
    let home = tempfile::tempdir().unwrap();
    let h = home.path();
    let (id, public) = keygen(h, "alice");
    ok(&tensorlet(
        h,
        &["trust", "add", &public, "--namespace", "acme"],
    ));
    ok(&publish_plugin(
        h,
        "standardize",
        "acme/standardize",
        "preprocessor",
        "alice",
    ));
    ok(&publish_plugin(
        h,
        "softmax_regression",
        "acme/softmax",
        "trainer",
        "alice",
    ));
    let p = h.join("iris.toml");
    std::fs::write(
        &p,
        "[pipeline]\nname = \"iris\"\nnamespace = \"acme\"\nversion = \"1.0.0\"\n\
         [data]\nlabel = \"species\"\nclass_names = [\"setosa\", \"versicolor\", \"virginica\"]\n\
         [preprocessor]\nref = \"acme/standardize@1.0.0\"\n\
         [trainer]\nref = \"acme/softmax\"\n[predictor]\nref = \"acme/softmax@1.0.0\"\n\
         [training]\nepochs = 30\nbatch_size = 16\nlearning_rate = 0.1\n",
    )
    .unwrap();
    let out = ok(&tensorlet(h, &["publish", s(&p), "--key", "alice"]));
    assert!(
        out.contains("published acme/iris@1.0.0 (pipeline)"),
        "{out}"
    );
    (home, id)
}

/// The address a `tensorlet serve` child announces on its first stdout line
/// ("serving … at http://127.0.0.1:PORT/v2/…"); the rest of its stdout is
/// drained in the background.
pub fn served_addr(child: &mut std::process::Child) -> String {
    use std::io::BufRead;
    let mut lines = std::io::BufReader::new(child.stdout.take().expect("piped stdout")).lines();
    let first = lines.next().expect("a first line").expect("utf-8");
    std::thread::spawn(move || for _ in lines {});
    http_addr(&first).unwrap_or_else(|| panic!("unexpected first line: {first}"))
}

/// The `host:port` of the first `http://` URL in `line` ("serving
/// iris-model 0.1.0 at http://127.0.0.1:PORT/v2/models/iris-model/infer").
pub fn http_addr(line: &str) -> Option<String> {
    let rest = line.split("http://").nth(1)?;
    rest.split('/').next().map(String::from)
}

/// `tensorlet registry serve` (the x86-64 binary) on a free loopback port,
/// plus `extra`; killed when dropped.
pub struct RegistryServer {
    child: std::process::Child,
    /// `http://127.0.0.1:PORT` (`https://…` when started with TLS).
    pub url: String,
}

impl RegistryServer {
    pub fn start(home: &Path, extra: &[&str]) -> RegistryServer {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_tensorlet"))
            .args(["registry", "serve", "--addr", "127.0.0.1:0"])
            .args(extra)
            .env("TENSORLET_HOME", home)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("no URL in {line:?}"))
            .to_string();
        RegistryServer { child, url }
    }

    /// [`RegistryServer::start`] serving HTTPS with `cert` and `key` (PEM).
    pub fn start_tls(home: &Path, cert: &Path, key: &Path) -> RegistryServer {
        let server = Self::start(home, &["--tls-cert", s(cert), "--tls-key", s(key)]);
        assert!(server.url.starts_with("https://"), "{}", server.url);
        server
    }

    /// `https://localhost:PORT` for a server on 127.0.0.1 (for certificates
    /// issued to the name `localhost`).
    pub fn url_as(&self, host: &str) -> String {
        let port = self.url.rsplit(':').next().unwrap();
        let scheme = self.url.split("://").next().unwrap();
        format!("{scheme}://{host}:{port}")
    }
}

impl Drop for RegistryServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with a JSON body (when given) on a connection of its
/// own; returns the status and the body parsed as JSON (`null` if it is not).
pub fn http(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&serde_json::Value>,
) -> (u16, serde_json::Value) {
    let body = body
        .map(|b| serde_json::to_vec(b).unwrap())
        .unwrap_or_default();
    let r = http::request(
        method,
        addr,
        path,
        &[("content-type", "application/json")],
        &body,
    );
    (r.status, http::json_or_null(&r))
}

/// `tensorlet serve` of `models` (all of the registry's production aliases
/// when empty) on a free loopback port; killed when dropped.
pub struct Server {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
}

impl Server {
    pub fn start(home: &Path, models: &[&str]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_tensorlet"));
        cmd.args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--admin-addr",
            "off",
            "--grpc-addr",
            "off",
        ]);
        for m in models {
            cmd.args(["--model", m]);
        }
        let mut child = cmd
            .env("TENSORLET_HOME", home)
            .env("TENSORLET_DEVICE", "cpu")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap();
        let addr = served_addr(&mut child);
        Server { child, addr }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copies the directory tree `from` to `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let dest = to.join(path.file_name().unwrap());
        if path.is_dir() {
            copy_tree(&path, &dest);
        } else {
            std::fs::copy(&path, &dest).unwrap();
        }
    }
}
