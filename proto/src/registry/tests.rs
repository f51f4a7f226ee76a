use std::borrow::Cow;

use super::*;

#[test]
fn parses_every_action() {
    let r = decode_request(br#"{"action":"PUBLISH","data":{"hostname":"alice","fname":"a b.txt","size":10,"modified":1.5,"sha256":"00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"}}"#).unwrap();
    assert_eq!(r.action(), Action::Publish);
    let r = decode_request(br#"{"action":"LIST"}"#).unwrap();
    assert_eq!(
        r,
        Request::List {
            offset: None,
            limit: None,
            query: None
        }
    );
    let r = decode_request(br#"{"action":"LIST","data":{"offset":5,"limit":5000}}"#).unwrap();
    assert_eq!(
        r,
        Request::List {
            offset: Some(5),
            limit: Some(1000),
            query: None
        }
    );
    let r = decode_request(br#"{"data":{"hostname":"b\u00e9","state":"busy"},"action":"PING"}"#)
        .unwrap();
    assert_eq!(
        r,
        Request::Ping {
            hostname: Cow::Borrowed("bé"),
            state: Some(HeartbeatState::Busy)
        }
    );
    let r = decode_request(br#"{"action":"REGISTER","data":{"hostname":"h","port":6001,"files_metadata":{"x":{"size":1,"modified":2,"is_published":false}},"token":"t"}}"#).unwrap();
    match r {
        Request::Register { files, .. } => assert!(!files[0].1.is_published),
        other => panic!("{other:?}"),
    }
}

#[test]
fn request_takes_an_optional_sha256_and_publish_a_root() {
    let h = "ABCDEF".repeat(10) + "0123";
    let line = format!(r#"{{"action":"REQUEST","data":{{"fname":"x","sha256":"{h}"}}}}"#);
    match decode_request(line.as_bytes()).unwrap() {
        Request::Request { sha256, .. } => assert_eq!(sha256, Some(h.to_lowercase())),
        other => panic!("{other:?}"),
    }
    let line = format!(
        r#"{{"action":"PUBLISH","data":{{"hostname":"a","fname":"x","size":1,"modified":1,"root":"{h}"}}}}"#
    );
    match decode_request(line.as_bytes()).unwrap() {
        Request::Publish { meta, .. } => assert_eq!(meta.root, Some(h.to_lowercase())),
        other => panic!("{other:?}"),
    }
    let bad = r#"{"action":"PUBLISH","data":{"hostname":"a","fname":"x","size":1,"modified":1,"root":"zz"}}"#;
    assert!(decode_request(bad.as_bytes())
        .unwrap_err()
        .contains("invalid root"));
    let bad = r#"{"action":"REQUEST","data":{"fname":"x","sha256":7}}"#;
    assert!(decode_request(bad.as_bytes()).is_err());
    let bad = r#"{"action":"REGISTER","data":{"hostname":"h","port":1,"files_metadata":{"x":{"size":1,"modified":2,"root":"00"}}}}"#;
    assert!(decode_request(bad.as_bytes())
        .unwrap_err()
        .contains("invalid root"));
}

#[test]
fn refuses_bad_input_with_a_reason() {
    let err = |l: &[u8]| decode_request(l).unwrap_err();
    assert!(err(b"{nope").starts_with("invalid JSON"));
    assert!(err(b"\xff\xfe").contains("UTF-8"));
    assert!(err(br#"{"action":"FROB","data":{}}"#).contains("unknown action"));
    assert!(err(
        br#"{"action":"PUBLISH","data":{"hostname":"a","fname":"x","size":"10","modified":1}}"#
    )
    .contains("invalid type"));
    assert!(
        err(br#"{"action":"PUBLISH","data":{"hostname":"a","fname":"x","modified":1}}"#)
            .contains("size")
    );
    assert_eq!(
        err(br#"{"action":"REQUEST","data":{"fname":"../etc/passwd"}}"#),
        "invalid name"
    );
    assert_eq!(
        err(br#"{"action":"REQUEST","data":{"fname":".."}}"#),
        "invalid name"
    );
    assert_eq!(
        err(br#"{"action":"REQUEST","data":{"fname":"a\\b"}}"#),
        "invalid name"
    );
    assert!(err(br#"{"action":"LIST","data":{"offset":-1}}"#).contains("offset"));
    assert!(err(br#"{"action":"LIST","data":{"limit":0}}"#).contains("limit"));
    assert!(err(br#"{"action":"REQUEST"}"#).contains("data"));
}

#[test]
fn writes_numbers_like_json() {
    // Every digit count, at and beside each power of ten.
    let edges = (0..20).flat_map(|e| {
        let p = 10u64.pow(e);
        [p - 1, p, p + 1, p.saturating_mul(7) + 3]
    });
    for v in [0u64, 7, 65535, 1_699_267_200, u64::MAX]
        .into_iter()
        .chain(edges)
    {
        let mut out = Vec::new();
        push_u64(&mut out, v);
        assert_eq!(out, v.to_string().as_bytes());
    }
    for v in [0.0, -3.0, 1_699_267_200.0, 1.5, -0.25] {
        let mut out = Vec::new();
        push_f64(&mut out, v);
        let back: f64 = serde_json::from_slice(&out).unwrap();
        assert_eq!(back, v);
    }
}

#[test]
fn escapes_json_strings() {
    let mut out = Vec::new();
    push_json_str(&mut out, "a\"b\\c\n\u{1}é");
    let back: String = serde_json::from_slice(&out).unwrap();
    assert_eq!(back, "a\"b\\c\n\u{1}é");
}

fn meta(size: u64, sha: Option<&str>) -> FileMeta {
    FileMeta {
        size,
        modified: 1_699_267_200.5,
        published_at: Some(1_699_267_300.0),
        is_published: true,
        sha256: sha.map(str::to_owned),
        root: None,
    }
}

fn every_request() -> Vec<Request<'static>> {
    let sha = "ab".repeat(32);
    let mut with_root = meta(7, Some(&sha));
    with_root.root = Some("cd".repeat(32));
    let mut hidden = meta(1, None);
    hidden.is_published = false;
    hidden.published_at = None;
    vec![
        Request::Register {
            hostname: "alice".into(),
            port: 6001,
            ip: Some("192.168.1.4".into()),
            display_name: Some("Alice \"A\"".into()),
            files: vec![("a b.txt".into(), with_root), ("z".into(), hidden)],
            token: Some("t.o.k".into()),
        },
        Request::Register {
            hostname: "bé".into(),
            port: 1,
            ip: None,
            display_name: None,
            files: Vec::new(),
            token: None,
        },
        Request::Publish {
            hostname: "alice".into(),
            fname: "x \"y\" é".into(),
            meta: meta(10, Some(&sha)),
        },
        Request::Publish {
            hostname: "alice".into(),
            fname: "x".into(),
            meta: FileMeta {
                published_at: None,
                ..meta(0, None)
            },
        },
        Request::Unpublish {
            hostname: "alice".into(),
            fname: "x".into(),
        },
        Request::Request {
            fname: "x".into(),
            sha256: Some(sha.clone()),
        },
        Request::Request {
            fname: "x".into(),
            sha256: None,
        },
        Request::Discover {
            hostname: "bob".into(),
        },
        Request::Ping {
            hostname: "bob".into(),
            state: Some(HeartbeatState::Idle),
        },
        Request::Ping {
            hostname: "bob".into(),
            state: None,
        },
        Request::List {
            offset: None,
            limit: None,
            query: None,
        },
        Request::List {
            offset: Some(2000),
            limit: Some(1000),
            query: Some("q\"".into()),
        },
        Request::List {
            offset: None,
            limit: None,
            query: Some("".into()),
        },
        Request::Unregister {
            hostname: "bob".into(),
        },
    ]
}

fn every_reply() -> Vec<Reply<'static>> {
    let sha = "ef".repeat(32);
    let offer = |name: &str, online: bool| Offer {
        hostname: name.to_owned().into(),
        display_name: "Bob".into(),
        ip: "10.0.0.2".into(),
        port: 6002,
        size: 5,
        modified: 1.5,
        sha256: Some(sha.clone().into()),
        root: online.then(|| "01".repeat(32).into()),
        online,
    };
    let files = vec![
        ("a".to_string(), meta(1, None)),
        ("b\"".to_string(), meta(2, Some(&sha))),
    ];
    let listed = |name: &str, online: bool| ListedHost {
        head: HostHead::Fields {
            hostname: name.to_owned().into(),
            ip: "10.0.0.3".into(),
            port: 7000,
            display_name: "D".into(),
            files: files.clone(),
        },
        last_seen: 12.25,
        connected_at: 3.0,
        online,
    };
    vec![
        Reply::Ok,
        Reply::Ack,
        Reply::Alive,
        Reply::Dead,
        Reply::NotFound,
        Reply::Found(vec![offer("bob", true), offer("carol", false)]),
        Reply::Discover(Discovery {
            files: files
                .iter()
                .map(|(n, m)| (n.clone().into(), std::borrow::Cow::Owned(m.clone())))
                .collect(),
            ip: "10.0.0.2".into(),
            port: 6002,
            online: false,
        }),
        Reply::Discover(Discovery {
            files: Vec::new(),
            ip: "".into(),
            port: 0,
            online: true,
        }),
        Reply::List(Listing::Hosts {
            hosts: vec![listed("a", true), listed("b", false)],
            page: None,
        }),
        Reply::List(Listing::Hosts {
            hosts: vec![listed("a", true)],
            page: Some(Page {
                total: 2,
                next_offset: Some(1),
            }),
        }),
        Reply::List(Listing::Hosts {
            hosts: Vec::new(),
            page: Some(Page {
                total: 0,
                next_offset: None,
            }),
        }),
        Reply::Error("invalid name: \"x\"\n".into()),
    ]
}

#[test]
fn every_request_round_trips() {
    for req in every_request() {
        let line = req.line();
        assert_eq!(line.last(), Some(&b'\n'));
        let back = decode_request(&line[..line.len() - 1]).unwrap();
        assert_eq!(back, req, "{}", String::from_utf8_lossy(&line));
    }
}

#[test]
fn every_reply_round_trips() {
    for reply in every_reply() {
        let line = reply.line();
        let back = decode_reply(&line[..line.len() - 1]).unwrap();
        assert_eq!(back, reply, "{}", String::from_utf8_lossy(&line));
    }
}

#[test]
fn cached_heads_and_shared_lists_encode_like_typed_ones() {
    // The coordinator caches host heads and whole LIST lines; a client must
    // not be able to tell them from replies built field by field.
    let Reply::List(Listing::Hosts { hosts, page }) = every_reply().swap_remove(8) else {
        panic!("fixture order changed");
    };
    let typed = Reply::List(Listing::Hosts {
        hosts: hosts.clone(),
        page,
    })
    .line();
    let cached: Vec<ListedHost> = hosts
        .iter()
        .map(|h| {
            let HostHead::Fields {
                hostname,
                ip,
                port,
                display_name,
                files,
            } = &h.head
            else {
                panic!("typed fixture")
            };
            let mut head = Vec::new();
            HostHead::encode_fields(
                &mut head,
                hostname,
                ip,
                *port,
                display_name,
                files.iter().map(|(n, m)| (n.as_str(), m)),
            );
            ListedHost {
                head: HostHead::Encoded(head.into()),
                ..h.clone()
            }
        })
        .collect();
    let encoded = Reply::List(Listing::Hosts {
        hosts: cached,
        page,
    })
    .line();
    assert_eq!(encoded, typed);
    let shared = Reply::List(Listing::Shared(std::sync::Arc::new(typed.clone()))).line();
    assert_eq!(shared, typed);
}

/// Feeds `input` split at every offset through the reactor's line codec and
/// returns the frames each split yields.
fn frames_at_every_split(input: &[u8]) -> Vec<Vec<Vec<u8>>> {
    use reactor::line::{next_line, Line};
    (0..=input.len())
        .map(|cut| {
            let mut buf = Vec::new();
            let mut out = Vec::new();
            for part in [&input[..cut], &input[cut..]] {
                buf.extend_from_slice(part);
                while let Line::Complete(l, used) = next_line(&buf, MAX_LINE) {
                    out.push(l.to_vec());
                    buf.drain(..used);
                }
            }
            out
        })
        .collect()
}

#[test]
fn requests_decode_the_same_whatever_the_split() {
    let reqs = every_request();
    let stream: Vec<u8> = reqs.iter().flat_map(|r| r.line()).collect();
    for frames in frames_at_every_split(&stream) {
        let back: Vec<Request> = frames.iter().map(|l| decode_request(l).unwrap()).collect();
        assert_eq!(back, reqs);
    }
}

#[test]
fn replies_decode_the_same_whatever_the_split() {
    let replies = every_reply();
    let stream: Vec<u8> = replies.iter().flat_map(|r| r.line()).collect();
    for frames in frames_at_every_split(&stream) {
        let back: Vec<Reply> = frames.iter().map(|l| decode_reply(l).unwrap()).collect();
        assert_eq!(back, replies);
    }
}

#[test]
fn odd_replies_are_errors_or_defaults_never_panics() {
    assert!(decode_reply(b"").is_err());
    assert!(decode_reply(b"\xff").is_err());
    assert!(decode_reply(br#"{"status":"MAYBE"}"#).is_err());
    assert!(decode_reply(br#"{"status":"OK","files":{}}"#).is_err());
    assert!(decode_reply(br#"{"status":"FOUND","hosts":[{"hostname":"a"}]}"#).is_err());
    assert_eq!(
        decode_reply(br#"{"status":"ERROR"}"#).unwrap(),
        Reply::Error("no reason given".into())
    );
    // A seed coordinator: no display_name, no online; unpublished offers dropped.
    let r = decode_reply(
        br#"{"status":"FOUND","hosts":[{"hostname":"a","ip":"1.2.3.4","port":1,"size":3},{"hostname":"b","ip":"x","port":2,"size":3,"is_published":false}]}"#,
    )
    .unwrap();
    let Reply::Found(hosts) = r else { panic!() };
    assert_eq!(hosts.len(), 1);
    assert!(hosts[0].online);
    let r = decode_reply(br#"{"status":"OK","registry":{"h":{"addr":["1.2.3.4",5]}}}"#).unwrap();
    let Reply::List(Listing::Hosts { hosts, page: None }) = r else {
        panic!()
    };
    assert_eq!(
        hosts[0].head,
        HostHead::Fields {
            hostname: "h".into(),
            ip: "1.2.3.4".into(),
            port: 5,
            display_name: "h".into(),
            files: Vec::new()
        }
    );
}

#[test]
fn cut_or_garbled_lines_are_refused_never_panic() {
    // Whatever a peer sends decodes to a value or a reason: every truncation
    // of every valid line, and every single byte flipped.
    let lines: Vec<Vec<u8>> = every_request()
        .iter()
        .map(Request::line)
        .chain(every_reply().iter().map(Reply::line))
        .collect();
    for line in &lines {
        let line = &line[..line.len() - 1];
        for cut in 0..line.len() {
            let _ = decode_request(&line[..cut]);
            let _ = decode_reply(&line[..cut]);
        }
        for i in (0..line.len()).step_by(7) {
            let mut bad = line.to_vec();
            bad[i] ^= 0x80;
            let _ = decode_request(&bad);
            let _ = decode_reply(&bad);
        }
    }
}

#[test]
fn an_offer_of_stored_digest_bytes_encodes_as_its_hex_text() {
    let mut digest = [0u8; 32];
    for (i, b) in digest.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(37) ^ 0xa5;
    }
    let text: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    let offer = |sha256: Hex<'static>, root: Hex<'static>| Offer {
        hostname: "bob".into(),
        display_name: "Bob".into(),
        ip: "10.0.0.2".into(),
        port: 6002,
        size: 5,
        modified: 1.5,
        sha256: Some(sha256),
        root: Some(root),
        online: true,
    };
    let as_bytes = Reply::Found(vec![offer(Hex::Digest(digest), Hex::Digest(digest))]).line();
    let as_text = Reply::Found(vec![offer(text.clone().into(), text.clone().into())]).line();
    assert_eq!(as_bytes, as_text);
    assert_eq!(Hex::Digest(digest).to_text(), text);
    // And it decodes to the text form.
    let back = decode_reply(&as_bytes[..as_bytes.len() - 1]).expect("decodes");
    let Reply::Found(hosts) = back else {
        panic!("{back:?}")
    };
    assert_eq!(hosts[0].sha256.as_ref().map(Hex::to_text), Some(text));
}
