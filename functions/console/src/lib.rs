//! The web console (issue 11 §1): the single-page app built by Vite into
//! `web/dist`, embedded in this binary and served on the API's own origin
//! (no CORS). Vite's hashed files under `assets/` are cached for a year;
//! `index.html` is never cached; any other GET that is not a file (a deep
//! link such as `/inbox/…`) gets `index.html`, so the app's router takes
//! over. API prefixes never fall back to the page: an unknown API route is
//! a JSON 404. Every answer carries the security headers.
//!
//! A workspace build where Node never ran (no `web/dist`) still compiles;
//! the console then answers one page saying how to build it.

use lambda_http::{Body, Request, RequestExt, Response};
use rust_embed::RustEmbed;

/// What API Gateway routes to this function: the root and every other GET
/// no API route claims (API Gateway prefers the more specific routes).
pub const ROUTES: &[(&str, &str)] = &[("GET", "/"), ("GET", "/{proxy+}")];

/// Path prefixes that belong to the API: never answered with the page.
const API_PREFIXES: &[&str] = &["/api/", "/crm/", "/local/", "/health", "/openapi.json"];

/// Vite's content-hashed output (`build.assetsDir`): safe to cache forever.
const IMMUTABLE_DIR: &str = "assets/";

pub const CACHE_IMMUTABLE: &str = "public, max-age=31536000, immutable";
pub const CACHE_NEVER: &str = "no-store";
/// Files outside `assets/` (favicon, sound): revalidated by ETag.
pub const CACHE_REVALIDATE: &str = "no-cache";

#[derive(RustEmbed)]
#[folder = "web/dist/"]
#[allow_missing = true]
struct Assets;

/// Built once per cold start.
pub struct Deps {
    /// The Content-Security-Policy every answer carries.
    pub csp: String,
}

#[derive(Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

impl Deps {
    pub fn from_process() -> Result<Self, ConfigError> {
        Self::new(std::env::var("CONSOLE_MEDIA_ORIGIN").ok().as_deref())
    }

    /// `media_origin`: the media bucket's origin (`https://bucket.s3.region.amazonaws.com`),
    /// where the browser PUTs uploads and loads presigned media. Our own
    /// bucket, the only origin besides `'self'` the policy names.
    pub fn new(media_origin: Option<&str>) -> Result<Self, ConfigError> {
        let media = match media_origin.map(str::trim).filter(|o| !o.is_empty()) {
            None => None,
            Some(o) => Some(parse_origin(o)?),
        };
        Ok(Self {
            csp: content_security_policy(media.as_deref()),
        })
    }
}

/// An origin as CSP wants it: scheme://host[:port], https (or http on loopback), nothing else.
fn parse_origin(raw: &str) -> Result<String, ConfigError> {
    let bad = || {
        ConfigError(
            "CONSOLE_MEDIA_ORIGIN must be an origin such as https://bucket.s3.eu-west-1.amazonaws.com"
                .into(),
        )
    };
    let (scheme, rest) = raw.split_once("://").ok_or_else(bad)?;
    let host = rest.strip_suffix('/').unwrap_or(rest);
    let host_ok = !host.is_empty()
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':'));
    let loopback = host.starts_with("127.0.0.1") || host.starts_with("localhost");
    match scheme {
        "https" if host_ok => Ok(format!("https://{host}")),
        "http" if host_ok && loopback => Ok(format!("http://{host}")),
        _ => Err(bad()),
    }
}

