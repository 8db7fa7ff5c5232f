//! Twilio's request signature (`X-Twilio-Signature`): base64 HMAC-SHA1,
//! keyed by the account's auth token, over the full URL Twilio called
//! followed by every POST parameter name and value, sorted by name (a
//! repeated name contributes all its values, in the order sent).
//!
//! Twilio signs the URL as configured on the number, which may or may not
//! spell the default port; its validators accept both, and so do we.

use crate::secret::Secret;
use base64::{Engine, engine::general_purpose::STANDARD};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// The URL and parameters as Twilio concatenates them before signing.
/// Parameters are decoded leniently here: a body that is not valid form
/// encoding cannot carry a valid signature anyway, and is refused later.
pub fn signing_input(url: &str, body: &[u8]) -> String {
    let mut out = String::with_capacity(url.len() + body.len());
    out.push_str(url);
    out.push_str(&signed_params(body));
    out
}

/// Every parameter name and value, sorted by name (the part after the URL).
fn signed_params(body: &[u8]) -> String {
    let mut params: Vec<(String, String)> = form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    // Stable: repeated names keep their values in the order sent.
    params.sort_by(|a, b| a.0.cmp(&b.0));
    let mut out = String::with_capacity(body.len());
    for (k, v) in &params {
        out.push_str(k);
        out.push_str(v);
    }
    out
}

/// The base64 signature Twilio would send, for signing tests and samples.
pub fn sign(token: &str, url: &str, body: &[u8]) -> String {
    let mut mac =
        <Hmac<Sha1> as KeyInit>::new_from_slice(token.as_bytes()).expect("any key length");
    mac.update(signing_input(url, body).as_bytes());
    STANDARD.encode(mac.finalize().into_bytes())
}

/// Whether `signature` (base64) is Twilio's over `url` — as given, or with
/// its default port added or removed — and `body`. Constant time per URL.
pub fn matches(token: &Secret, url: &str, body: &[u8], signature: &str) -> bool {
    let Ok(expected) = STANDARD.decode(signature) else {
        return false;
    };
    // The parameters are decoded and sorted once, whichever URL variant matches.
    let params = signed_params(body);
    url_variants(url).iter().any(|candidate| {
        let mut mac = <Hmac<Sha1> as KeyInit>::new_from_slice(token.expose().as_bytes())
            .expect("any key length");
        mac.update(candidate.as_bytes());
        mac.update(params.as_bytes());
        mac.verify_slice(&expected).is_ok()
    })
}

/// `url` itself, then the same URL with the scheme's default port (`:443`
/// for https, `:80` for http) removed when present or added when absent.
pub fn url_variants(url: &str) -> Vec<String> {
    let mut out = vec![url.to_string()];
    let Some((scheme, rest)) = url.split_once("://") else {
        return out;
    };
    let default_port = match scheme.to_ascii_lowercase().as_str() {
        "https" => "443",
        "http" => "80",
        _ => return out,
    };
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(split);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    // A port follows the last ':' unless that ':' is inside an IPv6 literal.
    let (host, port) = match hostport.rsplit_once(':') {
        Some((h, p)) if !p.contains(']') => (h, Some(p)),
        _ => (hostport, None),
    };
    let other = match port {
        Some(p) if p == default_port => format!("{scheme}://{userinfo}{host}{tail}"),
        Some(_) => return out,
        None => format!("{scheme}://{userinfo}{host}:{default_port}{tail}"),
    };
    out.push(other);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // Twilio's published example (docs "Webhooks security" and the
    // TwilioDevEd/api-snippets signature_validation samples): auth token
    // 12345, this URL and these parameters give this signature.
    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const PARAMS: &[u8] =
        b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1234&From=%2B14158675309&To=%2B18005551212";
    const SIGNATURE: &str = "RSOYDt4T1cUTdK1PDd93/VVr8B8=";
    // The same example in the 3.x snippet, with another caller.
    const PARAMS_3X: &[u8] =
        b"CallSid=CA1234567890ABCDE&Caller=%2B14158675310&Digits=1234&From=%2B14158675310&To=%2B18005551212";
    const SIGNATURE_3X: &str = "GvWf1cFY/Q7PnoempGyD5oXAezc=";

    fn token() -> Secret {
        Secret::new(TOKEN).unwrap()
    }

    #[test]
    fn twilio_signature_matches_the_published_known_answers() {
        assert_eq!(sign(TOKEN, URL, PARAMS), SIGNATURE);
        assert_eq!(sign(TOKEN, URL, PARAMS_3X), SIGNATURE_3X);
        assert!(matches(&token(), URL, PARAMS, SIGNATURE));
        assert!(matches(&token(), URL, PARAMS_3X, SIGNATURE_3X));
    }

    #[test]
    fn parameter_order_in_the_body_does_not_matter() {
        let shuffled = b"To=%2B18005551212&Digits=1234&From=%2B14158675309&CallSid=CA1234567890ABCDE&Caller=%2B14158675309";
        assert!(matches(&token(), URL, shuffled, SIGNATURE));
    }

    #[test]
    fn a_signature_over_other_params_url_or_token_is_refused() {
        let other_body = b"CallSid=CA1234567890ABCDE&Caller=%2B14158675309&Digits=1235&From=%2B14158675309&To=%2B18005551212";
        assert!(!matches(&token(), URL, other_body, SIGNATURE));
        assert!(!matches(
            &token(),
            "https://mycompany.com/myapp.php?foo=1&bar=3",
            PARAMS,
            SIGNATURE
        ));
        assert!(!matches(
            &Secret::new("54321").unwrap(),
            URL,
            PARAMS,
            SIGNATURE
        ));
        assert!(!matches(&token(), URL, PARAMS, "not base64!"));
        assert!(!matches(&token(), URL, PARAMS, ""));
    }

    #[test]
    fn the_default_port_may_be_spelled_or_not() {
        // Signed with :443, checked against the URL without it, and the other way round.
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        let signed_with_port = sign(TOKEN, with_port, PARAMS);
        assert!(matches(&token(), URL, PARAMS, &signed_with_port));
        assert!(matches(&token(), with_port, PARAMS, SIGNATURE));
        // Another port is another URL.
        let odd = sign(
            TOKEN,
            "https://mycompany.com:8443/myapp.php?foo=1&bar=2",
            PARAMS,
        );
        assert!(!matches(&token(), URL, PARAMS, &odd));
    }

    #[test]
    fn url_variants_add_or_drop_only_the_schemes_default_port() {
        assert_eq!(
            url_variants("https://h.example/p?q=1"),
            ["https://h.example/p?q=1", "https://h.example:443/p?q=1"]
        );
        assert_eq!(
            url_variants("http://h.example:80/p"),
            ["http://h.example:80/p", "http://h.example/p"]
        );
        assert_eq!(
            url_variants("https://h.example:8443/p"),
            ["https://h.example:8443/p"]
        );
        assert_eq!(
            url_variants("http://[::1]/p"),
            ["http://[::1]/p", "http://[::1]:80/p"]
        );
    }

    #[test]
    fn repeated_names_contribute_every_value_in_order() {
        assert_eq!(signing_input("u", b"b=2&a=x&b=1"), "uaxb2b1");
    }
}
