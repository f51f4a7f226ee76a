//! The registry protocol (`docs/registry-protocol.md`) through the real binary: every action,
//! identity binding, liveness and paging.

mod harness;

use harness::*;
use serde_json::json;

fn sha(c: char) -> String {
    std::iter::repeat_n(c, 64).collect()
}

#[test]
fn every_action_succeeds_and_fails_as_specified() {
    let c = Coordinator::start();
    let mut a = c.reg();
    let mut other = c.reg();

    // Without registering, writes are refused.
    let r = a.req(
        "PUBLISH",
        json!({"hostname":"alice","fname":"x","size":1,"modified":1}),
    );
    assert_eq!(r, json!({"status":"ERROR","reason":"not registered"}));
    let r = a.req("UNREGISTER", json!({"hostname":"alice"}));
    assert_eq!(r["reason"], "not registered");

    // REGISTER with files: only published ones are offered.
    let r = a.req(
        "REGISTER",
        json!({"hostname":"alice","port":6100,"ip":"127.0.0.1","display_name":"Alice A",
               "files_metadata":{"kept.txt":{"size":5,"modified":10.5,"is_published":true,"sha256":sha('a')},
                                 "private.txt":{"size":7,"modified":11,"is_published":false}},
               "token": token("alice")}),
    );
    assert_eq!(r, json!({"status":"OK"}));

    let r = a.req("PUBLISH", json!({"hostname":"alice","fname":"report 2025 – é.pdf","size":2048,"modified":1699267200,"published_at":1699267400}));
    assert_eq!(r, json!({"status":"ACK"}));

    let r = other.req("REQUEST", json!({"fname":"report 2025 – é.pdf"}));
    assert_eq!(r["status"], "FOUND");
    let h = &r["hosts"][0];
    assert_eq!(h["hostname"], "alice");
    // The display name is the account's (none here: the hostname), never
    // the one REGISTER claims.
    assert_eq!(h["display_name"], "alice");
    assert_eq!(h["ip"], "127.0.0.1");
    assert_eq!(h["port"], 6100);
    assert_eq!(h["size"], 2048);
    assert_eq!(h["is_published"], true);

    assert_eq!(
        other.req("REQUEST", json!({"fname":"private.txt"})),
        json!({"status":"NOTFOUND","hosts":[]})
    );
    assert_eq!(
        other.req("REQUEST", json!({"fname":"nope"})),
        json!({"status":"NOTFOUND","hosts":[]})
    );
    assert_eq!(
        other.req("REQUEST", json!({"fname":"kept.txt"}))["hosts"][0]["sha256"],
        sha('a')
    );

    let r = other.req("DISCOVER", json!({"hostname":"alice"}));
    assert_eq!(r["status"], "OK");
    assert_eq!(r["addr"], json!(["127.0.0.1", 6100]));
    let files = r["files"].as_object().unwrap();
    assert!(files.contains_key("kept.txt") && files.contains_key("report 2025 – é.pdf"));
    assert!(
        !files.contains_key("private.txt"),
        "unpublished files are not discovered"
    );
    assert_eq!(
        other.req("DISCOVER", json!({"hostname":"ghost"})),
        json!({"status":"ERROR","reason":"unknown host"})
    );

    assert_eq!(
        other.req("PING", json!({"hostname":"alice"})),
        json!({"status":"ALIVE"})
    );
    assert_eq!(
        other.req("PING", json!({"hostname":"ghost"})),
        json!({"status":"DEAD"})
    );
    assert_eq!(
        a.req("PING", json!({"hostname":"alice","state":"busy"})),
        json!({"status":"ALIVE"})
    );

    let r = other.req("LIST", json!(null));
    let reg = &r["registry"]["alice"];
    assert_eq!(reg["addr"], json!(["127.0.0.1", 6100]));
    assert_eq!(reg["display_name"], "alice");
    assert!(reg["last_seen"].as_f64().unwrap() > 1.0e9);
    assert!(reg["connected_at"].as_f64().unwrap() > 1.0e9);
    assert_eq!(reg["files"].as_object().unwrap().len(), 2);

    assert_eq!(
        a.req("UNPUBLISH", json!({"hostname":"alice","fname":"kept.txt"})),
        json!({"status":"ACK"})
    );
    assert_eq!(
        other.req("REQUEST", json!({"fname":"kept.txt"}))["status"],
        "NOTFOUND"
    );
    assert_eq!(
        a.req("UNPUBLISH", json!({"hostname":"alice","fname":"never.txt"})),
        json!({"status":"ERROR","reason":"file not found"})
    );

    assert_eq!(
        a.req("UNREGISTER", json!({"hostname":"alice"})),
        json!({"status":"OK"})
    );
    assert_eq!(
        other.req("DISCOVER", json!({"hostname":"alice"}))["reason"],
        "unknown host"
    );
    assert_eq!(
        other.req("REQUEST", json!({"fname":"report 2025 – é.pdf"}))["status"],
        "NOTFOUND"
    );
}

