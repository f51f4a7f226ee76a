//! The node's client API as the command line calls it (`docs/client-api.md`):
//! which node (`--node` > `P2PSHARE_NODE` > the saved login > the default),
//! JSON requests with the saved token, and every way a call can fail turned
//! into an exit code and a sentence for people (`docs/cli.md`), never an OS
//! error number.

use std::time::{Duration, Instant};

use serde_json::Value;

use super::creds::{self, Creds};
use super::http::{self, Endpoint, Failed};
use super::{code, Failure};
use crate::config::Config;

/// Most answers come in milliseconds; /init and /fetch wait on the
/// coordinator, which the node gives up on well before this.
const TIMEOUT: Duration = Duration::from_secs(60);
/// How long a request that needs the coordinator is retried while the node
/// reconnects to it (the node retries at once when asked, and at most every
/// couple of seconds otherwise: `src/node/network/session.rs`).
const RECONNECT_GRACE: Duration = Duration::from_secs(4);

/// The node's default client API address (`--client-api-host` and
/// `--client-api-port` defaults).
pub fn default_node() -> String {
    let c = Config::default();
    format!("{}:{}", c.client_api_host, c.client_api_port)
}

/// Which node to talk to.
pub fn resolve_node(flag: Option<&str>, saved: Option<&Creds>) -> Result<Endpoint, Failure> {
    let env = std::env::var("P2PSHARE_NODE")
        .ok()
        .filter(|s| !s.trim().is_empty());
    let (given, from) = match (flag, env, saved) {
        (Some(f), _, _) => (f.to_owned(), "--node"),
        (None, Some(e), _) => (e, "P2PSHARE_NODE"),
        (None, None, Some(c)) => (c.node.clone(), "the saved login"),
        (None, None, None) => (default_node(), "the default"),
    };
    http::parse_endpoint(&given)
        .map_err(|e| Failure::new(code::USAGE, format!("{e} (from {from})")))
}

/// A node and, once logged in, the token to call it with.
pub struct Api {
    pub ep: Endpoint,
    pub token: Option<String>,
}

impl Api {
    /// For a logged-in command: the saved login, or exit 3.
    pub fn logged_in(node_flag: Option<&str>) -> Result<(Api, Creds), Failure> {
        let saved = creds::load().map_err(|e| Failure::new(code::AUTH, e))?;
        let Some(c) = saved else {
            return Err(Failure::new(
                code::AUTH,
                "you are not logged in: run `p2pshare login USERNAME` first",
            ));
        };
        let ep = resolve_node(node_flag, Some(&c))?;
        Ok((
            Api {
                ep,
                token: Some(c.token.clone()),
            },
            c,
        ))
    }

