//! The registry's index, lists and queries, against scans of the same hosts.

use super::*;

fn meta(size: u64) -> FileMeta {
    FileMeta {
        size,
        modified: 1.0,
        published_at: None,
        is_published: true,
        sha256: None,
        root: None,
    }
}

#[test]
fn index_follows_publish_unpublish_and_removal() {
    let mut r = Registry::default();
    let a = r.register(
        "alice",
        "",
        "1.2.3.4",
        6001,
        vec![("x".into(), meta(1))],
        None,
        1.0,
    );
    let b = r.register("bob", "Bob", "1.2.3.5", 6002, vec![], None, 1.0);
    r.publish(b, "x", meta(1));
    let out = r.request_reply("x", None).line();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["hosts"].as_array().unwrap().len(), 2);
    r.set_offline(a);
    let out = r.request_reply("x", None).line();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["hosts"][0]["hostname"], "bob", "online hosts first");
    assert!(r.unpublish(b, "x"));
    assert!(!r.unpublish(b, "nope"));
    r.remove(a);
    let out = r.request_reply("x", None).line();
    assert!(out.starts_with(b"{\"status\":\"NOTFOUND\""));
    assert_eq!(r.published_count(), 0);
}

#[test]
fn query_pages_stay_right_while_hosts_churn() {
    let mut r = Registry::default();
    let mut keys = Vec::new();
    for i in 0..200u32 {
        let files = vec![(
            format!("{}-{i}", if i % 2 == 0 { "even" } else { "odd" }),
            meta(1),
        )];
        keys.push(r.register(
            &format!("h{:03}", (i * 37) % 200),
            "",
            "ip",
            1,
            files,
            None,
            1.0,
        ));
    }
    let names = |r: &mut Registry, q: &str| -> Vec<String> {
        let (ks, total, _) = r.page(0, 1000, Some(q));
        assert_eq!(ks.len() as u64, total);
        ks.iter()
            .map(|k| r.get(*k).unwrap().name.to_string())
            .collect()
    };
    let brute = |r: &Registry, q: &str| -> Vec<String> {
        let mut v: Vec<String> = (0..r.hosts.capacity())
            .filter_map(|k| r.hosts.get(k))
            .filter(|h| h.matches(q))
            .map(|h| h.name.to_string())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(&mut r, "even"), brute(&r, "even"));
    // Churn: removals, new hosts, publishes and unpublishes.
    for (i, k) in keys.iter().enumerate().step_by(3) {
        r.remove(*k);
        if i % 2 == 0 {
            r.register(
                &format!("new{i}"),
                "",
                "ip",
                1,
                vec![(format!("even-new-{i}"), meta(1))],
                None,
                2.0,
            );
        }
    }
    for k in keys.iter().skip(1).step_by(3).copied() {
        r.publish(k, "even-late", meta(2));
    }
    for k in keys.iter().skip(2).step_by(6).copied() {
        r.unpublish(k, &format!("even-{}", 0));
    }
    assert_eq!(names(&mut r, "even"), brute(&r, "even"));
    assert_eq!(names(&mut r, "odd"), brute(&r, "odd"));
    let (all, total, _) = r.page(0, 1000, None);
    assert_eq!(total as usize, r.len());
    let mut sorted: Vec<String> = all
        .iter()
        .map(|k| r.get(*k).unwrap().name.to_string())
        .collect();
    let copy = sorted.clone();
    sorted.sort();
    assert_eq!(copy, sorted);
}

#[test]
fn a_query_collected_in_steps_while_hosts_change_matches_a_scan() {
    let mut r = Registry::default();
    let mut keys = Vec::new();
    for i in 0..3000 {
        let tag = if i % 3 == 0 { "fizz" } else { "buzz" };
        let files = vec![(format!("{tag}-{i}"), meta(1))];
        keys.push(r.register(&format!("h{i:05}"), "", "ip", 1, files, None, 1.0));
    }
    let mut steps = 0;
    while !r.query_step("fizz", std::time::Duration::ZERO) {
        assert!(
            !r.query_step("other", std::time::Duration::ZERO),
            "one at a time"
        );
        steps += 1;
        let i = (steps * 251) % 3000;
        r.publish(keys[i], "fizz-late", meta(2));
        r.remove(keys[(i + 1500) % 3000]);
        r.register(
            &format!("a{steps:04}"),
            "",
            "ip",
            1,
            vec![("fizz".into(), meta(1))],
            None,
            2.0,
        );
    }
    assert!(steps >= 10, "{steps}");
    assert!(r.query_ready(Some("fizz")));
    let (got, total, _) = r.page(0, 1000, Some("fizz"));
    let (rest, _, _) = r.page(1000, 1000, Some("fizz"));
    let got: Vec<String> = got
        .iter()
        .chain(rest.iter())
        .map(|k| r.get(*k).unwrap().name.to_string())
        .collect();
    let mut want: Vec<String> = (0..r.hosts.capacity())
        .filter_map(|k| r.hosts.get(k))
        .filter(|h| h.matches("fizz"))
        .map(|h| h.name.to_string())
        .collect();
    want.sort();
    assert_eq!(total as usize, want.len());
    assert_eq!(got, want);
}

#[test]
fn page_pieces_are_the_encoded_page_byte_for_byte() {
    let mut r = Registry::default();
    for i in 0..30 {
        r.register(
            &format!("h{i:02}"),
            "",
            "ip",
            1,
            vec![(format!("f{i}"), meta(i))],
            None,
            1.0 + f64::from(i as u32),
        );
    }
    for (off, lim, q) in [
        (0, 10, None),
        (25, 10, None),
        (0, 1000, Some("F1")),
        (40, 5, None),
    ] {
        let want = r.list_page_reply(off, lim, q).line();
        let got = r.list_page_parts(off, lim, q).concat();
        assert_eq!(
            String::from_utf8(got).unwrap(),
            String::from_utf8(want).unwrap()
        );
    }
    let full: serde_json::Value = serde_json::from_slice(&r.list_full(2.0)).unwrap();
    assert_eq!(full["registry"]["h07"]["files"]["f7"]["size"], 7);
}

#[test]
fn lists_full_and_paged_in_hostname_order() {
    let mut r = Registry::default();
    for i in (0..25).rev() {
        r.register(
            &format!("h{i:02}"),
            "",
            "ip",
            1,
            vec![(format!("f{i}"), meta(i))],
            None,
            1.0,
        );
    }
    let full: serde_json::Value = serde_json::from_slice(&r.list_full(2.0)).unwrap();
    assert_eq!(full["registry"].as_object().unwrap().len(), 25);
    let out = r.list_page_reply(20, 10, None).line();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["total"], 25);
    assert!(v["next_offset"].is_null());
    let names: Vec<&String> = v["registry"].as_object().unwrap().keys().collect();
    assert_eq!(names.len(), 5);
    let out = r.list_page_reply(0, 10, Some("F1")).line();
    let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(v["total"], 11, "f1 and f10..f19");
}
