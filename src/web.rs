//! Serves the bundled web UI (`www/`) from inside the binary: maps a URL path to
//! an embedded file for the client or admin site. It never touches the file
//! system and never resolves paths: only the fixed names below exist, so no
//! request can reach anything else.

/// Which web UI a listener serves: the node's client UI or the coordinator's
/// admin UI. Each site only sees its own page and the shared assets.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Site {
    Client,
    Admin,
}

/// One embedded file, ready to send.
pub struct Asset {
    pub body: &'static [u8],
    pub content_type: &'static str,
    pub cache_control: &'static str,
}

// Everything is `no-cache`: the whole UI is a few tens of KiB served from
// memory, so revalidating costs nothing, and it guarantees a browser never
// mixes an old app.js with a new index.html after the binary is upgraded.
const CACHE: &str = "no-cache";

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const SVG: &str = "image/svg+xml; charset=utf-8";

const INDEX_HTML: &[u8] = include_bytes!("../www/index.html");
const ADMIN_HTML: &[u8] = include_bytes!("../www/admin.html");
const APP_JS: &[u8] = include_bytes!("../www/app.js");
const FILES_JS: &[u8] = include_bytes!("../www/files.js");
const DOWNLOADS_JS: &[u8] = include_bytes!("../www/downloads.js");
const ADMIN_JS: &[u8] = include_bytes!("../www/admin.js");
const COMMON_JS: &[u8] = include_bytes!("../www/common.js");
const STYLE_CSS: &[u8] = include_bytes!("../www/style.css");
const FAVICON_SVG: &[u8] = include_bytes!("../www/favicon.svg");

/// `path` is the URL path without query. `/` maps to index.html (Client) or
/// admin.html (Admin). Unknown → None. Any `..`, `%2e`, backslash or encoded
/// slash → None.
pub fn lookup(site: Site, path: &str) -> Option<Asset> {
    if is_suspicious(path) {
        return None;
    }
    let (body, content_type) = match (site, path) {
        (Site::Client, "/" | "/index.html") => (INDEX_HTML, HTML),
        (Site::Client, "/app.js") => (APP_JS, JS),
        (Site::Client, "/files.js") => (FILES_JS, JS),
        (Site::Client, "/downloads.js") => (DOWNLOADS_JS, JS),
        (Site::Admin, "/" | "/admin.html") => (ADMIN_HTML, HTML),
        (Site::Admin, "/admin.js") => (ADMIN_JS, JS),
        (_, "/common.js") => (COMMON_JS, JS),
        (_, "/style.css") => (STYLE_CSS, CSS),
        (_, "/favicon.svg") => (FAVICON_SVG, SVG),
        _ => return None,
    };
    Some(Asset {
        body,
        content_type,
        cache_control: CACHE,
    })
}