/// No inline script or style, nothing from another origin but our media bucket,
/// never framed.
pub fn content_security_policy(media_origin: Option<&str>) -> String {
    let m = media_origin.map(|o| format!(" {o}")).unwrap_or_default();
    format!(
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:{m}; \
         media-src 'self' blob:{m}; connect-src 'self'{m}; font-src 'self'; object-src 'none'; \
         base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
}

/// What a request resolves to, before any bytes are read.
#[derive(Debug, PartialEq, Eq)]
pub enum Resolved {
    /// A built file (its path inside `dist`).
    File(String),
    /// The app's page: `/` or a deep link.
    Index,
    /// A path under the API: not ours.
    ApiNotFound,
    /// Looks like a file (has an extension) but none is built under that name.
    FileNotFound,
    MethodNotAllowed,
}

pub fn resolve(method: &str, path: &str, exists: impl Fn(&str) -> bool) -> Resolved {
    if API_PREFIXES.iter().any(|p| path.starts_with(p)) {
        return Resolved::ApiNotFound;
    }
    if method != "GET" && method != "HEAD" {
        return Resolved::MethodNotAllowed;
    }
    let rel = path.trim_start_matches('/');
    if rel.is_empty() || rel == "index.html" {
        return Resolved::Index;
    }
    if !rel.split('/').any(|seg| seg == ".." || seg.is_empty()) && exists(rel) {
        return Resolved::File(rel.to_string());
    }
    let last = rel.rsplit('/').next().unwrap_or(rel);
    if last.contains('.') || rel.starts_with(IMMUTABLE_DIR) {
        Resolved::FileNotFound
    } else {
        Resolved::Index
    }
}

pub fn handle(req: &Request, deps: &Deps) -> Response<Body> {
    let raw = req.raw_http_path();
    let path = if raw.is_empty() {
        req.uri().path().to_string()
    } else {
        raw.to_string()
    };
    let method = req.method().as_str();
    let head = method == "HEAD";
    let accepts_gzip = header(req, "accept-encoding").is_some_and(|v| {
        v.split(',')
            .any(|e| e.split(';').next().is_some_and(|e| e.trim() == "gzip"))
    });
    let if_none_match = header(req, "if-none-match");
    match resolve(method, &path, |p| Assets::get(p).is_some()) {
        Resolved::File(p) => serve(deps, &p, accepts_gzip, if_none_match, head),
        Resolved::Index => match Assets::get("index.html") {
            Some(_) => serve(deps, "index.html", accepts_gzip, None, head),
            None => not_built(deps, head),
        },
        Resolved::ApiNotFound => json_error(deps, 404, "not_found", "Not found"),
        Resolved::FileNotFound => plain(deps, 404, "Not found"),
        Resolved::MethodNotAllowed => {
            json_error(deps, 405, "method_not_allowed", "Method not allowed")
        }
    }
}

fn header<'r>(req: &'r Request, name: &str) -> Option<&'r str> {
    req.headers().get(name).and_then(|v| v.to_str().ok())
}

fn cache_control(path: &str) -> &'static str {
    if path == "index.html" {
        CACHE_NEVER
    } else if path.starts_with(IMMUTABLE_DIR) {
        CACHE_IMMUTABLE
    } else {
        CACHE_REVALIDATE
    }
}

fn serve(
    deps: &Deps,
    path: &str,
    accepts_gzip: bool,
    if_none_match: Option<&str>,
    head: bool,
) -> Response<Body> {
    let Some(file) = Assets::get(path) else {
        return plain(deps, 404, "Not found");
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..16]));
    let mime = mime_guess::from_path(path).first_or_octet_stream();
    let content_type = match mime.type_() {
        mime_guess::mime::TEXT | mime_guess::mime::APPLICATION
            if mime.subtype() != mime_guess::mime::OCTET_STREAM
                && !matches!(mime.subtype().as_str(), "pdf" | "wasm" | "zip") =>
        {
            format!("{mime}; charset=utf-8")
        }
        _ => mime.to_string(),
    };
    let builder = with_security(deps, Response::builder())
        .header("content-type", content_type)
        .header("cache-control", cache_control(path))
        .header("etag", &etag)
        .header("vary", "accept-encoding");
    if path != "index.html" && if_none_match.is_some_and(|v| v.split(',').any(|t| t.trim() == etag))
    {
        return builder
            .status(304)
            .body(Body::Empty)
            .expect("static response parts are valid");
    }
    // Vite's build writes `name.gz` beside every compressible file.
    let gz = accepts_gzip
        .then(|| Assets::get(&format!("{path}.gz")))
        .flatten();
    let (builder, data) = match gz {
        Some(gz) => (builder.header("content-encoding", "gzip"), gz.data),
        None => (builder, file.data),
    };
    let body = if head {
        Body::Empty
    } else {
        Body::Binary(data.into_owned())
    };
    builder
        .status(200)
        .body(body)
        .expect("static response parts are valid")
}

fn with_security(deps: &Deps, b: http_builder::Builder) -> http_builder::Builder {
    b.header("content-security-policy", &deps.csp)
        .header("x-content-type-options", "nosniff")
        .header("referrer-policy", "no-referrer")
        .header("x-frame-options", "DENY")
        .header("cross-origin-opener-policy", "same-origin")
        .header(
            "permissions-policy",
            "camera=(), microphone=(), geolocation=()",
        )
}

mod http_builder {
    pub type Builder = lambda_http::http::response::Builder;
}