#[test]
fn a_token_for_alice_cannot_act_as_bob() {
    let c = Coordinator::start();
    let mut bob = c.reg();
    assert_eq!(bob.register("bob")["status"], "OK");
    assert_eq!(
        bob.req(
            "PUBLISH",
            json!({"hostname":"bob","fname":"b.txt","size":1,"modified":1})
        )["status"],
        "ACK"
    );

    let mut alice = c.reg();
    // A token whose subject is alice cannot register as bob.
    let r = alice.req(
        "REGISTER",
        json!({"hostname":"bob","port":1,"token":token("alice")}),
    );
    assert_eq!(r, json!({"status":"ERROR","reason":"forbidden"}));
    assert_eq!(alice.register("alice")["status"], "OK");
    for (action, data) in [
        ("UNPUBLISH", json!({"hostname":"bob","fname":"b.txt"})),
        ("UNREGISTER", json!({"hostname":"bob"})),
        (
            "PUBLISH",
            json!({"hostname":"bob","fname":"evil.txt","size":1,"modified":1}),
        ),
        (
            "REGISTER",
            json!({"hostname":"bob","port":1,"token":token("bob")}),
        ),
    ] {
        assert_eq!(
            alice.req(action, data),
            json!({"status":"ERROR","reason":"forbidden"}),
            "{action}"
        );
    }
    // Nothing changed for bob.
    let r = alice.req("DISCOVER", json!({"hostname":"bob"}));
    assert_eq!(
        r["files"].as_object().unwrap().keys().collect::<Vec<_>>(),
        vec!["b.txt"]
    );
    assert_eq!(
        alice.req("PING", json!({"hostname":"bob"}))["status"],
        "ALIVE"
    );
}

#[test]
fn bad_tokens_are_unauthorized() {
    let c = Coordinator::start();
    let mut r = c.reg();
    let good = token("alice");
    let mut parts: Vec<String> = good.split('.').map(String::from).collect();
    // Tampered payload: sub changed, signature kept.
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let payload = format!(
        r#"{{"sub":"alice","role":"admin","iat":{},"exp":{}}}"#,
        now(),
        now() + 3600
    );
    parts[1] = b64.encode(payload);
    let tampered = parts.join(".");
    let none_header = b64.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!(
        "{}.{}.",
        none_header,
        b64.encode(format!(
            r#"{{"sub":"alice","role":"user","iat":1,"exp":{}}}"#,
            now() + 3600
        ))
    );
    let expired = token_exp("alice", now() - 10);
    let wrong_secret = p2pshare::auth::jwt::sign(
        b"another secret",
        &p2pshare::auth::jwt::Claims {
            sub: "alice".into(),
            role: "user".into(),
            iat: now(),
            exp: now() + 3600,
        },
    );
    for (what, t) in [
        ("tampered", tampered),
        ("alg none", alg_none),
        ("expired", expired),
        ("wrong secret", wrong_secret),
        ("garbage", "x.y.z".into()),
    ] {
        let v = r.req("REGISTER", json!({"hostname":"alice","port":1,"token":t}));
        assert_eq!(
            v,
            json!({"status":"ERROR","reason":"unauthorized"}),
            "{what}"
        );
    }
    let v = r.req("REGISTER", json!({"hostname":"alice","port":1}));
    assert_eq!(v["reason"], "unauthorized", "no token");
    // The same connection still works with a good token.
    assert_eq!(
        r.req(
            "REGISTER",
            json!({"hostname":"alice","port":1,"token":good})
        )["status"],
        "OK"
    );
}

