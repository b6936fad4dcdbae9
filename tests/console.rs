//! The web console (`tensorlet ui`) and the serving pages of `tensorlet
//! serve`: every page over HTTP (`Router::oneshot`) against a home with
//! trained runs, a registered dataset and a tampered artifact; actions and
//! their guards; and, with Chromium and chromedriver, the same pages in a
//! real browser: no console errors, curves drawn, runs compared, a promote
//! by clicking, refusals, error pages, the serving page refreshing live,
//! phone width, and the screenshots in docs/console/.

mod common;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use common::*;
use tensorlet_console::{Console, ConsoleConfig};
use tensorlet_runtime::registry::{Reference, Registry};
use tower::ServiceExt;

/// A home with alice's plugins and pipeline, dataset `iris`, two runs of it
/// that differ in learning rate (models acme/iris-model 0.1.0 and 0.1.1),
/// and `acme/bad-scale@1.0.0`, whose component blob was altered after it
/// was published.
struct Fixture {
    _dir: tempfile::TempDir,
    home: PathBuf,
    runs: [String; 2],
}

fn run_id(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    err.lines()
        .find_map(|l| l.strip_prefix("run "))
        .map(|l| l.split_whitespace().next().unwrap().to_string())
        .unwrap_or_else(|| panic!("no run id in: {err}"))
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let (dir, _) = published_home();
        let h = dir.path().to_path_buf();
        let csv = h.join("iris.csv");
        std::fs::copy(data("iris.csv"), &csv).unwrap();
        ok(&tensorlet(&h, &["dataset", "add", "iris", s(&csv)]));
        let train = |lr: &str| {
            let out = tensorlet(
                &h,
                &[
                    "train",
                    "acme/iris",
                    "--key",
                    "alice",
                    "--device",
                    "cpu",
                    "--data",
                    "iris",
                    "--epochs",
                    "12",
                    "--seed",
                    "3",
                    "--lr",
                    lr,
                ],
            );
            ok(&out);
            run_id(&out)
        };
        let runs = [train("0.1"), train("0.05")];
        // A component no other artifact holds: blobs are shared by digest.
        ok(&publish_plugin(
            &h,
            "passthrough",
            "acme/bad-scale",
            "preprocessor",
            "alice",
        ));
        let reg = Registry::open(&h).unwrap();
        let (_, signed) = reg.show(&"acme/bad-scale@1.0.0".parse().unwrap()).unwrap();
        let blob = &signed.manifest.blobs["component"];
        let path = h
            .join("blobs/sha256")
            .join(blob.trim_start_matches("sha256:"));
        std::fs::write(&path, b"not the component that was signed").unwrap();
        Fixture {
            home: h,
            _dir: dir,
            runs,
        }
    })
}

/// A copy of the fixture's home, for a test that changes it.
fn fixture_copy() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    copy_tree(&fixture().home, dir.path());
    let home = dir.path().to_path_buf();
    (dir, home)
}

fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &target);
        } else if let Err(err) = std::fs::copy(e.path(), &target) {
            // A temporary file (a compiled-component cache entry, an atomic
            // write) that another test renamed away mid-copy is not part of
            // the home.
            assert_eq!(err.kind(), std::io::ErrorKind::NotFound, "{err}");
        }
    }
}

fn loopback() -> SocketAddr {
    "127.0.0.1:7080".parse().unwrap()
}

fn app_for(home: &Path) -> axum::Router {
    tensorlet_console::app(Console::new(ConsoleConfig::new(
        home.to_path_buf(),
        loopback(),
    )))
}

struct Reply {
    status: StatusCode,
    body: String,
    headers: axum::http::HeaderMap,
}

async fn send(app: &axum::Router, req: Request<Body>) -> Reply {
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let bytes = axum::body::to_bytes(r.into_body(), 64 << 20).await.unwrap();
    Reply {
        status,
        headers,
        body: String::from_utf8_lossy(&bytes).into_owned(),
    }
}

