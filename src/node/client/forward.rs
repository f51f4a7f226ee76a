//! Outbound HTTP requests from the loop to the coordinator's server API
//! (register, login, token verification): one short connection per request,
//! non-blocking connect, response parsed with `reactor::http`. It knows
//! nothing of what the answers mean; it never logs bodies (they hold
//! passwords and tokens).

use std::collections::HashMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use reactor::http::{self, ResponseParse};
use reactor::{CloseReason, ConnId, ConnOptions, Ctx, ServiceId};

use crate::node::OpId;

/// Coordinator answers larger than this are refused (ours are small).
const MAX_RESPONSE: usize = 4 * 1024 * 1024;

/// Where the server API lives, resolved once at start.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// `host:port` for the Host header.
    pub host: String,
    /// Path prefix from the URL (usually empty).
    pub prefix: String,
    /// The URL as configured, for messages.
    pub url: String,
}

impl Target {
    /// Parses `http://HOST:PORT[/prefix]` and resolves HOST (start-up only:
    /// name resolution blocks).
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            format!("coordinator API URL '{url}' must start with http:// (https is not supported)")
        })?;
        let (hostport, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if hostport.is_empty() {
            return Err(format!("coordinator API URL '{url}' has no host"));
        }
        let with_port = if hostport
            .rsplit_once(':')
            .is_some_and(|(_, p)| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
        {
            hostport.to_owned()
        } else {
            format!("{hostport}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve coordinator API address '{hostport}': {e}"))?
            .next()
            .ok_or_else(|| format!("coordinator API address '{hostport}' resolves to nothing"))?;
        Ok(Target {
            addr,
            host: hostport.to_owned(),
            prefix: prefix.to_owned(),
            url: url.to_owned(),
        })
    }
}

/// A finished request: the HTTP answer, or why there is none.
pub type ServerAnswer = Result<http::Response, String>;

struct Pending {
    op: OpId,
    request: Vec<u8>,
    done: bool,
}

pub struct Forwards {
    svc: ServiceId,
    target: Target,
    conns: HashMap<ConnId, Pending>,
}

impl Forwards {
    pub fn new(svc: ServiceId, target: Target) -> Forwards {
        Forwards {
            svc,
            target,
            conns: HashMap::new(),
        }
    }

    pub fn target(&self) -> &Target {
        &self.target
    }

    pub fn owns(&self, id: ConnId) -> bool {
        self.conns.contains_key(&id)
    }

    /// Starts `POST <prefix><path>` with a JSON body; the answer comes back
    /// through `on_input` or `on_close` tagged with `op`.
    pub fn post(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        path: &str,
        body: &[u8],
    ) -> Result<ConnId, String> {
        self.post_as(cx, op, path, body, None)
    }

    /// [`Forwards::post`] with `Authorization: Bearer <token>`.
    pub fn post_as(
        &mut self,
        cx: &mut Ctx,
        op: OpId,
        path: &str,
        body: &[u8],
        bearer: Option<&str>,
    ) -> Result<ConnId, String> {
        let opts = ConnOptions {
            max_input: MAX_RESPONSE + 64 * 1024,
            idle_timeout: Some(Duration::from_secs(15)),
            partial_timeout: Some(Duration::from_secs(15)),
            ..ConnOptions::default()
        };
        let id = cx
            .connect(self.target.addr, self.svc, opts)
            .map_err(|e| self.unreachable(&e.to_string()))?;
        let mut request = Vec::with_capacity(body.len() + 256);
        let full = format!("{}{}", self.target.prefix, path);
        let auth = bearer.map(|t| format!("Bearer {t}"));
        let mut headers = vec![("Connection", "close"), ("Accept", "application/json")];
        if let Some(a) = &auth {
            headers.push(("Authorization", a.as_str()));
        }
        http::write_request(
            &mut request,
            "POST",
            &self.target.host,
            &full,
            &headers,
            body,
        );
        self.conns.insert(
            id,
            Pending {
                op,
                request,
                done: false,
            },
        );
        Ok(id)
    }

    pub fn on_connect(&mut self, cx: &mut Ctx, id: ConnId) {
        if let Some(p) = self.conns.get_mut(&id) {
            cx.send_vec(id, std::mem::take(&mut p.request));
        }
    }

    /// A whole answer arrived: the op it belongs to and the answer.
    pub fn on_input(&mut self, cx: &mut Ctx, id: ConnId) -> Option<(OpId, ServerAnswer)> {
        let p = self.conns.get_mut(&id)?;
        if p.done {
            let n = cx.input(id).len();
            cx.consume(id, n);
            return None;
        }
        let out = match http::parse_response(cx.input(id), MAX_RESPONSE) {
            ResponseParse::Partial => return None,
            ResponseParse::Done(resp, _) => Ok(resp),
            ResponseParse::Error(e) => Err(format!(
                "the coordinator API at {} sent an unusable answer ({e})",
                self.target.url
            )),
        };
        p.done = true;
        let op = p.op;
        cx.close(id);
        Some((op, out))
    }

    /// The connection ended; if no answer came, the op learns why.
    pub fn on_close(&mut self, id: ConnId, why: &CloseReason) -> Option<(OpId, String)> {
        let p = self.conns.remove(&id)?;
        if p.done {
            return None;
        }
        let reason = match why {
            CloseReason::ConnectFailed(e) | CloseReason::Error(e) => crate::util::without_errno(e),
            CloseReason::Timeout => "no answer in time".to_owned(),
            CloseReason::PeerClosed => "it closed the connection without answering".to_owned(),
            CloseReason::Local | CloseReason::Shutdown => "the node is stopping".to_owned(),
        };
        Some((p.op, self.unreachable(&reason)))
    }

    fn unreachable(&self, reason: &str) -> String {
        format!(
            "The coordinator's server API at {} is unreachable: {reason}",
            self.target.url
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_api_urls() {
        let t = Target::parse("http://127.0.0.1:5500").unwrap();
        assert_eq!(t.addr, "127.0.0.1:5500".parse().unwrap());
        assert_eq!(t.host, "127.0.0.1:5500");
        assert_eq!(t.prefix, "");
        let t = Target::parse("http://127.0.0.1:81/base/").unwrap();
        assert_eq!(t.prefix, "/base");
        let t = Target::parse("http://127.0.0.1").unwrap();
        assert_eq!(t.addr.port(), 80);
        assert!(Target::parse("https://127.0.0.1:1").is_err());
        assert!(Target::parse("127.0.0.1:1").is_err());
        assert!(Target::parse("http://").is_err());
    }
}
