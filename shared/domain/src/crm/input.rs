//! Reading request bodies and query strings: every reader names the field in
//! its 422, and unknown body fields are refused (a typo such as `fullname`
//! must not silently do nothing).

use super::error::ApiError;
use serde_json::{Map, Value};
use uuid::Uuid;

/// Larger bodies are refused with 413 before they are parsed.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// The body must be `application/json` (parameters such as charset allowed).
pub fn require_json(content_type: Option<&str>) -> Result<(), ApiError> {
    let media_type = content_type
        .and_then(|ct| ct.split(';').next())
        .map(str::trim)
        .unwrap_or("");
    if media_type.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// Size, content type and JSON syntax, in that order; the body must be an object.
pub fn json_object(
    content_type: Option<&str>,
    body: &[u8],
) -> Result<Map<String, Value>, ApiError> {
    if body.len() > MAX_BODY_BYTES {
        return Err(ApiError::PayloadTooLarge {
            limit: MAX_BODY_BYTES,
        });
    }
    require_json(content_type)?;
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::validation("body", "must be a JSON object")),
        Err(e) => Err(ApiError::Malformed(format!("body is not valid JSON: {e}"))),
    }
}

/// A field that may be absent (leave as is), null (clear) or set.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Patch<T> {
    #[default]
    Absent,
    Null,
    Set(T),
}

impl<T> Patch<T> {
    pub fn is_absent(&self) -> bool {
        matches!(self, Patch::Absent)
    }

    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Patch<U> {
        match self {
            Patch::Absent => Patch::Absent,
            Patch::Null => Patch::Null,
            Patch::Set(v) => Patch::Set(f(v)),
        }
    }

    pub fn try_map<U, E>(self, f: impl FnOnce(T) -> Result<U, E>) -> Result<Patch<U>, E> {
        Ok(match self {
            Patch::Absent => Patch::Absent,
            Patch::Null => Patch::Null,
            Patch::Set(v) => Patch::Set(f(v)?),
        })
    }

    /// `Some(new value)` when the field was given (null → `Some(None)`).
    pub fn given(self) -> Option<Option<T>> {
        match self {
            Patch::Absent => None,
            Patch::Null => Some(None),
            Patch::Set(v) => Some(Some(v)),
        }
    }
}

/// A body object whose fields are read once each; unknown ones are refused.
pub struct Fields {
    map: Map<String, Value>,
}

impl Fields {
    pub fn new(map: Map<String, Value>, allowed: &[&str]) -> Result<Self, ApiError> {
        if let Some(unknown) = map.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(ApiError::validation(
                unknown.clone(),
                "is not a known field",
            ));
        }
        Ok(Self { map })
    }

    /// Text, trimmed; blank counts as null. At most `max` characters.
    pub fn text(&self, name: &str, max: usize) -> Result<Patch<String>, ApiError> {
        match self.map.get(name) {
            None => Ok(Patch::Absent),
            Some(Value::Null) => Ok(Patch::Null),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(Patch::Null),
            Some(Value::String(s)) => {
                let s = s.trim();
                if s.chars().count() > max {
                    return Err(ApiError::validation(
                        name,
                        format!("is longer than {max} characters"),
                    ));
                }
                if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
                    return Err(ApiError::validation(name, "contains control characters"));
                }
                Ok(Patch::Set(s.to_string()))
            }
            Some(_) => Err(ApiError::validation(name, "must be a string")),
        }
    }

    pub fn uuid(&self, name: &str) -> Result<Patch<Uuid>, ApiError> {
        match self.map.get(name) {
            None => Ok(Patch::Absent),
            Some(Value::Null) => Ok(Patch::Null),
            Some(Value::String(s)) => Uuid::parse_str(s.trim())
                .map(Patch::Set)
                .map_err(|_| ApiError::validation(name, "must be a UUID")),
            Some(_) => Err(ApiError::validation(name, "must be a UUID string")),
        }
    }

    /// A whole number (JSON integer, no fraction) in `min..=max`.
    pub fn integer(&self, name: &str, min: i64, max: i64) -> Result<Patch<i64>, ApiError> {
        match self.map.get(name) {
            None => Ok(Patch::Absent),
            Some(Value::Null) => Ok(Patch::Null),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(v) if (min..=max).contains(&v) => Ok(Patch::Set(v)),
                Some(_) => Err(ApiError::validation(
                    name,
                    format!("must be between {min} and {max}"),
                )),
                None if n.as_u64().is_some() => Err(ApiError::validation(
                    name,
                    format!("must be between {min} and {max}"),
                )),
                None => Err(ApiError::validation(name, "must be a whole number")),
            },
            Some(_) => Err(ApiError::validation(name, "must be a whole number")),
        }
    }
}

impl Fields {
    /// A JSON boolean.
    pub fn boolean(&self, name: &str) -> Result<Patch<bool>, ApiError> {
        match self.map.get(name) {
            None => Ok(Patch::Absent),
            Some(Value::Null) => Ok(Patch::Null),
            Some(Value::Bool(b)) => Ok(Patch::Set(*b)),
            Some(_) => Err(ApiError::validation(name, "must be true or false")),
        }
    }