#[test]
fn anonymous_mode_accepts_seed_style_clients() {
    let c = Coordinator::start_with(&["--allow-anonymous"], &[]);
    let mut r = c.reg();
    assert_eq!(
        r.req("REGISTER", json!({"hostname":"seed","port":6001}))["status"],
        "OK"
    );
    drop(r);
    // A seed client opens a connection per request, naming itself.
    let mut r2 = c.reg();
    assert_eq!(
        r2.req(
            "PUBLISH",
            json!({"hostname":"seed","fname":"f","size":1,"modified":1})
        )["status"],
        "ACK"
    );
    assert_eq!(
        r2.req("PING", json!({"hostname":"seed"}))["status"],
        "ALIVE",
        "closing does not mark anonymous hosts offline"
    );
}

#[test]
fn closing_marks_offline_and_offline_hosts_come_last() {
    let c = Coordinator::start();
    let mut a = c.reg();
    a.register("a-host");
    a.req(
        "PUBLISH",
        json!({"hostname":"a-host","fname":"same.bin","size":9,"modified":1}),
    );
    let mut b = c.reg();
    b.register("b-host");
    b.req(
        "PUBLISH",
        json!({"hostname":"b-host","fname":"same.bin","size":9,"modified":1}),
    );
    let mut q = c.reg();
    // a-host goes away without UNREGISTER.
    drop(a);
    // "At once": as soon as the coordinator reads the close (2 s at most).
    wait_until(
        "a closed connection to mark its host offline",
        std::time::Duration::from_secs(2),
        || (q.req("PING", json!({"hostname":"a-host"}))["status"] == "DEAD").then_some(()),
    );
    let r = q.req("REQUEST", json!({"fname":"same.bin"}));
    let hosts = r["hosts"].as_array().unwrap();
    assert_eq!(hosts.len(), 2, "offline hosts are kept");
    assert_eq!(
        hosts[0]["hostname"], "b-host",
        "online hosts are offered first"
    );
    assert_eq!(hosts[1]["online"], false);
    assert_eq!(
        q.req("LIST", json!(null))["registry"]["a-host"]["online"],
        false
    );
}

#[test]
fn the_sweep_removes_inactive_hosts() {
    let c = Coordinator::start_with(
        &[],
        &[
            ("CLIENT_INACTIVE_TIMEOUT", "1"),
            ("CLIENT_CLEANUP_INTERVAL", "0.2"),
        ],
    );
    let mut a = c.reg();
    a.register("quiet");
    let mut q = c.reg();
    assert_eq!(
        q.req("DISCOVER", json!({"hostname":"quiet"}))["status"],
        "OK"
    );
    // Inactive for 1 s, swept every 0.2 s: gone well within 10 s.
    let v = wait_until(
        "the sweep to remove quiet",
        std::time::Duration::from_secs(10),
        || {
            let v = q.req("DISCOVER", json!({"hostname":"quiet"}));
            (v["status"] != "OK").then_some(v)
        },
    );
    assert_eq!(v["reason"], "unknown host");
    // The swept connection is no longer registered.
    assert_eq!(
        a.req(
            "PUBLISH",
            json!({"hostname":"quiet","fname":"f","size":1,"modified":1})
        )["reason"],
        "not registered"
    );
}

#[test]
fn list_pages_in_hostname_order_with_query() {
    let c = Coordinator::start();
    let mut conns = Vec::new();
    for i in (0..30).rev() {
        let mut r = c.reg();
        let name = format!("host{i:02}");
        r.register(&name);
        r.req("PUBLISH", json!({"hostname":name,"fname":format!("file-{}.txt", if i % 3 == 0 {"fizz"} else {"plain"}),"size":1,"modified":1}));
        conns.push(r);
    }
    let mut q = c.reg();
    let full = q.req("LIST", json!(null));
    assert_eq!(full["registry"].as_object().unwrap().len(), 30);
    assert!(
        full.get("total").is_none(),
        "an unpaged LIST is the seed's shape"
    );

    let mut seen = Vec::new();
    let mut offset = Some(0u64);
    while let Some(o) = offset {
        let p = q.req("LIST", json!({"offset": o, "limit": 7}));
        assert_eq!(p["total"], 30);
        seen.extend(p["registry"].as_object().unwrap().keys().cloned());
        offset = p["next_offset"].as_u64();
    }
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(seen, sorted, "pages are in hostname order");
    assert_eq!(seen.len(), 30);

    let p = q.req("LIST", json!({"query": "FIZZ", "limit": 100}));
    assert_eq!(
        p["total"], 10,
        "query matches file names, case-insensitively"
    );
    let p = q.req("LIST", json!({"limit": 5000}));
    assert_eq!(
        p["registry"].as_object().unwrap().len(),
        30,
        "limit above 1000 is taken as 1000"
    );
    for bad in [
        json!({"limit": 0}),
        json!({"offset": -1}),
        json!({"limit": "5"}),
    ] {
        assert_eq!(q.req("LIST", bad.clone())["status"], "ERROR", "{bad}");
    }
}

