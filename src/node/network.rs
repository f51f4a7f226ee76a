//! Reading the registry's answers about the network (LIST pages, REQUEST
//! hosts) into what the client API shows: network files grouped by content,
//! duplicate candidates for a publish. Pure: no I/O.

use std::collections::BTreeMap;

use serde_json::{json, Value};

/// Two modification times this close are "the same" for duplicate detection.
pub const SAME_MTIME_S: f64 = 2.0;

#[derive(Debug, Clone, PartialEq)]
pub struct NetFile {
    pub name: String,
    pub size: u64,
    pub modified: f64,
    pub sha256: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NetHost {
    pub hostname: String,
    pub display_name: String,
    pub ip: String,
    pub port: u16,
    pub online: bool,
    pub files: Vec<NetFile>,
}

fn file_from(name: &str, m: &Value) -> Option<NetFile> {
    if m.get("is_published").and_then(Value::as_bool) == Some(false) {
        return None;
    }
    Some(NetFile {
        name: name.to_owned(),
        size: m.get("size")?.as_u64()?,
        modified: m.get("modified").and_then(Value::as_f64).unwrap_or(0.0),
        sha256: m.get("sha256").and_then(Value::as_str).map(str::to_owned),
    })
}

/// One LIST reply: its hosts and the next offset (None at the end or unpaged).
pub fn parse_list(v: &Value) -> Result<(Vec<NetHost>, Option<u64>), String> {
    let reg = v
        .get("registry")
        .and_then(Value::as_object)
        .ok_or("LIST answer without a registry object")?;
    let mut hosts = Vec::with_capacity(reg.len());
    for (hostname, h) in reg {
        let addr = h.get("addr").and_then(Value::as_array);
        let ip = addr
            .and_then(|a| a.first())
            .and_then(Value::as_str)
            .unwrap_or_default();
        let port = addr
            .and_then(|a| a.get(1))
            .and_then(Value::as_u64)
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(0);
        let mut files = Vec::new();
        if let Some(fs) = h.get("files").and_then(Value::as_object) {
            for (name, m) in fs {
                if let Some(f) = file_from(name, m) {
                    files.push(f);
                }
            }
        }
        hosts.push(NetHost {
            hostname: hostname.clone(),
            display_name: h
                .get("display_name")
                .and_then(Value::as_str)
                .unwrap_or(hostname)
                .to_owned(),
            ip: ip.to_owned(),
            port,
            online: h.get("online").and_then(Value::as_bool).unwrap_or(true),
            files,
        });
    }
    let next = v.get("next_offset").and_then(Value::as_u64);
    Ok((hosts, next))
}

/// A REQUEST reply's hosts as (host, its file); NOTFOUND is an empty list.
pub fn parse_request(v: &Value, fname: &str) -> Vec<NetHost> {
    let Some(hosts) = v.get("hosts").and_then(Value::as_array) else {
        return Vec::new();
    };
    hosts
        .iter()
        .filter_map(|h| {
            let f = file_from(fname, h)?;
            Some(NetHost {
                hostname: h.get("hostname")?.as_str()?.to_owned(),
                display_name: h
                    .get("display_name")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_owned(),
                ip: h.get("ip")?.as_str()?.to_owned(),
                port: u16::try_from(h.get("port")?.as_u64()?).ok()?,
                online: h.get("online").and_then(Value::as_bool).unwrap_or(true),
                files: vec![f],
            })
        })
        .collect()
}

fn contains_ci(hay: &str, needle: &str) -> bool {
    hay.to_lowercase().contains(&needle.to_lowercase())
}

/// One (name, content) entry: size, newest mtime, hash, hosts.
type Group = (u64, f64, Option<String>, Vec<Value>);

/// Network files, one entry per (name, content), sorted by name; `q` keeps
/// files whose name, host name or display name contains it (any case).
pub fn group_files(hosts: &[NetHost], q: &str) -> Vec<Value> {
    let mut groups: BTreeMap<(String, String), Group> = BTreeMap::new();
    for h in hosts {
        let host_match =
            q.is_empty() || contains_ci(&h.hostname, q) || contains_ci(&h.display_name, q);
        for f in &h.files {
            if !host_match && !contains_ci(&f.name, q) {
                continue;
            }
            // Without a hash, content is told apart by size.
            let key = (
                f.name.clone(),
                f.sha256
                    .clone()
                    .unwrap_or_else(|| format!("size:{}", f.size)),
            );
            let g = groups
                .entry(key)
                .or_insert_with(|| (f.size, f.modified, f.sha256.clone(), Vec::new()));
            g.1 = g.1.max(f.modified);
            g.3.push(json!({
                "hostname": h.hostname,
                "display_name": h.display_name,
                "ip": h.ip,
                "port": h.port,
                "online": h.online,
                "modified": f.modified,
            }));
        }
    }
    groups
        .into_iter()
        .map(|((name, _), (size, modified, sha256, mut hosts))| {
            hosts.sort_by_key(|h| !h["online"].as_bool().unwrap_or(false));
            json!({
                "name": name,
                "size": size,
                "modified": modified,
                "sha256": sha256,
                "hosts": hosts,
            })
        })
        .collect()
}

/// Files on other hosts that duplicate ours: the same SHA-256, or the same
/// size with a modification time within 2 s.
pub fn duplicates(
    me: &str,
    size: u64,
    modified: f64,
    sha256: Option<&str>,
    hosts: &[NetHost],
) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for h in hosts.iter().filter(|h| h.hostname != me) {
        for f in &h.files {
            let same_content = sha256.is_some() && f.sha256.as_deref() == sha256;
            let same_meta = f.size == size && (f.modified - modified).abs() <= SAME_MTIME_S;
            if !same_content && !same_meta {
                continue;
            }
            let seen = out.iter().any(|d| {
                d["hostname"].as_str() == Some(&h.hostname) && d["name"].as_str() == Some(&f.name)
            });
            if seen {
                continue;
            }
            out.push(json!({
                "hostname": h.hostname,
                "display_name": h.display_name,
                "name": f.name,
                "size": f.size,
                "modified": f.modified,
                "sha256": f.sha256,
                "reason": if same_content { "same content" } else { "same size and modified time" },
            }));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> Value {
        json!({"status":"OK","registry":{
            "alice":{"addr":["10.0.0.1",6001],"display_name":"Alice","files":{
                "a.txt":{"size":3,"modified":100.0,"is_published":true,"sha256":"aa"},
                "same.bin":{"size":9,"modified":50.0,"is_published":true,"sha256":"ss"}},
                "last_seen":1.0,"connected_at":1.0,"online":true},
            "bob":{"addr":["10.0.0.2",6002],"display_name":"Bob","files":{
                "same.bin":{"size":9,"modified":50.0,"is_published":true,"sha256":"ss"},
                "b.txt":{"size":3,"modified":101.5,"is_published":true}},
                "last_seen":1.0,"connected_at":1.0,"online":false}},
            "total":2,"next_offset":null})
    }

    #[test]
    fn reads_list_pages() {
        let (hosts, next) = parse_list(&list()).unwrap();
        assert_eq!(next, None);
        assert_eq!(hosts.len(), 2);
        assert_eq!(hosts[1].port, 6002);
        assert!(!hosts[1].online);
        let mut v = list();
        v["next_offset"] = json!(2);
        assert_eq!(parse_list(&v).unwrap().1, Some(2));
        assert!(parse_list(&json!({"status":"OK"})).is_err());
    }

    #[test]
    fn groups_by_name_and_content_with_search() {
        let (hosts, _) = parse_list(&list()).unwrap();
        let all = group_files(&hosts, "");
        let names: Vec<&str> = all.iter().map(|f| f["name"].as_str().unwrap()).collect();
        assert_eq!(names, ["a.txt", "b.txt", "same.bin"]);
        assert_eq!(all[2]["hosts"].as_array().unwrap().len(), 2);
        assert_eq!(all[2]["hosts"][0]["hostname"], "alice", "online first");
        assert_eq!(group_files(&hosts, "SAME").len(), 1);
        assert_eq!(group_files(&hosts, "bob").len(), 2);
    }

    #[test]
    fn finds_duplicates_on_other_hosts_only() {
        let (hosts, _) = parse_list(&list()).unwrap();
        let d = duplicates("carol", 9, 10.0, Some("ss"), &hosts);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0]["reason"], "same content");
        assert!(duplicates("alice", 9, 10.0, Some("zz"), &hosts).is_empty());
        let d = duplicates("alice", 3, 100.0, Some("zz"), &hosts);
        assert_eq!(d.len(), 1, "b.txt: same size, 1.5 s apart: {d:?}");
        assert_eq!(d[0]["reason"], "same size and modified time");
        assert!(duplicates("alice", 3, 97.0, None, &hosts).is_empty());
    }

    #[test]
    fn reads_request_hosts() {
        let v = json!({"status":"FOUND","hosts":[
            {"hostname":"bob","display_name":"Bob","ip":"10.0.0.2","port":6002,"size":9,
             "modified":1.0,"is_published":true,"sha256":"ss","online":true},
            {"hostname":"bad","ip":"x"}]});
        let h = parse_request(&v, "same.bin");
        assert_eq!(h.len(), 1);
        assert_eq!(h[0].files[0].name, "same.bin");
        assert!(parse_request(&json!({"status":"NOTFOUND","hosts":[]}), "x").is_empty());
    }
}
