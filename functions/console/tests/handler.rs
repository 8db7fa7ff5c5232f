//! The console function on the sample events (`events/console/`): the page,
//! deep links, API misses and stale asset names, with the security headers
//! on every answer. Whether `web/dist` was built decides what the page is:
//! the app, or the page saying how to build it.

use console::{CACHE_IMMUTABLE, CACHE_NEVER, Deps, handle, is_built};
use lambda_http::{Body, Response};

fn event(name: &str) -> lambda_http::Request {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../../events/console/").to_string() + name;
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    lambda_http::request::from_str(&text).expect("an API Gateway v2 event")
}

fn header<'a>(r: &'a Response<Body>, name: &str) -> &'a str {
    r.headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_default()
}

fn text(r: &Response<Body>) -> String {
    match r.body() {
        Body::Text(t) => t.clone(),
        Body::Binary(b) => String::from_utf8_lossy(b).into_owned(),
        Body::Empty => String::new(),
        _ => String::new(),
    }
}

fn assert_secure(r: &Response<Body>) {
    let csp = header(r, "content-security-policy");
    assert!(csp.contains("default-src 'self'"), "{csp}");
    assert!(csp.contains("script-src 'self';"), "{csp}");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(!csp.contains("unsafe"), "{csp}");
    assert_eq!(header(r, "x-content-type-options"), "nosniff");
    assert_eq!(header(r, "referrer-policy"), "no-referrer");
}

fn deps() -> Deps {
    Deps::new(None).unwrap()
}

#[test]
fn the_page_is_never_cached_and_deep_links_get_it_too() {
    let d = deps();
    let root = handle(&event("index.json"), &d);
    let deep = handle(&event("deep-link.json"), &d);
    for r in [&root, &deep] {
        assert_secure(r);
        assert_eq!(header(r, "cache-control"), CACHE_NEVER);
        assert!(header(r, "content-type").starts_with("text/html"));
    }
    if is_built() {
        assert_eq!(root.status(), 200);
        assert_eq!(deep.status(), 200);
        // Both gzip (the event accepts it) and the same bytes.
        assert_eq!(header(&root, "content-encoding"), "gzip");
        assert_eq!(root.body().as_ref(), deep.body().as_ref());
    } else {
        assert_eq!(root.status(), 503);
        assert!(text(&root).contains("npm run build"));
        assert_eq!(text(&deep), text(&root));
    }
}

#[test]
fn an_unknown_api_path_is_a_json_404_not_the_page() {
    let r = handle(&event("api-miss.json"), &deps());
    assert_eq!(r.status(), 404);
    assert_secure(&r);
    assert_eq!(header(&r, "content-type"), "application/json");
    let body: serde_json::Value = serde_json::from_str(&text(&r)).unwrap();
    assert_eq!(body["code"], "not_found");
}

#[test]
fn a_stale_asset_name_is_a_404_not_html() {
    let r = handle(&event("missing-asset.json"), &deps());
    assert_eq!(r.status(), 404);
    assert!(header(&r, "content-type").starts_with("text/plain"));
}

#[test]
fn hashed_assets_are_immutable_and_revalidate_by_etag() {
    let Some(asset) = console::asset_names()
        .into_iter()
        .find(|n| n.starts_with("assets/") && n.ends_with(".js"))
    else {
        eprintln!("web/dist not built: nothing to check");
        return;
    };
    let mut req = event("missing-asset.json");
    *req.uri_mut() = format!("https://example.com/{asset}").parse().unwrap();
    let req = lambda_http::RequestExt::with_raw_http_path(req, format!("/{asset}"));
    let r = handle(&req, &deps());
    assert_eq!(r.status(), 200);
    assert_eq!(header(&r, "cache-control"), CACHE_IMMUTABLE);
    assert!(header(&r, "content-type").starts_with("text/javascript"));
    let etag = header(&r, "etag").to_string();
    assert!(etag.starts_with('"'));
    let mut again = req.clone();
    again
        .headers_mut()
        .insert("if-none-match", etag.parse().unwrap());
    assert_eq!(handle(&again, &deps()).status(), 304);
}
