//! Downloading one media file from Twilio, safely: every URL (the job's and
//! each redirect's) must pass `check_url` against the allow-list, redirects
//! are followed by hand (at most `MAX_REDIRECTS`), Basic auth goes only to
//! the job URL's own origin, and the body is capped while it streams.

use crate::config::{AllowedHost, MediaConfig};
use reqwest::{StatusCode, Url, header};

/// Twilio's media URL redirects once to its CDN; three leaves room without
/// letting a server bounce us around.
pub const MAX_REDIRECTS: usize = 3;

/// Why a URL is refused (safe to record: no URL in it).
pub fn check_url(url: &Url, config: &MediaConfig) -> Result<(), &'static str> {
    check(url, &config.allow_hosts, config.allow_http)
}

fn check(url: &Url, allow: &[AllowedHost], allow_http: bool) -> Result<(), &'static str> {
    match url.scheme() {
        "https" => {}
        "http" if allow_http => {}
        _ => return Err("scheme not allowed"),
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("credentials in the URL");
    }
    let host = match url.host() {
        Some(url::Host::Domain(d)) => d.trim_end_matches('.').to_ascii_lowercase(),
        // IP literals pass only when listed exactly (tests list 127.0.0.1:port).
        Some(url::Host::Ipv4(ip)) => ip.to_string(),
        Some(url::Host::Ipv6(ip)) => ip.to_string(),
        None => return Err("no host"),
    };
    let port = url.port_or_known_default().ok_or("no port")?;
    let ip = host.parse::<std::net::IpAddr>().is_ok();
    let listed = allow
        .iter()
        .any(|a| a.matches(&host, port) && (!ip || a.is_ip()));
    if listed {
        Ok(())
    } else {
        Err("host not allowed")
    }
}

/// The outcome of a failed fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchError {
    /// Worth another try later (5xx, 429, timeouts, connection errors).
    Retry(String),
    /// Will never succeed: recorded and acknowledged.
    Reject(String),
}