#[test]
fn a_full_list_built_off_the_loop_keeps_answer_order_and_sees_changes() {
    let c = Coordinator::start();
    let mut a = c.reg();
    let mut b = c.reg();
    // In one write: a change, a full LIST that must show it, then a PING.
    let mut batch = String::new();
    for (action, data) in [
        (
            "REGISTER",
            json!({"hostname":"lister","port":7,"token":token("lister")}),
        ),
        (
            "PUBLISH",
            json!({"hostname":"lister","fname":"fresh.txt","size":3,"modified":1}),
        ),
        ("LIST", json!(null)),
        ("PING", json!({"hostname":"lister"})),
    ] {
        batch.push_str(&(json!({"action":action,"data":data}).to_string() + "\n"));
    }
    a.send_raw(batch.as_bytes());
    b.send_raw(
        b"{\"action\":\"LIST\"}\n{\"action\":\"PING\",\"data\":{\"hostname\":\"nobody\"}}\n",
    );
    assert_eq!(a.line().unwrap()["status"], "OK");
    assert_eq!(a.line().unwrap()["status"], "ACK");
    let list = a.line().unwrap();
    assert_eq!(
        list["registry"]["lister"]["files"]["fresh.txt"]["size"], 3,
        "{list}"
    );
    assert_eq!(a.line().unwrap()["status"], "ALIVE");
    assert_eq!(b.line().unwrap()["status"], "OK");
    assert_eq!(b.line().unwrap()["status"], "DEAD");
    // A change after the snapshot shows in the next LIST.
    a.req(
        "UNPUBLISH",
        json!({"hostname":"lister","fname":"fresh.txt"}),
    );
    let list = b.req("LIST", json!(null));
    assert!(
        list["registry"]["lister"]["files"]
            .as_object()
            .unwrap()
            .is_empty(),
        "{list}"
    );
}

/// A PING with a state changes only the sender's own state: naming its own
/// host takes the bound record without a lookup, naming another host must
/// still leave that host's state alone (and answers whether it is alive).
#[test]
fn a_ping_sets_only_its_own_hosts_state() {
    let c = Coordinator::start();
    let admin = c.admin_token();
    let mut bob = c.reg();
    assert_eq!(bob.register("bob")["status"], "OK");
    assert_eq!(
        bob.req("PING", json!({"hostname":"bob","state":"idle"}))["status"],
        "ALIVE"
    );
    let mut alice = c.reg();
    assert_eq!(alice.register("alice")["status"], "OK");
    assert_eq!(
        alice.req("PING", json!({"hostname":"bob","state":"busy"}))["status"],
        "ALIVE"
    );
    assert_eq!(
        alice.req("PING", json!({"hostname":"alice","state":"active"}))["status"],
        "ALIVE"
    );
    assert_eq!(
        alice.req("PING", json!({"hostname":"nobody","state":"busy"}))["status"],
        "DEAD"
    );
    let (s, v) = c.call("GET", "/api/admin/registry", Some(&admin), None);
    assert_eq!(s, 200, "{v}");
    let state = |name: &str| {
        v["clients"]
            .as_array()
            .unwrap()
            .iter()
            .find(|h| h["hostname"] == name)
            .map(|h| h["state"].clone())
    };
    assert_eq!(state("bob"), Some(json!("idle")), "{v}");
    assert_eq!(state("alice"), Some(json!("active")), "{v}");
}