    /// One request; a transport failure is already a [`Failure`], any HTTP
    /// answer is returned with its JSON body (`Null` if it had none).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), Failure> {
        let bytes = body.map(|b| b.to_string().into_bytes());
        let full = format!("/api/client/{path}");
        match http::request(
            &self.ep,
            method,
            &full,
            self.token.as_deref(),
            bytes.as_deref(),
            TIMEOUT,
        ) {
            Ok(r) => {
                let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                // Every answer of the client API is a JSON object, and it
                // knows every path this command line asks for.
                let unknown_path = r.status == 404
                    && v.get("error")
                        .and_then(Value::as_str)
                        .is_some_and(|e| e.starts_with("No such endpoint"));
                if !v.is_object() || unknown_path {
                    return Err(self.not_a_node());
                }
                Ok((r.status, v))
            }
            Err(f) => Err(self.unreachable(f)),
        }
    }

    /// A request that must succeed (2xx): its body, or the failure it means.
    pub fn ok(&self, method: &str, path: &str, body: Option<&Value>) -> Result<Value, Failure> {
        let (status, v) = self.call(method, path, body)?;
        if (200..300).contains(&status) {
            Ok(v)
        } else {
            Err(failure(status, &v))
        }
    }

    /// Something answers HTTP there, but not as a node's client API does
    /// (the coordinator's port given by mistake, another web server).
    fn not_a_node(&self) -> Failure {
        Failure::error(format!(
            "{} is not a p2pshare node's client API — give --node the address `p2pshare up` prints as \"client api listening on\" (127.0.0.1:5501 by default)",
            self.ep.url()
        ))
    }

    /// Like [`Api::ok`], for a request that needs the coordinator.
    pub fn ok_linked(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Failure> {
        let (status, v) = self.call_linked(method, path, body)?;
        if (200..300).contains(&status) {
            Ok(v)
        } else {
            Err(failure(status, &v))
        }
    }

    /// Like [`Api::call`], for a request that needs the coordinator: while
    /// the node says it is unreachable (503, the node reconnecting), asks
    /// again for a few seconds — each ask makes the node retry at once.
    pub fn call_linked(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), Failure> {
        let until = Instant::now() + RECONNECT_GRACE;
        loop {
            let (status, v) = self.call(method, path, body)?;
            if status != 503 || Instant::now() >= until {
                return Ok((status, v));
            }
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    /// Starts (or finds) the user's session on the node: a peer port and
    /// REGISTER with the coordinator (`POST /init`, which answers at once
    /// when the session runs).
    pub fn join_network(&self) -> Result<Value, Failure> {
        self.ok("POST", "init", Some(&serde_json::json!({})))
    }

    fn unreachable(&self, f: Failed) -> Failure {
        let at = self.ep.authority();
        Failure::error(match f {
            Failed::NotRunning => format!(
                "node is not running at {at} — start it with `p2pshare up` (or point at it with --node)"
            ),
            Failed::Unresolved(_) => format!(
                "cannot find the node's host '{}' — check --node or P2PSHARE_NODE",
                self.ep.host
            ),
            Failed::TimedOut => format!(
                "the node at {at} did not answer in time — is it the p2pshare client API, and is it running?"
            ),
            Failed::Broken(why) => format!("the node at {at} did not answer properly: {why}"),
        })
    }
}

/// The error sentence of an answer (`{"error": …}`), or its status.
pub fn error_text(status: u16, v: &Value) -> String {
    match v.get("error").and_then(Value::as_str) {
        Some(e) if !e.is_empty() => without_os_numbers(e),
        _ => format!("the node answered HTTP {status}"),
    }
}

/// `text` without the ` (os error 111)` the node's messages may carry
/// from the system: the words before it already say what happened.
pub fn without_os_numbers(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(" (os error ") {
        let tail = &rest[i + " (os error ".len()..];
        let digits = tail.bytes().take_while(u8::is_ascii_digit).count();
        if digits > 0 && tail[digits..].starts_with(')') {
            out.push_str(&rest[..i]);
            rest = &tail[digits + 1..];
        } else {
            out.push_str(&rest[..i + 1]);
            rest = &rest[i + 1..];
        }
    }
    out.push_str(rest);
    out
}

/// What a non-2xx answer means for the exit code.
pub fn failure(status: u16, v: &Value) -> Failure {
    let text = error_text(status, v);
    match status {
        401 => Failure::new(
            code::AUTH,
            format!("the node refused your login ({text}) — run `p2pshare login` again"),
        ),
        404 => Failure::new(code::NOT_FOUND, text),
        409 if v.get("choices").is_some() => Failure::new(code::AMBIGUOUS, text),
        _ => Failure::error(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn answers_map_to_exit_codes() {
        let e = json!({"success": false, "error": "No peer on the network offers 'x'"});
        assert_eq!(failure(404, &e).code, code::NOT_FOUND);
        assert_eq!(failure(404, &e).msg, "No peer on the network offers 'x'");
        assert_eq!(failure(401, &e).code, code::AUTH);
        assert!(failure(401, &e).msg.contains("p2pshare login"));
        assert_eq!(failure(409, &json!({"choices": []})).code, code::AMBIGUOUS);
        assert_eq!(failure(409, &e).code, code::ERROR);
        assert_eq!(failure(500, &Value::Null).msg, "the node answered HTTP 500");
    }

    #[test]
    fn os_error_numbers_are_left_out() {
        assert_eq!(
            without_os_numbers(
                "cannot connect to 1.2.3.4:9000: Connection refused (os error 111); try again"
            ),
            "cannot connect to 1.2.3.4:9000: Connection refused; try again"
        );
        assert_eq!(
            without_os_numbers("a (os error x) b (os error 5)"),
            "a (os error x) b"
        );
        assert_eq!(without_os_numbers("plain"), "plain");
    }

    #[test]
    fn the_default_node_is_the_client_apis_default_address() {
        assert_eq!(default_node(), "127.0.0.1:5501");
    }
}
