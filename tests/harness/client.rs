//! A node's client API as the tests use it: accounts, sessions, files
//! added and published, fetches followed to their end.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};

use super::peer::PeerConn;
use super::proc::Node;
use super::{http_json, wait_for, wait_until, PASSWORD};

/// A logged-in user of a node, with its peer listener.
pub struct User {
    pub name: String,
    pub hostname: String,
    pub token: String,
    pub peer: SocketAddr,
}

impl Node {
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        http_json(self.api, method, path, token, body)
    }

    /// Registers (or logs in, if taken) `username`, returning its token.
    pub fn login(&self, username: &str, display_name: &str) -> String {
        let (s, v) = self.call(
            "POST",
            "/api/client/register",
            None,
            Some(json!({"username": username, "password": PASSWORD, "display_name": display_name})),
        );
        if s == 200 || s == 201 {
            return v["token"].as_str().expect("token").to_owned();
        }
        let (s, v) = self.call(
            "POST",
            "/api/client/login",
            None,
            Some(json!({"username": username, "password": PASSWORD})),
        );
        assert_eq!(s, 200, "login {username}: {v}");
        v["token"].as_str().expect("token").to_owned()
    }

    /// Login plus /init; returns (token, peer port).
    pub fn session(&self, username: &str, display_name: &str) -> (String, u16) {
        let u = self.user_named(username, display_name);
        (u.token, u.peer.port())
    }

    /// Login plus /init for `name` (also its display name).
    pub fn user(&self, name: &str) -> User {
        self.user_named(name, name)
    }

    fn user_named(&self, name: &str, display_name: &str) -> User {
        let token = self.login(name, display_name);
        let (s, v) = self.call("POST", "/api/client/init", Some(&token), Some(json!({})));
        assert_eq!(s, 200, "init {name}: {v}");
        let port = v["client"]["port"].as_u64().expect("peer port") as u16;
        let hostname = v["client"]["hostname"].as_str().unwrap_or(name).to_string();
        User {
            name: name.into(),
            hostname,
            token,
            peer: SocketAddr::new([127, 0, 0, 1].into(), port),
        }
    }

    /// Waits until `name` is hashed (publishable), returning its entry.
    pub fn wait_hashed(&self, token: &str, name: &str) -> Value {
        wait_for(&format!("{name} hashed"), || {
            let (s, v) = self.call("GET", "/api/client/local-files", Some(token), None);
            assert_eq!(s, 200, "{v}");
            v["files"]
                .as_array()?
                .iter()
                .find(|f| f["name"] == name && f["sha256"].is_string())
                .cloned()
        })
    }

    /// add-file + wait for the hash + publish (must succeed).
    pub fn add_and_publish(&self, token: &str, path: &Path) -> String {
        let (s, v) = self.call(
            "POST",
            "/api/client/add-file",
            Some(token),
            Some(json!({"path": path})),
        );
        assert_eq!(s, 200, "add-file: {v}");
        let name = v["file"]["name"].as_str().expect("name").to_owned();
        self.wait_hashed(token, &name);
        let (s, v) = self.call(
            "POST",
            "/api/client/publish",
            Some(token),
            Some(json!({"fname": name})),
        );
        assert_eq!(s, 200, "publish: {v}");
        name
    }

    /// Tracks and publishes `path` for `u` (forced), and waits until its
    /// peer answers INFO for it (the hash is computed in the background).
    pub fn publish(&self, u: &User, path: &Path) -> String {
        let (s, v) = self.call(
            "POST",
            "/api/client/add-file",
            Some(&u.token),
            Some(json!({"path": path})),
        );
        assert_eq!(s, 200, "add-file: {v}");
        let fname = path
            .file_name()
            .expect("a file name")
            .to_string_lossy()
            .into_owned();
        // The node refuses to publish until it has hashed the file.
        wait_until("publish after hashing", Duration::from_secs(60), || {
            let (s, v) = self.call(
                "POST",
                "/api/client/publish",
                Some(&u.token),
                Some(json!({"fname": fname, "force": true})),
            );
            assert!(
                s == 200 || (s == 409 && v["hashing"] == true),
                "publish: {s} {v}"
            );
            (s == 200).then_some(())
        });
        wait_until("INFO answered", Duration::from_secs(60), || {
            let mut c = PeerConn::connect(u.peer);
            c.send(format!("INFO {fname}\n").as_bytes());
            c.line().starts_with("INFO ").then_some(())
        });
        fname
    }

    /// Starts a fetch; returns its id.
    pub fn fetch(&self, u: &User, body: Value) -> String {
        let (s, v) = self.call("POST", "/api/client/fetch", Some(&u.token), Some(body));
        assert_eq!(s, 200, "fetch: {v}");
        v["fetch_id"].as_str().expect("fetch_id").to_string()
    }

    pub fn progress(&self, u: &User, id: &str) -> Value {
        let (s, v) = self.call(
            "GET",
            &format!("/api/client/fetch-progress/{id}"),
            Some(&u.token),
            None,
        );
        assert_eq!(s, 200, "progress: {v}");
        v
    }

    /// Polls the fetch until `done(progress)` holds; panics after `secs`.
    pub fn wait_fetch(
        &self,
        u: &User,
        id: &str,
        secs: u64,
        done: impl Fn(&Value) -> bool,
    ) -> Value {
        wait_until(
            &format!("fetch {id} to reach the state"),
            Duration::from_secs(secs),
            || {
                let p = self.progress(u, id);
                done(&p).then_some(p)
            },
        )
    }

    /// Polls until the fetch has a final status.
    pub fn wait_final(&self, u: &User, id: &str, secs: u64) -> Value {
        self.wait_fetch(u, id, secs, |p| {
            matches!(
                p["status"].as_str(),
                Some("completed" | "failed" | "cancelled")
            )
        })
    }
}
