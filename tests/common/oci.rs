//! The CNCF distribution registry (Debian's `docker-registry`) on a free
//! loopback port with a temporary storage directory: plain HTTP, or HTTPS
//! with a certificate from a private CA and htpasswd logins. A test that runs
//! where it is not installed fails with what to install.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::http;
use super::tls::Ca;

pub const REGISTRY_BIN: &str = "/usr/bin/docker-registry";

/// A certificate for 127.0.0.1 (and `localhost`) from a private CA, and an
/// htpasswd file with the login `ci` / `s3cret`.
pub struct Secured {
    pub dir: tempfile::TempDir,
    /// The CA that signed `cert` (PEM).
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub htpasswd: PathBuf,
}

impl Secured {
    pub fn new() -> Secured {
        let dir = tempfile::tempdir().unwrap();
        let ca = Ca::new("tensorlet test CA");
        let (cert, key) = ca
            .issue(&["127.0.0.1", "localhost"])
            .write(dir.path(), "registry");
        // bcrypt (cost 5) of `s3cret`, as `htpasswd -B` writes it.
        let htpasswd = dir.path().join("htpasswd");
        std::fs::write(
            &htpasswd,
            "ci:$2b$05$oCLZWnuItMRvNvaXX9k/rugHVBv5wA.i.yG8PridZB10YoXYKl4IO\n",
        )
        .unwrap();
        Secured {
            ca: ca.write(dir.path(), "ca"),
            dir,
            cert,
            key,
            htpasswd,
        }
    }

    /// A Docker client configuration holding `user:password` for `host`;
    /// returns its directory (for `DOCKER_CONFIG`).
    pub fn docker_config(&self, host: &str, user: &str, password: &str) -> PathBuf {
        use base64::Engine as _;
        let dir = self.dir.path().join(format!("docker-{user}"));
        std::fs::create_dir_all(&dir).unwrap();
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        std::fs::write(
            dir.join("config.json"),
            serde_json::json!({"auths": {host: {"auth": auth}}}).to_string(),
        )
        .unwrap();
        dir
    }
}

/// The distribution registry on a free loopback port; killed when dropped.
pub struct OciRegistry {
    child: Child,
    pub port: u16,
    _storage: tempfile::TempDir,
}

impl Drop for OciRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl OciRegistry {
    /// One that serves plain HTTP to anyone.
    pub fn start() -> OciRegistry {
        Self::start_with(None)
    }

    /// One that serves HTTPS with `tls`'s certificate and key and asks for
    /// `tls`'s htpasswd logins.
    pub fn start_secured(tls: &Secured) -> OciRegistry {
        Self::start_with(Some(tls))
    }

    fn start_with(secured: Option<&Secured>) -> OciRegistry {
        assert!(
            Path::new(REGISTRY_BIN).exists(),
            "{REGISTRY_BIN} is missing: apt-get install docker-registry (see docs/testing.md)"
        );
        let storage = tempfile::tempdir().unwrap();
        let probe = secured.map(|t| http::client_trusting(&t.ca));
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
                let up = match &probe {
                    // Over TLS, asking for a login (401) is up.
                    Some(client) => http::try_request_with(
                        client,
                        "GET",
                        format!("https://127.0.0.1:{port}"),
                        "/v2/",
                        &[],
                        b"",
                    )
                    .is_ok_and(|r| r.status == 401),
                    None => http::try_request("GET", format!("127.0.0.1:{port}"), "/v2/", &[], b"")
                        .is_ok_and(|r| r.status == 200),
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
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!(
            "docker-registry did not start: {}",
            std::fs::read_to_string(storage.path().join("registry.log")).unwrap_or_default()
        );
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `oci://127.0.0.1:PORT/fleet`.
    pub fn base(&self) -> String {
        format!("oci://127.0.0.1:{}/fleet", self.port)
    }
}