#[derive(Debug)]
pub struct Fetched {
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// `type/subtype` of a Content-Type value, lower case, parameters dropped.
pub fn essence(content_type: &str) -> String {
    content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// File extension for a stored object of `content_type` (`bin` outside the table).
pub fn extension(content_type: &str) -> &'static str {
    crm_domain::media::extension(content_type).unwrap_or("bin")
}

fn transport(e: &reqwest::Error) -> FetchError {
    let class = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    FetchError::Retry(class.to_string())
}

/// Fetches `url` (already checked), following redirects by hand.
pub async fn fetch(
    http: &reqwest::Client,
    url: &Url,
    config: &MediaConfig,
) -> Result<Fetched, FetchError> {
    let origin = url.origin();
    let mut current = url.clone();
    let mut redirects = 0usize;
    let resp = loop {
        let mut req = http.get(current.clone());
        // The credentials go to the job URL's own origin only, never to the CDN.
        if current.origin() == origin {
            req = req.basic_auth(
                &config.credentials.account_sid,
                Some(config.credentials.auth_token.expose()),
            );
        }
        let resp = req.send().await.map_err(|e| transport(&e))?;
        let status = resp.status();
        if !status.is_redirection() {
            break resp;
        }
        if redirects == MAX_REDIRECTS {
            return Err(FetchError::Reject(format!(
                "more than {MAX_REDIRECTS} redirects"
            )));
        }
        let next = resp
            .headers()
            .get(header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .and_then(|l| current.join(l).ok())
            .ok_or_else(|| {
                FetchError::Reject(format!(
                    "HTTP {} without a usable Location",
                    status.as_u16()
                ))
            })?;
        check_url(&next, config)
            .map_err(|why| FetchError::Reject(format!("redirect refused: {why}")))?;
        redirects += 1;
        current = next;
    };
    let status = resp.status();
    if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
        return Err(FetchError::Retry(format!("HTTP {}", status.as_u16())));
    }
    if !status.is_success() {
        return Err(FetchError::Reject(format!("HTTP {}", status.as_u16())));
    }
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(essence)
        .unwrap_or_default();
    if !config.allow_types.contains(&content_type) {
        return Err(FetchError::Reject(if content_type.is_empty() {
            "no content type".to_string()
        } else {
            // The header is the server's: keep the recorded reason short.
            let shown: String = content_type.chars().take(100).collect();
            format!("content type {shown} not allowed")
        }));
    }
    let too_large = || FetchError::Reject(format!("larger than {} bytes", config.max_bytes));
    if resp.content_length().is_some_and(|n| n > config.max_bytes) {
        return Err(too_large());
    }
    let mut resp = resp;
    let mut bytes = Vec::new();
    // Counted as it arrives: a missing or lying Content-Length cannot make us buffer more.
    while let Some(chunk) = resp.chunk().await.map_err(|e| transport(&e))? {
        if (bytes.len() + chunk.len()) as u64 > config.max_bytes {
            return Err(too_large());
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Fetched {
        content_type,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_HOSTS;

    fn allow(list: &str) -> Vec<AllowedHost> {
        use crm_platform::config::{AppEnv, Env};
        let env = Env::from_pairs([
            ("TWILIO_ACCOUNT_SID", "AC1"),
            ("TWILIO_AUTH_TOKEN", "t"),
            ("TWILIO_MEDIA_ALLOW_HOSTS", list),
        ]);
        MediaConfig::from_env(&env, AppEnv::Test)
            .unwrap()
            .allow_hosts
    }

    #[test]
    fn only_twilio_media_urls_pass_the_default_allow_list() {
        let hosts = allow(DEFAULT_HOSTS);
        let table: &[(&str, Result<(), &str>)] = &[
            (
                "https://api.twilio.com/2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
                Ok(()),
            ),
            (
                "https://API.Twilio.com./2010-04-01/Accounts/AC1/Messages/MM1/Media/ME1",
                Ok(()),
            ),
            ("https://api.twilio.com:443/x", Ok(())),
            ("https://media.twiliocdn.com/AC1/abc", Ok(())),
            ("https://mms.us1.twiliocdn.com/AC1/abc", Ok(())),
            ("http://api.twilio.com/x", Err("scheme not allowed")),
            ("ftp://api.twilio.com/x", Err("scheme not allowed")),
            ("file:///etc/passwd", Err("scheme not allowed")),
            (
                "http://169.254.169.254/latest/meta-data/",
                Err("scheme not allowed"),
            ),
            (
                "https://169.254.169.254/latest/meta-data/",
                Err("host not allowed"),
            ),
            ("https://[::1]/x", Err("host not allowed")),
            ("https://[fd00:ec2::254]/x", Err("host not allowed")),
            ("https://2130706433/x", Err("host not allowed")),
            ("https://0x7f.0.0.1/x", Err("host not allowed")),
            ("https://api.twilio.com.evil.com/x", Err("host not allowed")),
            ("https://evil-api.twilio.com/x", Err("host not allowed")),
            ("https://eviltwiliocdn.com/x", Err("host not allowed")),
            ("https://twiliocdn.com/x", Err("host not allowed")),
            ("https://twiliocdn.com.evil.com/x", Err("host not allowed")),
            ("https://api.twilio.com:8443/x", Err("host not allowed")),
            (
                "https://api.twilio.com@evil.com/x",
                Err("credentials in the URL"),
            ),
            (
                "https://user:pass@api.twilio.com/x",
                Err("credentials in the URL"),
            ),
            (
                "https://evil.com@api.twilio.com/x",
                Err("credentials in the URL"),
            ),
            ("https://evil.com%40api.twilio.com/x", Err("not a URL")),
            (
                "https://api.twilio.com%2eevil.com/x",
                Err("host not allowed"),
            ),
            ("https://api%2etwilio%2ecom/x", Ok(())),
        ];
        for (raw, want) in table {
            // Production: no http at all. The worker refuses what does not parse.
            let got = Url::parse(raw)
                .map_err(|_| "not a URL")
                .and_then(|url| check(&url, &hosts, false));
            assert_eq!(got, *want, "{raw}");
        }
        assert!(Url::parse("https://api.twilio.com:99999/x").is_err());
    }

    #[test]
    fn a_listed_test_server_passes_and_http_needs_non_production() {
        let hosts = allow("127.0.0.1:8080");
        let url = Url::parse("http://127.0.0.1:8080/m").unwrap();
        assert_eq!(check(&url, &hosts, true), Ok(()));
        assert_eq!(check(&url, &hosts, false), Err("scheme not allowed"));
        let other_port = Url::parse("http://127.0.0.1:8081/m").unwrap();
        assert_eq!(check(&other_port, &hosts, true), Err("host not allowed"));
        let ip_as_name = Url::parse("http://localhost:8080/m").unwrap();
        assert_eq!(check(&ip_as_name, &hosts, true), Err("host not allowed"));
    }

    #[test]
    fn content_types_are_compared_by_essence() {
        assert_eq!(essence("Image/JPEG; charset=binary"), "image/jpeg");
        assert_eq!(extension("audio/ogg"), "ogg");
        assert_eq!(extension("text/html"), "bin");
    }
}
