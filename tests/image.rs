//! The `Dockerfile` built with buildah and run: the image answers the Open
//! Inference Protocol from inside, as an unprivileged user.
//!
//! No container registry is reachable from the CI machines, so the base
//! image `debian:bookworm-slim` is made from Debian's archive with
//! `debootstrap`, and the binary is the one these tests built
//! (`--build-arg BINARY_FROM=host`) rather than a second release build
//! inside the image. Everything else is the Dockerfile as users build it.

mod common;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};

/// The image the test builds.
const IMAGE: &str = "localhost/tensorlet:ci";

/// `buildah` with its storage in `dir` (vfs: no overlay mounts needed).
fn buildah(dir: &Path) -> Command {
    let mut cmd = Command::new("buildah");
    cmd.arg("--root")
        .arg(dir.join("root"))
        .arg("--runroot")
        .arg(dir.join("run"))
        .args(["--storage-driver", "vfs"]);
    cmd
}

/// Runs `cmd`; its stdout, trimmed, when it succeeds.
fn succeed(what: &str, cmd: &mut Command) -> String {
    let out: Output = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// `docker.io/library/debian:bookworm-slim` in `storage`, made from
/// Debian's archive.
fn base_image(work: &Path, storage: &Path) {
    let rootfs = work.join("rootfs");
    succeed(
        "debootstrap",
        Command::new("debootstrap")
            .args(["--variant=minbase", "bookworm"])
            .arg(&rootfs)
            .arg("http://deb.debian.org/debian"),
    );
    let ctr = succeed(
        "buildah from scratch",
        buildah(storage).args(["from", "scratch"]),
    );
    succeed(
        "buildah copy",
        buildah(storage).args(["copy", &ctr]).arg(&rootfs).arg("/"),
    );
    succeed(
        "buildah commit",
        buildah(storage).args([
            "commit",
            "-q",
            &ctr,
            "docker.io/library/debian:bookworm-slim",
        ]),
    );
    succeed("buildah rm", buildah(storage).args(["rm", &ctr]));
}

/// A server running in a container; stopped when dropped. `buildah run`
/// does not pass signals on, so every process whose command line holds
/// `pattern` (the server's unique address) gets SIGTERM: the server drains
/// and exits, and `buildah run` with it.
struct Running {
    child: std::process::Child,
    pattern: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = Command::new("pkill")
            .args(["-TERM", "-f", &self.pattern])
            .status();
        let _ = self.child.wait();
    }
}

#[test]
#[ignore = "needs root, buildah and debootstrap (.ci/run installs them) and deb.debian.org"]
fn the_dockerfile_builds_an_image_that_serves_the_protocol() {
    let work = tempfile::tempdir().unwrap();
    let w = work.path();
    let storage = w.join("storage");
    base_image(w, &storage);

    // The Dockerfile, with the binary of this build (debug info stripped).
    let context = w.join("context");
    std::fs::create_dir_all(&context).unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    std::fs::copy(root.join("Dockerfile"), context.join("Dockerfile")).unwrap();
    let binary = context.join("tensorlet");
    std::fs::copy(env!("CARGO_BIN_EXE_tensorlet"), &binary).unwrap();
    succeed(
        "strip",
        Command::new("strip").arg("--strip-debug").arg(&binary),
    );
    succeed(
        "buildah bud",
        buildah(&storage)
            .args(["bud", "--isolation", "chroot", "--pull=never"])
            .args(["--build-arg", "BINARY_FROM=host", "-t", IMAGE])
            .arg(&context),
    );

    // What the image says about itself.
    let inspect: Value = serde_json::from_str(&succeed(
        "buildah inspect",
        buildah(&storage).args(["inspect", "--type", "image", IMAGE]),
    ))
    .unwrap();
    let config = &inspect["OCIv1"]["config"];
    assert_eq!(config["User"], "10001", "{config}");
    assert_eq!(config["Entrypoint"], json!(["tensorlet"]), "{config}");
    for port in ["8080/tcp", "9000/tcp"] {
        assert!(config["ExposedPorts"].get(port).is_some(), "{config}");
    }
    assert!(
        config["Env"]
            .as_array()
            .unwrap()
            .contains(&json!("TENSORLET_HOME=/var/lib/tensorlet")),
        "{config}"
    );

    // A home with the demo's models, mounted into a container of the image.
    let home = w.join("home");
    ok(&tensorlet(
        &home,
        &["demo", "--out", s(&home), "--device", "cpu"],
    ));
    succeed(
        "chmod",
        Command::new("chmod").args(["-R", "a+rwX"]).arg(&home),
    );
    let ctr = succeed(
        "buildah from",
        buildah(&storage).args(["from", "--pull=never", IMAGE]),
    );
    let run = |args: &[&str]| {
        let mut cmd = buildah(&storage);
        cmd.args(["run", "--isolation", "chroot"])
            .args(["--env", "TENSORLET_HOME=/models-home"])
            .arg("-v")
            .arg(format!("{}:/models-home", home.display()))
            .args([&ctr, "--"])
            .args(args);
        cmd
    };
    assert_eq!(succeed("id -u", &mut run(&["id", "-u"])), "10001");
    let version = succeed("tensorlet --version", &mut run(&["tensorlet", "--version"]));
    assert!(version.starts_with("tensorlet "), "{version}");

    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let mut serve = run(&[
        "tensorlet",
        "serve",
        "--addr",
        &addr,
        "--grpc-addr",
        "off",
        "--admin-addr",
        "off",
        "--device",
        "cpu",
        "--model",
        "tensorlet/iris-model@0.1.0",
    ]);
    let _serving = Running {
        child: serve
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
        pattern: format!("serve --addr {addr} "),
    };
    let started = Instant::now();
    while !http::try_request("GET", &addr, "/v2/health/ready", &[], b"")
        .is_ok_and(|r| r.status == 200)
    {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the container did not turn ready"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let request = json!({"inputs": [{
        "name": "input", "shape": [2, 4], "datatype": "FP32",
        "data": [5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3],
    }]});
    let (status, answer) =
        common::http(&addr, "POST", "/v2/models/iris-model/infer", Some(&request));
    assert_eq!(status, 200, "{answer}");
    let class = answer["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "class")
        .unwrap_or_else(|| panic!("no class output in {answer}"));
    assert_eq!(class["data"], json!(["setosa", "virginica"]), "{answer}");
}