/// The page served when `web/dist` was not built into this binary.
pub const NOT_BUILT_PAGE: &str = "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
<title>CRM console not built</title></head><body>\
<h1>The console was not built into this binary</h1>\
<p>The web app lives in <code>functions/console/web</code>. Build it (Node 20.19 or newer), then rebuild the binary:</p>\
<pre>cd functions/console/web &amp;&amp; npm ci &amp;&amp; npm run build\ncargo build -p console   # or: make run</pre>\
<p><code>make run</code> does both. The API is unaffected: see <a href=\"/openapi.json\">/openapi.json</a>.</p>\
</body></html>\n";

fn not_built(deps: &Deps, head: bool) -> Response<Body> {
    with_security(deps, Response::builder())
        .status(503)
        .header("content-type", "text/html; charset=utf-8")
        .header("cache-control", CACHE_NEVER)
        .body(if head {
            Body::Empty
        } else {
            Body::Text(NOT_BUILT_PAGE.into())
        })
        .expect("static response parts are valid")
}

fn plain(deps: &Deps, status: u16, msg: &str) -> Response<Body> {
    with_security(deps, Response::builder())
        .status(status)
        .header("content-type", "text/plain; charset=utf-8")
        .header("cache-control", CACHE_NEVER)
        .body(Body::Text(msg.into()))
        .expect("static response parts are valid")
}

fn json_error(deps: &Deps, status: u16, code: &str, msg: &str) -> Response<Body> {
    with_security(deps, Response::builder())
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", CACHE_NEVER)
        .body(Body::Text(format!(
            "{{\"error\":\"{msg}\",\"code\":\"{code}\"}}"
        )))
        .expect("static response parts are valid")
}

/// Every embedded file name (tests, the banner).
pub fn asset_names() -> Vec<String> {
    Assets::iter().map(|n| n.into_owned()).collect()
}

/// Whether this binary carries a built app (for the runner's banner).
pub fn is_built() -> bool {
    Assets::get("index.html").is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exists(p: &str) -> bool {
        matches!(p, "assets/index-abc.js" | "favicon.svg")
    }

    #[test]
    fn files_deep_links_and_api_paths() {
        assert_eq!(resolve("GET", "/", exists), Resolved::Index);
        assert_eq!(
            resolve("GET", "/assets/index-abc.js", exists),
            Resolved::File("assets/index-abc.js".into())
        );
        assert_eq!(resolve("GET", "/inbox/42", exists), Resolved::Index);
        assert_eq!(resolve("GET", "/board", exists), Resolved::Index);
        assert_eq!(
            resolve("GET", "/assets/gone-123.js", exists),
            Resolved::FileNotFound
        );
        assert_eq!(
            resolve("GET", "/nothing.png", exists),
            Resolved::FileNotFound
        );
        assert_eq!(resolve("GET", "/api/nope", exists), Resolved::ApiNotFound);
        assert_eq!(resolve("GET", "/crm/nope", exists), Resolved::ApiNotFound);
        assert_eq!(
            resolve("POST", "/board", exists),
            Resolved::MethodNotAllowed
        );
        assert_eq!(
            resolve("HEAD", "/favicon.svg", exists),
            Resolved::File("favicon.svg".into())
        );
        assert_eq!(
            resolve("GET", "/../Cargo.toml", exists),
            Resolved::FileNotFound
        );
    }

    #[test]
    fn cache_rules() {
        assert_eq!(cache_control("index.html"), CACHE_NEVER);
        assert_eq!(cache_control("assets/index-abc.js"), CACHE_IMMUTABLE);
        assert_eq!(cache_control("notify.wav"), CACHE_REVALIDATE);
    }

    #[test]
    fn policy_is_strict_and_names_only_the_media_bucket() {
        let d = Deps::new(None).unwrap();
        assert!(d.csp.contains("script-src 'self';"));
        assert!(d.csp.contains("frame-ancestors 'none'"));
        assert!(!d.csp.contains("unsafe-inline"));
        assert!(!d.csp.contains("https:"));
        let d = Deps::new(Some("https://media.s3.eu-west-1.amazonaws.com/")).unwrap();
        assert!(
            d.csp
                .contains("connect-src 'self' https://media.s3.eu-west-1.amazonaws.com;")
        );
        assert!(Deps::new(Some("http://evil.example")).is_err());
        assert!(Deps::new(Some("https://a.b/x;script-src *")).is_err());
        assert!(Deps::new(Some("javascript:alert(1)")).is_err());
    }
}