async fn get(app: &axum::Router, uri: &str) -> Reply {
    send(
        app,
        Request::get(uri)
            .header(header::HOST, "127.0.0.1:7080")
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

async fn post(
    app: &axum::Router,
    uri: &str,
    form: &[(&str, &str)],
    extra: &[(&str, &str)],
) -> Reply {
    let body = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(form)
        .finish();
    let mut req = Request::post(uri)
        .header(header::HOST, "127.0.0.1:7080")
        .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    send(app, req.body(Body::from(body)).unwrap()).await
}

fn ok_page(r: &Reply, what: &str) {
    assert_eq!(r.status, StatusCode::OK, "{what}: {}", r.body);
    assert!(
        r.headers[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/html"),
        "{what}"
    );
    assert!(
        r.headers[header::CONTENT_SECURITY_POLICY]
            .to_str()
            .unwrap()
            .contains("script-src 'self'"),
        "{what}"
    );
}

/// The JSON of a chart embedded in a page, by figure id.
fn chart(body: &str, id: &str) -> serde_json::Value {
    let at = body
        .find(&format!("id=\"{id}\""))
        .unwrap_or_else(|| panic!("no {id}"));
    let rest = &body[at..];
    let start = rest.find("class=\"chart-data\">").unwrap() + "class=\"chart-data\">".len();
    let end = rest[start..].find("</script>").unwrap();
    serde_json::from_str(&rest[start..start + end]).unwrap()
}

/// The token in a page's forms.
fn token(body: &str) -> String {
    let at = body
        .find("name=\"token\" value=\"")
        .expect("a form with a token");
    body[at + "name=\"token\" value=\"".len()..]
        .split('"')
        .next()
        .unwrap()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn every_page_shows_what_the_registry_holds() {
    let f = fixture();
    let app = app_for(&f.home);
    let [a, b] = &f.runs;

    let r = get(&app, "/").await;
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let r = get(&app, "/artifacts").await;
    ok_page(&r, "artifacts");
    for name in [
        "acme/iris-model",
        "acme/iris",
        "acme/standardize",
        "acme/bad-scale",
    ] {
        assert!(
            r.body.contains(&format!(">{name}</a>")),
            "{name}: {}",
            r.body
        );
    }
    let r = get(&app, "/artifacts?kind=model").await;
    ok_page(&r, "artifacts?kind=model");
    assert!(r.body.contains(">acme/iris-model</a>"));
    assert!(!r.body.contains(">acme/standardize</a>"));
    let r = get(&app, "/artifacts?q=SCALE&namespace=acme").await;
    assert!(r.body.contains(">acme/bad-scale</a>") && !r.body.contains(">acme/iris</a>"));

    // An artifact's versions, verified; the tampered one refused with the reason.
    let r = get(&app, "/artifacts/acme/iris-model").await;
    ok_page(&r, "iris-model");
    assert_eq!(
        r.body.matches("data-verdict=\"verified\"").count(),
        2,
        "{}",
        r.body
    );
    assert!(r.body.contains("0.1.0") && r.body.contains("0.1.1"));
    let r = get(&app, "/artifacts/acme/bad-scale").await;
    ok_page(&r, "bad-scale");
    assert!(r.body.contains("data-verdict=\"refused\""), "{}", r.body);
    assert!(
        r.body.contains("blob `component` was modified"),
        "{}",
        r.body
    );
    let r = get(&app, "/artifacts/acme/bad-scale/1.0.0").await;
    ok_page(&r, "bad-scale@1.0.0");
    assert!(r.body.contains("data-verdict=\"refused\""));
    let r = get(&app, "/artifacts/acme/iris-model/0.1.0").await;
    ok_page(&r, "iris-model@0.1.0");
    assert!(r.body.contains("data-verdict=\"verified\""));
    assert!(r.body.contains("params.safetensors"), "{}", r.body);
    assert!(r.body.contains("/lineage/acme/iris-model/0.1.0"));
    // Viewing a tampered artifact records nothing.
    let before = Registry::open(&f.home).unwrap().audit_log().unwrap().len();
    get(&app, "/artifacts/acme/bad-scale").await;
    assert_eq!(
        Registry::open(&f.home).unwrap().audit_log().unwrap().len(),
        before
    );

    // Lineage: model → run (→ checkpoint, dataset), pipeline (→ plugins).
    let r = get(&app, "/lineage/acme/iris-model/0.1.0").await;
    ok_page(&r, "lineage");
    assert!(r.body.contains("<svg"), "{}", r.body);
    for kind in [
        "model",
        "run",
        "checkpoint",
        "dataset",
        "pipeline",
        "plugin",
    ] {
        assert!(
            r.body.contains(&format!("data-kind=\"{kind}\"")),
            "{kind} missing: {}",
            r.body
        );
    }
    assert!(r.body.contains(&format!("href=\"/runs/{a}\"")));
    assert!(r.body.contains("href=\"/datasets/iris\""));
    assert!(
        r.body.contains("sepal_length"),
        "schema in the dataset node"
    );

    // Runs: the table, one run's curves, a zoomed range, the comparison.
    let r = get(&app, "/runs").await;
    ok_page(&r, "runs");
    assert!(r.body.contains(a.as_str()) && r.body.contains(b.as_str()));
    let r = get(&app, "/runs?sort=best&order=desc&status=completed").await;
    ok_page(&r, "runs sorted");
    let r = get(&app, &format!("/runs/{a}")).await;
    ok_page(&r, "run");
    let loss = chart(&r.body, "chart-loss");
    assert_eq!(loss["x"].as_array().unwrap().len(), 12);
    assert_eq!(loss["series"][0]["label"], "train_loss");
    assert_eq!(loss["series"][1]["label"], "val_loss");
    let first = loss["series"][0]["values"][0].as_f64().unwrap();
    let last = loss["series"][0]["values"][11].as_f64().unwrap();
    assert!(last < first, "training loss falls: {first} → {last}");
    assert_eq!(r.body.matches("<tr id=\"epoch-").count(), 12);
    let r = get(
        &app,
        &format!("/runs/{a}/curves.json?chart=accuracy&from=3&to=5"),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK);
    let z: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(z["x"], serde_json::json!([3.0, 4.0, 5.0]));
    let r = get(&app, &format!("/runs/compare?run={a}&run={b}")).await;
    ok_page(&r, "compare");
    let row = r
        .body
        .split("<tr ")
        .find(|t| t.contains("data-field=\"config.learning_rate\""))
        .expect("a learning_rate row");
    assert!(row.contains("class=\"differs\""), "{row}");
    assert!(
        row.contains("<td>0.1</td>") && row.contains("<td>0.05</td>"),
        "{row}"
    );
    let seed = r
        .body
        .split("<tr ")
        .find(|t| t.contains("data-field=\"config.seed\""))
        .unwrap();
    assert!(!seed.contains("differs"), "{seed}");
    assert_eq!(
        chart(&r.body, "chart-loss")["series"]
            .as_array()
            .unwrap()
            .len(),
        4
    );

    // Datasets and the audit log.
    let r = get(&app, "/datasets").await;
    ok_page(&r, "datasets");
    assert!(
        r.body.contains(">iris</a>") && r.body.contains("<td>150</td>"),
        "{}",
        r.body
    );
    let r = get(&app, "/datasets/iris").await;
    ok_page(&r, "dataset");
    assert!(r.body.contains("species") && r.body.contains("label"));
    let r = get(&app, "/audit").await;
    ok_page(&r, "audit");
    assert!(r.body.contains("data-verified=\"true\""), "{}", r.body);
    let r = get(&app, "/audit?action=train.run&subject=iris").await;
    ok_page(&r, "audit filtered");
    assert_eq!(r.body.matches("<tr id=\"entry-").count(), 2, "{}", r.body);

    // The assets are in the binary.
    let r = get(&app, "/assets/uPlot.iife.min.js").await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("uPlot"));
    assert!(
        get(&app, "/assets/uPlot-LICENSE.txt")
            .await
            .body
            .contains("MIT")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_things_get_a_404_page_with_a_way_back() {
    let app = app_for(&fixture().home);
    for (uri, back, says) in [
        ("/artifacts/acme/nothing", "/artifacts", "acme/nothing"),
        ("/artifacts/acme/iris-model/9.9.9", "/artifacts", "9.9.9"),
        ("/lineage/acme/iris-model/9.9.9", "/artifacts", "9.9.9"),
        ("/runs/20990101-000000-beef", "/runs", "no run"),
        ("/datasets/nothing", "/datasets", "no dataset"),
        ("/no/such/page", "/artifacts", "/no/such/page"),
    ] {
        let r = get(&app, uri).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{uri}: {}", r.body);
        assert!(
            r.body.contains(&format!("class=\"back\" href=\"{back}\"")),
            "{uri}: {}",
            r.body
        );
        assert!(r.body.contains(says), "{uri}: {}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn query_parameters_are_validated() {
    let f = fixture();
    let app = app_for(&f.home);
    let a = &f.runs[0];
    for (uri, says) in [
        ("/runs?sort=bogus".to_string(), "`sort` must be one of"),
        ("/runs?page=0".to_string(), "`page` must be a whole number"),
        ("/runs?page=99".to_string(), "`page` must be from 1 to 1"),
        ("/runs?order=up".to_string(), "`order` must be one of"),
        ("/runs?colour=red".to_string(), "unknown parameter `colour`"),
        (
            "/artifacts?kind=gadget".to_string(),
            "`kind` must be one of",
        ),
        (
            "/artifacts/acme/iris?x=1".to_string(),
            "unknown parameter `x`",
        ),
        (
            format!("/runs/compare?run={a}"),
            "compare takes 2 to 8 runs",
        ),
        (
            "/audit?action=nothing".to_string(),
            "`action` must be one of the actions",
        ),
        (
            format!("/runs/{a}/curves.json?points=1"),
            "`points` must be a whole number",
        ),
        (format!("/runs/{a}/curves.json?from=5&to=2"), "is after"),
        (
            format!("/runs/{a}/curves.json?chart=pie"),
            "`chart` must be one of",
        ),
    ] {
        let r = get(&app, &uri).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{uri}: {}", r.body);
        assert!(r.body.contains(says), "{uri}: {}", r.body);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_registry_that_cannot_be_opened_is_named_with_its_cause() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("home");
    std::fs::write(&home, "a file, not a directory").unwrap();
    let app = app_for(&home);
    for uri in ["/artifacts", "/runs", "/audit", "/datasets"] {
        let r = get(&app, uri).await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{uri}");
        assert!(r.body.contains(home.to_str().unwrap()), "{}", r.body);
        assert!(r.body.contains("cannot open the registry"), "{}", r.body);
        assert!(
            r.body.to_lowercase().contains("not a directory") || r.body.contains("exists"),
            "{}",
            r.body
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_move_aliases_as_the_cli_does_behind_their_guards() {
    let (_dir, home) = fixture_copy();
    let app = app_for(&home);
    let page = get(&app, "/artifacts/acme/iris-model").await;
    ok_page(&page, "artifact");
    let t = token(&page.body);
    let promote = [
        ("token", t.as_str()),
        ("name", "acme/iris-model"),
        ("version", "0.1.1"),
        ("alias", "production"),
    ];

    // Refused without the token, with another's, and from another site.
    let mut no_token = promote.to_vec();
    no_token.remove(0);
    let r = post(&app, "/actions/promote", &no_token, &[]).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let mut wrong = promote.to_vec();
    wrong[0].1 = "0000";
    assert_eq!(
        post(&app, "/actions/promote", &wrong, &[]).await.status,
        StatusCode::FORBIDDEN
    );
    let r = post(
        &app,
        "/actions/promote",
        &promote,
        &[("origin", "http://evil.example")],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("evil.example"));
    let r = post(
        &app,
        "/actions/promote",
        &promote,
        &[("sec-fetch-site", "cross-site")],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = get(&app, "/actions/promote").await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    let reg = Registry::open(&home).unwrap();
    assert_eq!(
        reg.alias_target("acme/iris-model", "production").unwrap(),
        None
    );

    // Allowed: the alias moves and the audit log says so, as `tensorlet promote` would.
    let r = post(
        &app,
        "/actions/promote",
        &promote,
        &[
            ("origin", "http://127.0.0.1:7080"),
            ("sec-fetch-site", "same-origin"),
        ],
    )
    .await;
    ok_page(&r, "promote");
    assert!(
        r.body.contains("Promoted acme/iris-model@production"),
        "{}",
        r.body
    );
    let (version, digest) = reg
        .alias_target("acme/iris-model", "production")
        .unwrap()
        .unwrap();
    assert_eq!(version, "0.1.1");
    let last = reg.audit_log().unwrap().pop().unwrap();
    assert_eq!(last.action, "promote");
    assert_eq!(last.subject, "acme/iris-model@production");
    assert_eq!(last.detail["to"], "0.1.1");
    assert_eq!(last.detail["digest"], digest.as_str());
    let page = get(&app, "/artifacts/acme/iris-model").await;
    assert!(
        page.body
            .contains("data-alias-target=\"production\">0.1.1<"),
        "{}",
        page.body
    );
    assert!(
        page.body.contains("#entry-"),
        "the alias's history links its audit entries"
    );

    // Alias set, rollback, yank.
    let r = post(
        &app,
        "/actions/alias",
        &[
            ("token", &t),
            ("name", "acme/iris-model"),
            ("alias", "production"),
            ("version", "0.1.0"),
        ],
        &[],
    )
    .await;
    ok_page(&r, "alias set");
    assert_eq!(
        reg.alias_target("acme/iris-model", "production")
            .unwrap()
            .unwrap()
            .0,
        "0.1.0"
    );
    let r = post(
        &app,
        "/actions/rollback",
        &[
            ("token", &t),
            ("name", "acme/iris-model"),
            ("alias", "production"),
        ],
        &[],
    )
    .await;
    ok_page(&r, "rollback");
    assert_eq!(
        reg.alias_target("acme/iris-model", "production")
            .unwrap()
            .unwrap()
            .0,
        "0.1.1"
    );
    assert_eq!(reg.audit_log().unwrap().pop().unwrap().action, "rollback");
    let r = post(
        &app,
        "/actions/yank",
        &[
            ("token", &t),
            ("name", "acme/iris-model"),
            ("version", "0.1.0"),
        ],
        &[],
    )
    .await;
    ok_page(&r, "yank");
    assert!(
        reg.resolve(&Reference::parse("acme/iris-model@0.1.0").unwrap())
            .unwrap()
            .yanked
    );

    // A tampered version is never promoted; the refusal is audited.
    let r = post(
        &app,
        "/actions/promote",
        &[
            ("token", &t),
            ("name", "acme/bad-scale"),
            ("version", "1.0.0"),
            ("alias", "production"),
        ],
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert!(
        r.body.contains("blob `component` was modified"),
        "{}",
        r.body
    );
    assert_eq!(
        reg.alias_target("acme/bad-scale", "production").unwrap(),
        None
    );
    assert_eq!(
        reg.audit_log().unwrap().pop().unwrap().action,
        "promote.refused"
    );
    assert!(reg.audit_verify().is_ok());
}

#[tokio::test(flavor = "multi_thread")]
async fn actions_are_off_without_a_key_off_loopback_and_for_other_hosts() {
    // No key of a person in the home.
    let dir = tempfile::tempdir().unwrap();
    let app = app_for(dir.path());
    let r = get(&app, "/artifacts").await;
    ok_page(&r, "empty home");
    let r = post(
        &app,
        "/actions/yank",
        &[("token", "x"), ("name", "acme/x"), ("version", "1.0.0")],
        &[],
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(r.body.contains("holds no signing key"), "{}", r.body);

    // Not on loopback: no forms, and a POST is refused.
    let home = &fixture().home;
    let config = ConsoleConfig::new(home.clone(), "0.0.0.0:7080".parse().unwrap());
    let app = tensorlet_console::app(Console::new(config));
    let r = send(
        &app,
        Request::get("/artifacts/acme/iris-model")
            .header(header::HOST, "console.example:7080")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    ok_page(&r, "not loopback");
    assert!(!r.body.contains("name=\"token\""));
    assert!(r.body.contains("not on loopback"), "{}", r.body);

    // On loopback, another Host name (DNS rebinding) is not answered.
    let app = app_for(home);
    let r = send(
        &app,
        Request::get("/artifacts")
            .header(header::HOST, "rebound.example:7080")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(r.status, StatusCode::MISDIRECTED_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_remote_registry_is_shown_as_the_local_trust_policy_judges_it() {
    let (_dir, remote_home) = fixture_copy();
    let server = RegistryServer::start(&remote_home, &[]);
    let with_remote = |home: &Path, url: &str| {
        tensorlet_console::app(Console::new(ConsoleConfig {
            remote: Some(url.to_string()),
            ..ConsoleConfig::new(home.to_path_buf(), loopback())
        }))
    };

    // The fixture's home trusts alice, who signed everything there.
    let app = with_remote(&fixture().home, &server.url);
    let r = get(&app, "/artifacts").await;
    ok_page(&r, "remote artifacts");
    assert!(r.body.contains(">acme/iris-model</a>"), "{}", r.body);
    assert!(r.body.contains(&server.url), "names the remote: {}", r.body);
    let r = get(&app, "/artifacts/acme/iris-model").await;
    ok_page(&r, "remote artifact");
    assert_eq!(
        r.body.matches("data-verdict=\"verified\"").count(),
        2,
        "{}",
        r.body
    );
    assert!(
        r.body.contains("blobs are checked when pulled"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("name=\"token\""), "no actions on a remote");
    assert!(r.body.contains("remote registry"), "{}", r.body);

    // A home that trusts nobody sees the same versions refused.
    let stranger = tempfile::tempdir().unwrap();
    let app = with_remote(stranger.path(), &server.url);
    let r = get(&app, "/artifacts/acme/iris-model").await;
    ok_page(&r, "remote artifact, untrusted");
    assert_eq!(
        r.body.matches("data-verdict=\"refused\"").count(),
        2,
        "{}",
        r.body
    );

    // A remote that does not answer is named.
    drop(server);
    let r = get(&app, "/artifacts").await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.body);
    assert!(r.body.contains("127.0.0.1"), "{}", r.body);
}

/// A child process killed when dropped (also when a test fails).
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `tensorlet serve` of the fixture's model on free ports: (child, public
/// address, admin address).
fn serve(home: &Path) -> (Child, String, String) {
    use std::io::BufRead;
    let mut child = command(
        home,
        &[
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--admin-addr",
            "127.0.0.1:0",
            "--grpc-addr",
            "off",
            "--device",
            "cpu",
            "--model",
            "acme/iris-model@production",
        ],
    )
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // What serve says on stderr, kept for the message when it stops early.
    let said = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let stderr = std::io::BufReader::new(child.stderr.take().unwrap());
    let keep = said.clone();
    let drain = std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            let mut k = keep.lock().unwrap();
            k.push_str(&line);
            k.push('\n');
        }
    });
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let mut public = None;
    let admin = loop {
        let Some(line) = lines.next() else {
            let _ = child.wait();
            let _ = drain.join();
            panic!(
                "serve stopped before printing its addresses:\n{}",
                said.lock().unwrap()
            );
        };
        let line = line.unwrap();
        if public.is_none() && line.starts_with("serving ") {
            public = common::http_addr(&line);
        }
        if let Some(a) = line.strip_prefix("serving console at http://") {
            break a.trim_end_matches("/serving").to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (child, public.expect("a public address"), admin)
}

fn http(addr: &str, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let status = out[9..12].parse().unwrap();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body)
}

#[test]
fn serve_shows_its_models_traffic_and_deploys_on_its_admin_address() {
    let (_dir, home) = fixture_copy();
    ok(&tensorlet(
        &home,
        &["promote", "acme/iris-model@0.1.0", "--to", "production"],
    ));
    let (child, public, admin) = serve(&home);
    let _serve = Killed(child);
    for _ in 0..3 {
        let (status, body) = http(&public, "POST", "/v2/models/iris-model/infer", INFER);
        assert_eq!(status, 200, "{body}");
    }
    let (status, _) = http(&public, "POST", "/v2/models/iris-model/infer", "{}");
    assert_eq!(status, 400);
    let (status, body) = http(&admin, "GET", "/serving.json", "");
    assert_eq!(status, 200, "{body}");
    let snap: serde_json::Value = serde_json::from_str(&body).unwrap();
    let v = &snap["versions"][0];
    assert_eq!(v["model"], "iris-model");
    assert_eq!(v["version"], "0.1.0");
    assert_eq!(v["current"], true);
    assert_eq!(v["requests"], 4);
    assert_eq!(v["client_errors"], 1);
    assert!(v["p50_ms"].as_f64().unwrap() > 0.0, "{v}");
    assert!(v["drift"].is_number(), "{v}");
    assert!(v["rate"].as_f64().unwrap() > 0.0, "{v}");
    assert_eq!(snap["deploys"][0]["kind"], "deployed");
    assert_eq!(snap["deploys"][0]["reference"], "acme/iris-model@0.1.0");
    let (status, page) = http(&admin, "GET", "/serving", "");
    assert_eq!(status, 200);
    assert!(page.contains("data-key=\"iris-model@0.1.0\""), "{page}");
    assert!(page.contains("data-live=\"/serving.json\""));
    // The admin endpoint is still there, and the console only on the admin address.
    assert_eq!(http(&admin, "GET", "/admin/models", "").0, 200);
    assert_eq!(http(&public, "GET", "/serving", "").0, 404);

    // `tensorlet ui --serving` shows the same from the admin address.
    let app = tensorlet_console::app(Console::new(ConsoleConfig {
        serving_url: Some(format!("http://{admin}")),
        ..ConsoleConfig::new(home.clone(), loopback())
    }));
    let rt = tokio::runtime::Runtime::new().unwrap();
    let r = rt.block_on(get(&app, "/serving"));
    ok_page(&r, "ui serving");
    assert!(r.body.contains("data-key=\"iris-model@0.1.0\""));
    // Without one, the page says where to look.
    let r = rt.block_on(get(&app_for(&home), "/serving"));
    assert_eq!(r.status, StatusCode::NOT_IMPLEMENTED);
    assert!(r.body.contains("--serving"), "{}", r.body);
}

// ----- in a browser ----------------------------------------------------------

const BROWSER: &str =
    "needs chromium and chromium-driver: apt-get install chromium chromium-driver";

/// `tensorlet ui` on a free port; killed when dropped.
struct Ui {
    child: Child,
    url: String,
}

impl Ui {
    fn start(home: &Path) -> Ui {
        use std::io::BufRead;
        let mut child = command(home, &["ui", "--addr", "127.0.0.1:0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("console at ")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .trim_end_matches('/')
            .to_string();
        Ui { child, url }
    }
}

impl Drop for Ui {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// chromedriver on a free port and a headless Chromium session.
struct Browser {
    driver: Child,
    client: fantoccini::Client,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn find_tool(names: &[&str]) -> PathBuf {
    for n in names {
        for dir in ["/usr/bin", "/usr/lib/chromium", "/usr/local/bin"] {
            let p = Path::new(dir).join(n);
            if p.exists() {
                return p;
            }
        }
    }
    panic!("{BROWSER} (none of {names:?} found)");
}

/// WebDriver's browser log (Chromium's console), as chromedriver serves it.
#[derive(Debug)]
struct BrowserLog;

impl fantoccini::wd::WebDriverCompatibleCommand for BrowserLog {
    fn endpoint(
        &self,
        base: &url::Url,
        session: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base.join(&format!("session/{}/se/log", session.unwrap_or("")))
    }

    fn method_and_body(&self, _: &url::Url) -> (::http::Method, Option<String>) {
        (::http::Method::POST, Some(r#"{"type":"browser"}"#.into()))
    }
}

impl Browser {
    async fn start() -> Browser {
        let driver_path = find_tool(&["chromedriver"]);
        let chrome = find_tool(&["chromium", "chromium-browser"]);
        let port = free_port();
        let driver = Command::new(driver_path)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut caps = serde_json::Map::new();
        caps.insert(
            "goog:chromeOptions".into(),
            serde_json::json!({
                "binary": chrome,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,900", "--hide-scrollbars"],
            }),
        );
        caps.insert(
            "goog:loggingPrefs".into(),
            serde_json::json!({"browser": "ALL"}),
        );
        let started = Instant::now();
        let client = loop {
            let connector = hyper_util::client::legacy::connect::HttpConnector::new();
            match fantoccini::ClientBuilder::new(connector)
                .capabilities(caps.clone())
                .connect(&format!("http://127.0.0.1:{port}"))
                .await
            {
                Ok(c) => break c,
                Err(e) if started.elapsed() < Duration::from_secs(20) => {
                    let _ = e;
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("cannot start a browser session: {e}"),
            }
        };
        Browser { driver, client }
    }

    /// The console messages of level SEVERE since the last call.
    async fn errors(&self) -> Vec<String> {
        let log = self.client.issue_cmd(BrowserLog).await.unwrap();
        log.as_array()
            .map(|a| {
                a.iter()
                    .filter(|e| e["level"] == "SEVERE")
                    .map(|e| e["message"].as_str().unwrap_or("").to_string())
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn goto(&self, url: &str) {
        self.client.goto(url).await.unwrap();
    }

    async fn js(&self, script: &str) -> serde_json::Value {
        self.client.execute(script, vec![]).await.unwrap()
    }

    async fn close(mut self) {
        let _ = self.client.clone().close().await;
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Waits until `script` returns true.
async fn until(b: &Browser, what: &str, script: &str) {
    let started = Instant::now();
    while b.js(script).await != serde_json::json!(true) {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and chromium-driver: apt-get install chromium chromium-driver"]
async fn in_a_browser_every_page_loads_cleanly_and_draws_its_curves() {
    let f = fixture();
    let [a, b] = &f.runs;
    let ui = Ui::start(&f.home);
    let br = Browser::start().await;
    let pages = [
        "/artifacts".to_string(),
        "/artifacts?kind=model".to_string(),
        "/artifacts/acme/iris-model".to_string(),
        "/artifacts/acme/iris-model/0.1.0".to_string(),
        "/artifacts/acme/bad-scale".to_string(),
        "/lineage/acme/iris-model/0.1.0".to_string(),
        "/runs".to_string(),
        format!("/runs/{a}"),
        format!("/runs/compare?run={a}&run={b}"),
        "/datasets".to_string(),
        "/datasets/iris".to_string(),
        "/audit".to_string(),
    ];
    for (width, height) in [(1280, 900), (390, 844)] {
        br.client.set_window_size(width, height).await.unwrap();
        for p in &pages {
            br.goto(&format!("{}{p}", ui.url)).await;
            until(
                &br,
                "the page's script",
                "return document.documentElement.classList.contains('js');",
            )
            .await;
            assert_eq!(br.errors().await, Vec::<String>::new(), "{p} at {width} px");
            // Nothing wider than the window: wide tables scroll in their own box.
            let fits = br
                .js("return document.documentElement.scrollWidth <= window.innerWidth + 1;")
                .await;
            assert_eq!(fits, serde_json::json!(true), "{p} overflows at {width} px");
        }
    }
    br.client.set_window_size(1280, 900).await.unwrap();

    // The run page draws both charts with every epoch of the run.
    br.goto(&format!("{}/runs/{a}", ui.url)).await;
    until(
        &br,
        "two charts",
        "return (window.tensorletCharts || []).length === 2;",
    )
    .await;
    let drawn = br
        .js("return window.tensorletCharts.map(u => [u.data[0].length, u.series.length, u.ctx.canvas.width > 0, u.data[1][11] < u.data[1][0]]);")
        .await;
    // Loss: train and validation; validation metrics: accuracy and the
    // macro-F1 the run recorded (three classes: no AUC).
    assert_eq!(
        drawn,
        serde_json::json!([[12, 3, true, true], [12, 3, true, false]])
    );
    let legend = br
        .js("return [...document.querySelectorAll('#chart-loss .u-legend .u-label')].map(e => e.textContent);")
        .await;
    assert_eq!(
        legend,
        serde_json::json!(["epoch", "train_loss", "val_loss"])
    );

    // Compared runs: their learning rates differ, highlighted; curves overlaid.
    br.goto(&format!("{}/runs", ui.url)).await;
    for id in [a, b] {
        br.client
            .find(fantoccini::Locator::Css(&format!("input[value='{id}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
    }
    br.client
        .find(fantoccini::Locator::Css(
            "#compare-form button[type=submit]",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &br,
        "the comparison",
        "return !!document.querySelector('#compare-table');",
    )
    .await;
    let lr = br
        .js("const r = document.querySelector('tr[data-field=\"config.learning_rate\"]'); \
             return [r.classList.contains('differs'), getComputedStyle(r).backgroundColor, \
                     [...r.querySelectorAll('td')].map(t => t.textContent), \
                     getComputedStyle(document.querySelector('tr[data-field=\"config.seed\"]')).backgroundColor, \
                     [...document.querySelectorAll('#compare-table thead th a')].map(a => a.textContent)];")
        .await;
    assert_eq!(lr[0], true);
    assert_ne!(lr[1], lr[3], "the differing row is highlighted: {lr}");
    // Columns come in the table's order (newest first): each run's own rate.
    let rate = |id: &str| if id == a.as_str() { "0.1" } else { "0.05" };
    let columns: Vec<&str> = lr[4]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(columns.len(), 2, "{lr}");
    assert!(
        columns.contains(&a.as_str()) && columns.contains(&b.as_str()),
        "{lr}"
    );
    assert_eq!(
        lr[2],
        serde_json::json!(columns.iter().map(|id| rate(id)).collect::<Vec<_>>())
    );
    until(&br, "overlaid curves", "return (window.tensorletCharts || []).length === 2 && window.tensorletCharts[0].series.length === 5;").await;
    assert_eq!(br.errors().await, Vec::<String>::new());
    br.close().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and chromium-driver: apt-get install chromium chromium-driver"]
async fn in_a_browser_a_promote_moves_the_alias_and_a_tampered_version_is_refused() {
    let (_dir, home) = fixture_copy();
    let ui = Ui::start(&home);
    let br = Browser::start().await;
    br.goto(&format!("{}/artifacts/acme/iris-model", ui.url))
        .await;
    let alias = br
        .client
        .find(fantoccini::Locator::Css(
            "tr[id='v-0.1.1'] input[name=alias]",
        ))
        .await
        .unwrap();
    alias.clear().await.unwrap();
    alias.send_keys("staging").await.unwrap();
    br.client
        .find(fantoccini::Locator::Css(
            "tr[id='v-0.1.1'] form[action='/actions/promote'] button",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        &br,
        "the outcome",
        "return !!document.querySelector('.outcome');",
    )
    .await;
    let said = br
        .client
        .find(fantoccini::Locator::Css(".outcome"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        said.contains("Promoted acme/iris-model@staging: (unset) → 0.1.1"),
        "{said}"
    );
    let reg = Registry::open(&home).unwrap();
    assert_eq!(
        reg.alias_target("acme/iris-model", "staging")
            .unwrap()
            .unwrap()
            .0,
        "0.1.1"
    );
    let entry = reg.audit_log().unwrap().pop().unwrap();
    assert_eq!(
        (entry.action.as_str(), entry.subject.as_str()),
        ("promote", "acme/iris-model@staging")
    );
    assert_eq!(br.errors().await, Vec::<String>::new());

    // The tampered plugin shows as refused, and promoting it is refused.
    br.goto(&format!("{}/artifacts/acme/bad-scale", ui.url))
        .await;
    let verdict = br
        .client
        .find(fantoccini::Locator::Css("td.verdict"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        verdict.contains("refused") && verdict.contains("was modified"),
        "{verdict}"
    );
    br.client
        .find(fantoccini::Locator::Css(
            "form[action='/actions/promote'] button",
        ))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(&br, "the refusal", "return document.querySelector('h1') && document.querySelector('h1').textContent.includes('Refused');").await;
    assert_eq!(
        reg.alias_target("acme/bad-scale", "production").unwrap(),
        None
    );
    assert_eq!(
        reg.audit_log().unwrap().pop().unwrap().action,
        "promote.refused"
    );
    br.close().await;
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and chromium-driver: apt-get install chromium chromium-driver"]
async fn in_a_browser_error_pages_name_the_problem_and_lead_back() {
    let ui = Ui::start(&fixture().home);
    let dir = tempfile::tempdir().unwrap();
    let bad_home = dir.path().join("home");
    std::fs::write(&bad_home, "not a directory").unwrap();
    let broken = Ui::start(&bad_home);
    let br = Browser::start().await;
    for (url, heading, back) in [
        (
            format!("{}/artifacts/acme/nothing", ui.url),
            "Not found",
            "/artifacts",
        ),
        (format!("{}/runs/nothing", ui.url), "Not found", "/runs"),
        (format!("{}/nowhere", ui.url), "Not found", "/artifacts"),
    ] {
        br.goto(&url).await;
        let h1 = br
            .client
            .find(fantoccini::Locator::Css("h1"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert_eq!(h1, heading, "{url}");
        br.client
            .find(fantoccini::Locator::Css("a.back"))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        until(
            &br,
            "the way back",
            &format!("return location.pathname === '{back}';"),
        )
        .await;
    }
    br.goto(&format!("{}/runs", broken.url)).await;
    let msg = br
        .client
        .find(fantoccini::Locator::Css(".error-message"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        msg.contains(bad_home.to_str().unwrap()) && msg.contains("cannot open the registry"),
        "{msg}"
    );
    br.close().await;
}

const INFER: &str =
    r#"{"inputs":[{"name":"input","shape":[1,4],"datatype":"FP32","data":[5.1,3.5,1.4,0.2]}]}"#;

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and chromium-driver: apt-get install chromium chromium-driver"]
async fn in_a_browser_the_serving_page_refreshes_live() {
    let (_dir, home) = fixture_copy();
    ok(&tensorlet(
        &home,
        &["promote", "acme/iris-model@0.1.0", "--to", "production"],
    ));
    let (child, public, admin) = serve(&home);
    let _serve = Killed(child);
    let br = Browser::start().await;
    br.goto(&format!("http://{admin}/serving")).await;
    until(
        &br,
        "the page's script",
        "return document.documentElement.classList.contains('js');",
    )
    .await;
    let cell = "document.querySelector('tr[data-key=\"iris-model@0.1.0\"] [data-field=requests]')";
    assert_eq!(br.js(&format!("return {cell}.textContent;")).await, "0");
    let public2 = public.clone();
    tokio::task::spawn_blocking(move || {
        for _ in 0..5 {
            let (status, body) = http(&public2, "POST", "/v2/models/iris-model/infer", INFER);
            assert_eq!(status, 200, "{body}");
        }
    })
    .await
    .unwrap();
    // Without reloading the page, the row counts the requests.
    br.js("window.notReloaded = true; return true;").await;
    until(
        &br,
        "the live count",
        &format!("return {cell}.textContent === '5';"),
    )
    .await;
    assert_eq!(br.js("return window.notReloaded === true;").await, true);
    let p50 = br
        .js("return document.querySelector('tr[data-key=\"iris-model@0.1.0\"] [data-field=p50]').textContent;")
        .await;
    assert!(
        p50.as_str().is_some_and(|t| t.ends_with('s') && t != "-"),
        "{p50}"
    );
    assert_eq!(br.errors().await, Vec::<String>::new());
    br.client.set_window_size(390, 844).await.unwrap();
    let fits = br
        .js("return document.documentElement.scrollWidth <= window.innerWidth + 1;")
        .await;
    assert_eq!(fits, true, "the serving page overflows at phone width");
    br.close().await;
}

/// Screenshots of the main pages at 1280 px and at phone width, into
/// `$TENSORLET_SCREENSHOTS` (bench/console-screenshots.sh points it at
/// docs/console/), or a temporary directory.
#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs chromium and chromium-driver: apt-get install chromium chromium-driver"]
async fn in_a_browser_screenshots_of_the_main_pages() {
    let (_dir, home) = fixture_copy();
    ok(&tensorlet(
        &home,
        &["promote", "acme/iris-model@0.1.0", "--to", "production"],
    ));
    ok(&tensorlet(
        &home,
        &["promote", "acme/iris-model@0.1.1", "--to", "production"],
    ));
    let f = fixture();
    let [a, b] = &f.runs;
    let tmp = tempfile::tempdir().unwrap();
    let out = std::env::var_os("TENSORLET_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&out).unwrap();
    let ui = Ui::start(&home);
    // A server with some traffic, for the serving page.
    let (child, public, admin) = serve(&home);
    let _serve = Killed(child);
    tokio::task::spawn_blocking(move || {
        for _ in 0..20 {
            assert_eq!(
                http(&public, "POST", "/v2/models/iris-model/infer", INFER).0,
                200
            );
        }
    })
    .await
    .unwrap();
    let br = Browser::start().await;
    let console = |p: &str| format!("{}{p}", ui.url);
    let shots = [
        ("artifacts", console("/artifacts")),
        ("artifact", console("/artifacts/acme/iris-model")),
        ("lineage", console("/lineage/acme/iris-model/0.1.1")),
        ("runs", console("/runs")),
        ("run", console(&format!("/runs/{a}"))),
        (
            "compare",
            console(&format!("/runs/compare?run={a}&run={b}")),
        ),
        ("datasets", console("/datasets/iris")),
        ("audit", console("/audit")),
        ("serving", format!("http://{admin}/serving")),
    ];
    for (width, height, suffix) in [(1280, 900, ""), (390, 844, "-phone")] {
        br.client.set_window_size(width, height).await.unwrap();
        for (name, url) in &shots {
            br.goto(url).await;
            until(
                &br,
                "the page's script",
                "return document.documentElement.classList.contains('js');",
            )
            .await;
            tokio::time::sleep(Duration::from_millis(200)).await;
            let png = br.client.screenshot().await.unwrap();
            assert!(png.starts_with(b"\x89PNG") && png.len() > 5000, "{name}");
            std::fs::write(out.join(format!("{name}{suffix}.png")), png).unwrap();
        }
    }
    br.close().await;
}
