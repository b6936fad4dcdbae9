//! What keeps the console safe to open in a browser: response headers (a
//! content security policy that allows only the console's own scripts and
//! styles, no framing, no sniffing), loopback `Host` names on a loopback
//! console (against DNS rebinding), and the checks every action passes
//! (allowed here, this process's token, not cross-site).

use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tensorlet_runtime::registry::{NODE_KEY, Registry};

use crate::Console;
use crate::error::{ConsoleError, Result};

/// The content security policy of every page: the console's own scripts,
/// styles and data only.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// 32 random bytes as hex: the token forms carry to act.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    getrandom::fill(&mut b).expect("the OS random number generator");
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Whether `host` (a `Host` header: name or address, optional port) names
/// this machine's loopback.
fn is_loopback_host(host: &str) -> bool {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        host.rsplit_once(':').map_or(host, |(h, _)| h)
    };
    name.eq_ignore_ascii_case("localhost")
        || name
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Refuses non-loopback `Host` names on a loopback console; adds the
/// security headers to every response.
pub async fn guard(loopback: bool, req: Request, next: Next) -> Response {
    if loopback {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        if !host.is_empty() && !is_loopback_host(host) {
            let mut r = (
                StatusCode::MISDIRECTED_REQUEST,
                format!(
                    "this console listens on loopback and answers only loopback names, not `{host}`"
                ),
            )
                .into_response();
            secure(r.headers_mut());
            return r;
        }
    }
    let mut r = next.run(req).await;
    secure(r.headers_mut());
    r
}

fn secure(h: &mut HeaderMap) {
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
}

/// Whether actions are offered, and if not, why.
#[derive(Clone, Debug)]
pub struct Actions {
    /// The token to put in forms, when actions are offered.
    pub token: Option<String>,
    /// Why actions are not offered (empty when they are).
    pub reason: String,
}

impl Actions {
    /// Whether the forms are shown.
    pub fn enabled(&self) -> bool {
        self.token.is_some()
    }

    /// The token (empty when actions are off).
    pub fn token(&self) -> &str {
        self.token.as_deref().unwrap_or("")
    }
}

/// The person's signing keys in the home (every key but the node's).
fn personal_keys(reg: &Registry) -> Vec<String> {
    reg.keys()
        .list()
        .unwrap_or_default()
        .into_iter()
        .filter(|k| k != NODE_KEY)
        .collect()
}

/// Decides whether this console offers actions on `reg` now.
pub fn actions(console: &Console, reg: &Registry) -> Actions {
    let off = |reason: String| Actions {
        token: None,
        reason,
    };
    let c = console.config();
    if c.remote.is_some() {
        return off(
            "Actions are off: the artifacts shown are a remote registry's, which the console \
             does not change."
                .into(),
        );
    }
    if !c.addr.ip().is_loopback() && !c.allow_remote_actions {
        return off(format!(
            "Actions are off: this console listens on {}, not on loopback (start it with \
             --allow-remote-actions to act from other machines).",
            c.addr
        ));
    }
    if personal_keys(reg).is_empty() {
        return off(format!(
            "Actions are off: {} holds no signing key of yours (`tensorlet keygen <name>` \
             creates one).",
            c.home.display()
        ));
    }
    Actions {
        token: Some(console.token().to_string()),
        reason: String::new(),
    }
}

/// Checks an action request: actions are offered, the form's token is this
/// process's, and the browser does not say it came from another site.
pub fn check_action(
    console: &Console,
    reg: &Registry,
    headers: &HeaderMap,
    token: Option<&str>,
) -> Result<()> {
    let allowed = actions(console, reg);
    if !allowed.enabled() {
        return Err(ConsoleError::Forbidden(allowed.reason));
    }
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(site) = header("sec-fetch-site")
        && site != "same-origin"
        && site != "none"
    {
        return Err(ConsoleError::Forbidden(format!(
            "a cross-site request ({site}) cannot act on this console"
        )));
    }
    if let Some(origin) = header("origin") {
        let host = header("host").unwrap_or("");
        let same = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .is_some_and(|o| o.eq_ignore_ascii_case(host));
        if !same {
            return Err(ConsoleError::Forbidden(format!(
                "a request from {origin} cannot act on this console"
            )));
        }
    }
    let expected = console.token().as_bytes();
    let given = token.unwrap_or("").as_bytes();
    let same = given.len() == expected.len()
        && given
            .iter()
            .zip(expected)
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if !same {
        return Err(ConsoleError::Forbidden(
            "the form's token is not this console's (it was restarted, or the form came from \
             elsewhere); reload the page and try again"
                .into(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "127.0.0.1:7080",
            "localhost:1",
            "LOCALHOST",
            "[::1]:80",
            "127.3.2.1",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "evil.example:7080",
            "10.0.0.1:7080",
            "[fe80::1]:80",
            "localhost.evil",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    #[test]
    fn tokens_are_random_hex() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert_ne!(a, b);
    }
}
