//! Which hosts a fetch may use, by content: the registry answers by name,
//! and different files can share a name (Alice's `report.pdf` is not
//! Erin's). A fetch asked for one SHA-256 uses only hosts offering that
//! content, whatever the registry sent (an older coordinator ignores the
//! `sha256` of REQUEST); a fetch by name alone goes ahead only when the
//! network holds one content under that name. Pure: no I/O.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::node::network::index::NetHost;

/// Why no host list could be picked.
#[derive(Debug)]
pub enum Refused {
    /// No host offers that content (or the name at all).
    None,
    /// Several contents share the name and none was asked for:
    /// `[{sha256, size, hosts}]`, the most offered first.
    Ambiguous(Vec<Value>),
}

/// A SHA-256 as a client may send it: 64 hex digits, any case. Lowercase.
pub fn parse_sha256(s: &str) -> Option<String> {
    let s = s.trim();
    (s.len() == 64 && s.bytes().all(|b| b.is_ascii_hexdigit())).then(|| s.to_ascii_lowercase())
}

fn sha_of(h: &NetHost) -> Option<String> {
    h.files
        .first()
        .and_then(|f| f.sha256.as_deref())
        .and_then(parse_sha256)
}

/// The hosts to fetch from, all offering one content, in the registry's
/// order. With `want`, only hosts whose published hash is exactly it (a
/// host that published no hash cannot show it has that content). Without,
/// every host must offer the same content; hosts that published no hash
/// are kept only when no host published one (their bytes are then checked
/// against the first peer's `INFO`).
pub fn hosts_for(hosts: Vec<NetHost>, want: Option<&str>) -> Result<Vec<NetHost>, Refused> {
    let picked: Vec<NetHost> = match want {
        Some(want) => hosts
            .into_iter()
            .filter(|h| sha_of(h).as_deref() == Some(want))
            .collect(),
        None => {
            let mut groups: BTreeMap<String, (u64, Vec<&NetHost>)> = BTreeMap::new();
            for h in &hosts {
                if let Some(sha) = sha_of(h) {
                    let size = h.files.first().map_or(0, |f| f.size);
                    groups.entry(sha).or_insert((size, Vec::new())).1.push(h);
                }
            }
            if groups.len() > 1 {
                let mut choices: Vec<(usize, Value)> = groups
                    .iter()
                    .map(|(sha, (size, hs))| {
                        let listed: Vec<Value> = hs
                            .iter()
                            .map(|h| {
                                json!({
                                    "hostname": h.hostname,
                                    "display_name": h.display_name,
                                    "online": h.online,
                                })
                            })
                            .collect();
                        (
                            hs.len(),
                            json!({"sha256": sha, "size": size, "hosts": listed}),
                        )
                    })
                    .collect();
                choices.sort_by_key(|(n, _)| std::cmp::Reverse(*n));
                return Err(Refused::Ambiguous(
                    choices.into_iter().map(|(_, v)| v).collect(),
                ));
            }
            let only = groups.into_keys().next();
            match only {
                Some(only) => hosts
                    .into_iter()
                    .filter(|h| sha_of(h).as_deref() == Some(only.as_str()))
                    .collect(),
                None => hosts,
            }
        }
    };
    if picked.is_empty() {
        return Err(Refused::None);
    }
    Ok(picked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::network::index::NetFile;

    fn host(name: &str, size: u64, sha: Option<&str>) -> NetHost {
        NetHost {
            hostname: name.into(),
            display_name: name.into(),
            ip: "127.0.0.1".into(),
            port: 1,
            online: true,
            files: vec![NetFile {
                name: "report.pdf".into(),
                size,
                modified: 0.0,
                sha256: sha.map(str::to_owned),
            }],
            root: None,
        }
    }

    fn names(v: &[NetHost]) -> Vec<&str> {
        v.iter().map(|h| h.hostname.as_str()).collect()
    }

    #[test]
    fn a_hash_picks_only_the_hosts_with_that_content() {
        let (a, e) = ("a".repeat(64), "e".repeat(64));
        let hosts = vec![
            host("erin", 1, Some(&e)),
            host("alice", 3, Some(&a)),
            host("anon", 3, None),
            host("alice2", 3, Some(&a.to_uppercase())),
        ];
        let got = hosts_for(hosts.clone(), Some(&a)).unwrap();
        assert_eq!(names(&got), ["alice", "alice2"]);
        assert!(matches!(
            hosts_for(hosts, Some(&"f".repeat(64))),
            Err(Refused::None)
        ));
    }

    #[test]
    fn a_name_with_several_contents_asks_which() {
        let (a, e) = ("a".repeat(64), "e".repeat(64));
        let hosts = vec![
            host("erin", 1, Some(&e)),
            host("alice", 3, Some(&a)),
            host("bob", 3, Some(&a)),
        ];
        let Err(Refused::Ambiguous(choices)) = hosts_for(hosts, None) else {
            panic!("expected a choice");
        };
        assert_eq!(choices.len(), 2);
        assert_eq!(choices[0]["sha256"], a.as_str());
        assert_eq!(choices[0]["size"], 3);
        assert_eq!(choices[0]["hosts"][1]["hostname"], "bob");
        assert_eq!(choices[1]["hosts"][0]["hostname"], "erin");
    }

    #[test]
    fn a_name_with_one_content_goes_ahead_with_it() {
        let a = "a".repeat(64);
        let hosts = vec![
            host("anon", 3, None),
            host("alice", 3, Some(&a)),
            host("bob", 3, Some(&a)),
        ];
        assert_eq!(names(&hosts_for(hosts, None).unwrap()), ["alice", "bob"]);
        let unhashed = vec![host("anon", 3, None)];
        assert_eq!(names(&hosts_for(unhashed, None).unwrap()), ["anon"]);
        assert!(matches!(hosts_for(Vec::new(), None), Err(Refused::None)));
    }

    #[test]
    fn only_real_hashes_are_taken() {
        assert_eq!(parse_sha256(&"A".repeat(64)), Some("a".repeat(64)));
        assert!(parse_sha256("abc").is_none());
        assert!(parse_sha256(&"g".repeat(64)).is_none());
    }
}
