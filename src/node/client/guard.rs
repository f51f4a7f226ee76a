//! Cross-site request checks of the client API, as pure functions of a
//! request head: which requests a browser page of another site may have
//! made (refused 403), and which state-changing requests lack the JSON
//! content type (refused 415). A `text/plain` or form POST is a "simple"
//! request a foreign page can send without a CORS preflight; insisting on
//! `application/json` forces a preflight this API never answers with CORS
//! headers, so such a POST cannot reach a handler. It knows nothing of
//! routes or users; `api` calls it before routing.

use reactor::http::Request;

/// Why a request is refused before routing: (status, sentence).
pub type Refusal = (u16, String);

/// Refuses requests a page of another site may have sent: an `Origin`
/// other than `http://<Host>` (also `null`, as sandboxed frames and some
/// redirects send), or `Sec-Fetch-Site: cross-site`. A top-level `GET` of a
/// page (following a link or a bookmark to the UI) stays allowed: it reads
/// nothing the other site could see, and the page cannot be framed.
pub fn check_origin(req: &Request) -> Result<(), Refusal> {
    let page_view = (req.method == "GET" || req.method == "HEAD") && !req.path.starts_with("/api/");
    if page_view {
        return Ok(());
    }
    if let Some(site) = req.header("sec-fetch-site") {
        if site.trim().eq_ignore_ascii_case("cross-site") {
            return Err((
                403,
                "Cross-site requests are refused: use the node's own web page".to_owned(),
            ));
        }
    }
    if let Some(origin) = req.header("origin") {
        let own = req
            .header("host")
            .map(|h| format!("http://{}", h.trim()))
            .unwrap_or_default();
        let origin = origin.trim();
        if own.is_empty() || !origin.eq_ignore_ascii_case(&own) {
            let shown: String = origin.chars().take(100).collect();
            return Err((
                403,
                format!(
                    "Requests from the page at {shown:?} are refused: only the node's own page ({own}) may call this API"
                ),
            ));
        }
    }
    Ok(())
}

/// POST and DELETE to the API must say `Content-Type: application/json`
/// (parameters such as `charset` allowed). Pages take neither method (405).
pub fn check_content_type(req: &Request) -> Result<(), Refusal> {
    if req.method != "POST" && req.method != "DELETE" || !req.path.starts_with("/api/") {
        return Ok(());
    }
    let json = req.header("content-type").is_some_and(|v| {
        v.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"))
    });
    if json {
        return Ok(());
    }
    Err((
        415,
        format!(
            "{} requests must be sent with Content-Type: application/json",
            req.method
        ),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, path: &str, headers: &[(&str, &str)]) -> Request {
        Request {
            method: method.into(),
            path: path.into(),
            query: String::new(),
            headers: headers
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            body: Vec::new(),
            keep_alive: true,
        }
    }

    #[test]
    fn foreign_origins_and_cross_site_requests_are_refused() {
        let host = ("Host", "127.0.0.1:5501");
        let ok = |h: &[(&str, &str)]| check_origin(&req("POST", "/api/client/login", h)).is_ok();
        assert!(ok(&[host]));
        assert!(ok(&[host, ("Origin", "http://127.0.0.1:5501")]));
        assert!(ok(&[host, ("Sec-Fetch-Site", "same-origin")]));
        assert!(!ok(&[host, ("Origin", "http://evil.example")]));
        assert!(!ok(&[host, ("Origin", "http://127.0.0.1:5502")]));
        assert!(!ok(&[host, ("Origin", "null")]));
        assert!(!ok(&[("Origin", "http://127.0.0.1:5501")]));
        assert!(!ok(&[host, ("Sec-Fetch-Site", "cross-site")]));
        // Opening the UI from a link elsewhere is a navigation, not a call.
        let page = req("GET", "/", &[host, ("Sec-Fetch-Site", "cross-site")]);
        assert!(check_origin(&page).is_ok());
        let api_get = req(
            "GET",
            "/api/client/status",
            &[host, ("Sec-Fetch-Site", "cross-site")],
        );
        assert!(check_origin(&api_get).is_err());
    }

    #[test]
    fn posts_and_deletes_need_json() {
        let ct = |m: &str, v: Option<&str>| {
            let h: Vec<(&str, &str)> = v.map(|v| ("Content-Type", v)).into_iter().collect();
            check_content_type(&req(m, "/api/client/login", &h)).map_err(|e| e.0)
        };
        assert_eq!(ct("POST", Some("application/json")), Ok(()));
        assert_eq!(ct("POST", Some("Application/JSON; charset=utf-8")), Ok(()));
        assert_eq!(ct("DELETE", Some("application/json")), Ok(()));
        assert_eq!(ct("POST", Some("text/plain")), Err(415));
        assert_eq!(ct("POST", Some("application/jsonx")), Err(415));
        assert_eq!(ct("POST", None), Err(415));
        assert_eq!(ct("DELETE", None), Err(415));
        assert_eq!(ct("GET", None), Ok(()));
        let page = req("DELETE", "/", &[]);
        assert!(
            check_content_type(&page).is_ok(),
            "a page answers 405 instead"
        );
    }
}