/// Traversal and encoding tricks are refused outright, even though the fixed
/// table could never match them, so a future change to the table (say, a
/// prefix match) cannot turn them into a hole.
fn is_suspicious(path: &str) -> bool {
    if !path.starts_with('/') || path.contains("..") || path.contains('\\') || path.contains('\0') {
        return true;
    }
    let lower = path.to_ascii_lowercase();
    ["%2e", "%2f", "%5c", "%00"]
        .iter()
        .any(|enc| lower.contains(enc))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(site: Site, path: &str) -> &'static [u8] {
        match lookup(site, path) {
            Some(a) => a.body,
            None => panic!("{path} should exist for {site:?}"),
        }
    }

    #[test]
    fn root_serves_each_sites_page() {
        assert_eq!(body(Site::Client, "/"), INDEX_HTML);
        assert_eq!(body(Site::Client, "/index.html"), INDEX_HTML);
        assert_eq!(body(Site::Admin, "/"), ADMIN_HTML);
        assert_eq!(body(Site::Admin, "/admin.html"), ADMIN_HTML);
        assert_ne!(INDEX_HTML, ADMIN_HTML);
        let page = String::from_utf8_lossy(INDEX_HTML);
        assert!(page.contains(r#"<script src="/app.js" defer></script>"#));
        let page = String::from_utf8_lossy(ADMIN_HTML);
        assert!(page.contains(r#"<script src="/admin.js" defer></script>"#));
    }

    #[test]
    fn shared_assets_on_both_sites() {
        for site in [Site::Client, Site::Admin] {
            assert_eq!(body(site, "/common.js"), COMMON_JS);
            assert_eq!(body(site, "/style.css"), STYLE_CSS);
            assert_eq!(body(site, "/favicon.svg"), FAVICON_SVG);
        }
    }

    #[test]
    fn sites_do_not_serve_each_others_pages() {
        assert!(lookup(Site::Client, "/admin.html").is_none());
        assert!(lookup(Site::Client, "/admin.js").is_none());
        assert!(lookup(Site::Admin, "/index.html").is_none());
        assert!(lookup(Site::Admin, "/app.js").is_none());
    }

    #[test]
    fn content_types_and_cache() {
        let cases = [
            ("/", "text/html; charset=utf-8"),
            ("/app.js", "text/javascript; charset=utf-8"),
            ("/common.js", "text/javascript; charset=utf-8"),
            ("/style.css", "text/css; charset=utf-8"),
            ("/favicon.svg", "image/svg+xml; charset=utf-8"),
        ];
        for (path, ct) in cases {
            let Some(a) = lookup(Site::Client, path) else {
                panic!("{path} missing");
            };
            assert_eq!(a.content_type, ct, "{path}");
            assert_eq!(a.cache_control, "no-cache", "{path}");
            assert!(!a.body.is_empty(), "{path}");
        }
    }

    #[test]
    fn unknown_paths_are_none() {
        for path in [
            "",
            "index.html",
            "/nope",
            "/app.js/",
            "/APP.JS",
            "/www/app.js",
            "//app.js",
            "/app.js?x=1",
            "/api/client/status",
        ] {
            assert!(lookup(Site::Client, path).is_none(), "{path:?}");
        }
    }

    #[test]
    fn traversal_attempts_are_none() {
        let attempts = [
            "/../Cargo.toml",
            "/..",
            "/../www/app.js",
            "/%2e%2e/Cargo.toml",
            "/%2E%2E/Cargo.toml",
            "/.%2e/app.js",
            "/%2e/app.js",
            "/..%2fapp.js",
            "/%2fapp.js",
            "/%2Fetc%2Fpasswd",
            "/..\\app.js",
            "/\\app.js",
            "/%5capp.js",
            "/%5C..%5Capp.js",
            "/app.js%00",
            "/app.js\0",
            "/./app.js",
            "/static/../app.js",
        ];
        for site in [Site::Client, Site::Admin] {
            for path in attempts {
                assert!(lookup(site, path).is_none(), "{site:?} {path:?}");
            }
        }
    }

    #[test]
    fn pages_obey_the_content_security_policy() {
        // The server sends `default-src 'self'`: inline scripts, handlers and
        // style attributes would be blocked, so the pages must not use them.
        for page in [INDEX_HTML, ADMIN_HTML] {
            let text = String::from_utf8_lossy(page);
            assert!(!text.contains("style=\""), "style attribute");
            assert!(!text.contains("<style"), "inline style element");
            assert!(!has_inline_handler(&text), "inline event handler");
            for (i, _) in text.match_indices("<script") {
                let tag_end = text[i..].find('>').map_or(text.len(), |e| i + e);
                assert!(text[i..tag_end].contains("src=\"/"), "inline script at {i}");
            }
            assert!(
                !text.contains("http://") && !text.contains("https://"),
                "external resource"
            );
        }
    }

    /// True when some attribute looks like `onclick=`, `onload =`, ...
    fn has_inline_handler(html: &str) -> bool {
        let lower = html.to_ascii_lowercase();
        lower.match_indices(" on").any(|(i, _)| {
            let rest = &lower[i + 3..];
            let name_len = rest.bytes().take_while(u8::is_ascii_lowercase).count();
            name_len > 0 && rest[name_len..].trim_start().starts_with('=')
        })
    }

    #[test]
    fn handler_detector_works() {
        assert!(has_inline_handler(r#"<body onload="x()">"#));
        assert!(has_inline_handler(r#"<a onclick = "x()">"#));
        assert!(!has_inline_handler("<p>Go on, click</p>"));
    }

    #[test]
    fn scripts_never_write_markup() {
        for js in [APP_JS, ADMIN_JS, COMMON_JS] {
            let text = String::from_utf8_lossy(js);
            for banned in [
                "innerHTML",
                "outerHTML",
                "insertAdjacentHTML",
                "document.write",
                "eval(",
            ] {
                assert!(!text.contains(banned), "{banned}");
            }
        }
    }
}