    /// The raw value of a field (for lists and objects the caller reads itself).
    pub fn raw(&self, name: &str) -> Option<&Value> {
        self.map.get(name)
    }
}

/// `Set` or a 422 saying the field is required.
pub fn required<T>(patch: Patch<T>, name: &str) -> Result<T, ApiError> {
    match patch {
        Patch::Set(v) => Ok(v),
        _ => Err(ApiError::validation(name, "is required")),
    }
}

/// ISO 4217 codes in current use (2026), for `currency`.
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BHD",
    "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF",
    "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN",
    "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD",
    "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES",
    "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL",
    "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN",
    "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP",
    "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK",
    "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT",
    "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VES", "VND",
    "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG",
];

/// An ISO 4217 currency code, upper-cased (`try` → `TRY`).
pub fn currency(raw: &str) -> Result<String, &'static str> {
    let code = raw.trim().to_ascii_uppercase();
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_uppercase()) {
        return Err("must be a three-letter ISO 4217 code");
    }
    if ISO_4217.binary_search(&code.as_str()).is_err() {
        return Err("is not an ISO 4217 currency code");
    }
    Ok(code)
}

/// Query-string `limit`: 1..=`max`, default `default`.
pub fn limit(raw: Option<&str>, default: i64, max: i64) -> Result<i64, ApiError> {
    match raw.map(str::trim).filter(|s| !s.is_empty()) {
        None => Ok(default),
        Some(s) => match s.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::validation(
                "limit",
                format!("must be a whole number between 1 and {max}"),
            )),
        },
    }
}

/// Query-string UUID, `None` when absent or blank.
pub fn query_uuid(raw: Option<&str>, name: &str) -> Result<Option<Uuid>, ApiError> {
    raw.map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| Uuid::parse_str(s).map_err(|_| ApiError::validation(name, "must be a UUID")))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn fields(v: Value, allowed: &[&str]) -> Result<Fields, ApiError> {
        Fields::new(v.as_object().unwrap().clone(), allowed)
    }

    #[test]
    fn unknown_fields_are_refused_by_name() {
        let e = fields(json!({"fullname": "x"}), &["full_name"])
            .err()
            .unwrap();
        assert_eq!(e.body()["field"], "fullname");
    }

    #[test]
    fn text_is_trimmed_blank_is_null_and_type_errors_name_the_field() {
        let f = fields(
            json!({"a": "  x ", "b": " ", "c": null, "d": 5}),
            &["a", "b", "c", "d"],
        )
        .unwrap();
        assert_eq!(f.text("a", 10).unwrap(), Patch::Set("x".into()));
        assert_eq!(f.text("b", 10).unwrap(), Patch::Null);
        assert_eq!(f.text("c", 10).unwrap(), Patch::Null);
        assert_eq!(f.text("z", 10).unwrap(), Patch::Absent);
        assert_eq!(f.text("d", 10).unwrap_err().body()["field"], "d");
        assert!(f.text("a", 0).is_err());
    }

    #[test]
    fn integers_must_be_whole_and_in_range() {
        let f = fields(
            json!({"a": 5, "b": 1.5, "c": -1, "d": "5", "e": 18446744073709551615u64}),
            &["a", "b", "c", "d", "e"],
        )
        .unwrap();
        assert_eq!(f.integer("a", 0, 10).unwrap(), Patch::Set(5));
        for name in ["b", "c", "d", "e"] {
            assert_eq!(
                f.integer(name, 0, i64::MAX).unwrap_err().body()["field"],
                name
            );
        }
    }

    #[test]
    fn currency_codes_are_iso_4217() {
        assert_eq!(currency("try").unwrap(), "TRY");
        assert_eq!(currency("BRL").unwrap(), "BRL");
        assert!(currency("XYZ").is_err());
        assert!(currency("US").is_err());
        assert!(currency("U$D").is_err());
        assert!(
            ISO_4217.windows(2).all(|w| w[0] < w[1]),
            "sorted for binary search"
        );
    }

    #[test]
    fn body_checks_run_size_then_type_then_syntax() {
        let big = vec![b' '; MAX_BODY_BYTES + 1];
        assert_eq!(
            json_object(Some("text/plain"), &big).unwrap_err().status(),
            413
        );
        assert_eq!(
            json_object(Some("text/plain"), b"{}").unwrap_err().status(),
            415
        );
        assert_eq!(
            json_object(Some("application/json"), b"{")
                .unwrap_err()
                .status(),
            400
        );
        assert_eq!(
            json_object(Some("application/json"), b"[]")
                .unwrap_err()
                .status(),
            422
        );
        assert!(json_object(Some("application/json; charset=utf-8"), b"{}").is_ok());
    }

    #[test]
    fn limit_defaults_and_bounds() {
        assert_eq!(limit(None, 50, 200).unwrap(), 50);
        assert_eq!(limit(Some("200"), 50, 200).unwrap(), 200);
        for bad in ["0", "201", "x", "-1"] {
            assert_eq!(
                limit(Some(bad), 50, 200).unwrap_err().body()["field"],
                "limit"
            );
        }
    }
}
