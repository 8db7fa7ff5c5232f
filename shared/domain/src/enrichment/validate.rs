//! Contact data of a C2S lead, checked before any paid lookup. An invalid
//! value is not looked up; the reason is recorded (never the value).
//!
//! E-mail: RFC 5321/5322 syntax and limits (local part ≤ 64, domain ≤ 255,
//! address ≤ 254, labels ≤ 63), a TLD required, no display name or domain
//! literal; then fake patterns typed into lead forms: a long run of one digit
//! (`1199999999333@…`), a digit sequence (`123456…`, `…987654`), or a
//! placeholder domain / local part.
//!
//! Phone: Brazilian numbers to E.164 with libphonenumber's metadata
//! (`phonenumber`), after the mobile 9th-digit rule: a 10-digit national
//! number whose subscriber part starts 6–9 is an old-style mobile and gets
//! its 9; an 11-digit one must start 9 after the area code.

use crate::phone::{PhoneE164, PhoneRegion};
use email_address::{EmailAddress as Rfc, Options};
use serde::Serialize;

/// Digits in a row that make a local part fake (`999999`).
pub const FAKE_RUN: usize = 6;
/// Consecutive ascending or descending digits that make it fake (`123456`).
pub const FAKE_SEQUENCE: usize = 6;

/// Domains people type when they have no address, and reserved test domains.
const PLACEHOLDER_DOMAINS: &[&str] = &[
    "example.com",
    "example.org",
    "example.net",
    "example.com.br",
    "test.com",
    "teste.com",
    "teste.com.br",
    "testing.com",
    "email.com.br",
    "emaill.com",
    "domain.com",
    "dominio.com",
    "dominio.com.br",
    "sememail.com",
    "sememail.com.br",
    "naotem.com",
    "naotem.com.br",
    "nao.com",
    "xxx.com",
    "asd.com",
    "aaa.com",
    "abc.com",
    "mailinator.com",
];
/// Reserved TLDs (RFC 2606 / 6761).
const PLACEHOLDER_TLDS: &[&str] = &["test", "example", "invalid", "localhost", "local"];
/// Local parts that say "no e-mail".
const PLACEHOLDER_LOCALS: &[&str] = &[
    "naotem",
    "nao.tem",
    "nao_tem",
    "sememail",
    "sem.email",
    "sem_email",
    "naopossui",
    "nenhum",
    "teste",
    "test",
    "email",
    "noemail",
    "no-email",
    "none",
    "null",
    "xxx",
    "asdf",
];

/// A checked, lower-cased e-mail address fit for a lookup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidEmail(String);

impl ValidEmail {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A checked Brazilian phone number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidPhone {
    e164: PhoneE164,
}

impl ValidPhone {
    /// `+5511987654321`.
    pub fn e164(&self) -> &str {
        self.e164.as_str()
    }

    /// Area code and number without the country code: `11987654321`
    /// (what Diretrix takes).
    pub fn national(&self) -> &str {
        &self.e164.as_str()[3..]
    }
}

/// What validation made of one field: recorded per run, without the value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldCheck {
    pub valid: bool,
    /// Why not (or `not provided`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl FieldCheck {
    pub fn of<T>(r: &Result<T, String>) -> Self {
        match r {
            Ok(_) => Self {
                valid: true,
                reason: None,
            },
            Err(why) => Self {
                valid: false,
                reason: Some(why.clone()),
            },
        }
    }
}

pub fn email(raw: Option<&str>) -> Result<ValidEmail, String> {
    let raw = raw
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or("not provided")?;
    if raw.chars().count() > 254 {
        return Err("longer than 254 characters".into());
    }
    let options = Options::default()
        .without_display_text()
        .without_domain_literal()
        .with_required_tld();
    let parsed = Rfc::parse_with_options(raw, options)
        .map_err(|e| format!("not a valid address ({})", describe(&e)))?;
    let (local, domain) = (parsed.local_part(), parsed.domain());
    if local.len() > 64 {
        return Err("local part longer than 64 characters".into());
    }
    if domain.len() > 255 {
        return Err("domain longer than 255 characters".into());
    }
    if domain.split('.').any(|l| l.is_empty() || l.len() > 63) {
        return Err("a domain label is empty or longer than 63 characters".into());
    }
    let address = raw.to_lowercase();
    let (local, domain) = address.rsplit_once('@').expect("parsed above");
    if let Some(why) = fake_local(local) {
        return Err(format!("fake: {why}"));
    }
    let tld = domain.rsplit('.').next().unwrap_or_default();
    if PLACEHOLDER_DOMAINS.contains(&domain) || PLACEHOLDER_TLDS.contains(&tld) {
        return Err("fake: placeholder domain".into());
    }
    Ok(ValidEmail(address))
}

fn describe(e: &email_address::Error) -> &'static str {
    use email_address::Error::*;
    match e {
        MissingSeparator => "no @",
        LocalPartEmpty => "empty local part",
        LocalPartTooLong => "local part longer than 64 characters",
        DomainEmpty => "empty domain",
        DomainTooLong => "domain longer than 255 characters",
        SubDomainEmpty => "empty domain label",
        SubDomainTooLong => "domain label longer than 63 characters",
        DomainTooFew => "no top-level domain",
        DomainInvalidSeparator => "bad domain separator",
        InvalidCharacter => "invalid character",
        UnbalancedQuotes => "unbalanced quotes",
        InvalidComment => "invalid comment",
        InvalidIPAddress => "invalid IP address",
        UnsupportedDomainLiteral => "domain literal",
        UnsupportedDisplayName => "display name",
        MissingDisplayName => "missing display name",
        MissingEndBracket => "missing >",
    }
}

/// Why a local part looks typed to fill a form, if it does.
fn fake_local(local: &str) -> Option<&'static str> {
    if PLACEHOLDER_LOCALS.contains(&local) {
        return Some("placeholder local part");
    }
    let b = local.as_bytes();
    let (mut run, mut up, mut down) = (1usize, 1usize, 1usize);
    for i in 1..b.len() {
        let (p, c) = (b[i - 1], b[i]);
        let digits = p.is_ascii_digit() && c.is_ascii_digit();
        run = if digits && c == p { run + 1 } else { 1 };
        up = if digits && c == p + 1 { up + 1 } else { 1 };
        down = if digits && c + 1 == p { down + 1 } else { 1 };
        if run >= FAKE_RUN {
            return Some("a long run of one digit");
        }
        if up >= FAKE_SEQUENCE || down >= FAKE_SEQUENCE {
            return Some("a digit sequence");
        }
    }
    None
}

pub fn phone(raw: Option<&str>) -> Result<ValidPhone, String> {
    let raw = raw
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .ok_or("not provided")?;
    if raw.len() > 40 {
        return Err("longer than 40 characters".into());
    }
    if !raw
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '+' | ' ' | '-' | '(' | ')' | '.'))
    {
        return Err("has characters other than digits".into());
    }
    let mut digits: String = raw.chars().filter(char::is_ascii_digit).collect();
    let international = raw.starts_with('+') || (digits.starts_with("55") && digits.len() >= 12);
    if international {
        if !digits.starts_with("55") {
            return Err("not a Brazilian number".into());
        }
        digits.drain(..2);
    }
    // A trunk prefix (0, or 0 + a two-digit carrier code) before the area code.
    if digits.starts_with('0') {
        digits = match digits.len() {
            11 | 12 => digits[1..].to_string(),
            13 | 14 => digits[3..].to_string(),
            _ => digits,
        };
    }
    let national = match digits.len() {
        10 => {
            let first = digits.as_bytes()[2];
            if (b'6'..=b'9').contains(&first) {
                // An old-style mobile: the 9th digit was added in 2012–2016.
                format!("{}9{}", &digits[..2], &digits[2..])
            } else {
                digits
            }
        }
        11 if digits.as_bytes()[2] != b'9' => {
            return Err("an 11-digit number must be a mobile starting with 9".into());
        }
        11 => digits,
        n => {
            return Err(format!(
                "{n} digits: a Brazilian number has 10 or 11 with the area code"
            ));
        }
    };
    let subscriber = &national[2..];
    if subscriber
        .bytes()
        .skip(1)
        .all(|d| d == subscriber.as_bytes()[1])
    {
        return Err("fake: one repeated digit".into());
    }
    let region = PhoneRegion::parse("BR").expect("BR is a region");
    let e164 = PhoneE164::parse(&format!("+55{national}"), region)
        .map_err(|why| format!("{why} (area code or number)"))?;
    Ok(ValidPhone { e164 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn email_validation_table() {
        let long_local = format!("{}@gmail.com", "a".repeat(65));
        let long_label = format!("ana@{}.com", "a".repeat(64));
        let long_total = format!(
            "{}@{}.com.br",
            "a".repeat(64),
            vec!["b".repeat(60); 4].join(".")
        );
        let table: &[(&str, Result<&str, &str>)] = &[
            ("maria.silva@gmail.com", Ok("maria.silva@gmail.com")),
            ("  Maria.Silva@Gmail.COM ", Ok("maria.silva@gmail.com")),
            (
                "joao+imoveis@empresa.com.br",
                Ok("joao+imoveis@empresa.com.br"),
            ),
            ("ana2023@hotmail.com", Ok("ana2023@hotmail.com")),
            ("cliente11987@uol.com.br", Ok("cliente11987@uol.com.br")),
            (
                "1199999999333@gmail.com",
                Err("fake: a long run of one digit"),
            ),
            ("999999@gmail.com", Err("fake: a long run of one digit")),
            ("abc111111@gmail.com", Err("fake: a long run of one digit")),
            ("x000000x@gmail.com", Err("fake: a long run of one digit")),
            ("123456789@gmail.com", Err("fake: a digit sequence")),
            ("ana987654@gmail.com", Err("fake: a digit sequence")),
            ("ana@example.com", Err("fake: placeholder domain")),
            ("ana@teste.com.br", Err("fake: placeholder domain")),
            ("ana@empresa.test", Err("fake: placeholder domain")),
            ("naotem@gmail.com", Err("fake: placeholder local part")),
            ("sememail@hotmail.com", Err("fake: placeholder local part")),
            ("", Err("not provided")),
            ("ana", Err("not a valid address (no @)")),
            (
                "ana@gmail",
                Err("not a valid address (no top-level domain)"),
            ),
            (
                "Ana <ana@gmail.com>",
                Err("not a valid address (display name)"),
            ),
            (
                "ana@[127.0.0.1]",
                Err("not a valid address (domain literal)"),
            ),
            (
                "ana@@gmail.com",
                Err("not a valid address (invalid character)"),
            ),
            (
                "ana silva@gmail.com",
                Err("not a valid address (invalid character)"),
            ),
        ];
        for (raw, want) in table {
            let got = email(Some(raw));
            match want {
                Ok(addr) => assert_eq!(got.as_ref().map(ValidEmail::as_str), Ok(*addr), "{raw}"),
                Err(why) => assert_eq!(
                    got.as_ref().map_err(String::as_str).err(),
                    Some(*why),
                    "{raw}"
                ),
            }
        }
        for raw in [
            long_local.as_str(),
            long_label.as_str(),
            long_total.as_str(),
        ] {
            assert!(email(Some(raw)).is_err(), "{raw}");
        }
        assert_eq!(email(None).unwrap_err(), "not provided");
    }

    #[test]
    fn brazilian_phones_become_e164_with_the_ninth_digit_rule() {
        type Row<'a> = (&'a str, Result<(&'a str, &'a str), &'a str>);
        let table: &[Row] = &[
            ("11987654321", Ok(("+5511987654321", "11987654321"))),
            ("(11) 98765-4321", Ok(("+5511987654321", "11987654321"))),
            ("+55 11 98765-4321", Ok(("+5511987654321", "11987654321"))),
            ("5511987654321", Ok(("+5511987654321", "11987654321"))),
            ("011987654321", Ok(("+5511987654321", "11987654321"))),
            ("0 21 11 98765-4321", Ok(("+5511987654321", "11987654321"))),
            // Old-style mobile: the 9 is added.
            ("1187654321", Ok(("+5511987654321", "11987654321"))),
            ("+55 11 8765-4321", Ok(("+5511987654321", "11987654321"))),
            // Landline: kept as is.
            ("1133334444", Ok(("+551133334444", "1133334444"))),
            ("(21) 2555-1234", Ok(("+552125551234", "2125551234"))),
            (
                "11887654321",
                Err("an 11-digit number must be a mobile starting with 9"),
            ),
            (
                "119876543",
                Err("9 digits: a Brazilian number has 10 or 11 with the area code"),
            ),
            ("+1 650 253 0000", Err("not a Brazilian number")),
            ("11999999999", Err("fake: one repeated digit")),
            (
                "00987654321",
                Err("is not a valid phone number (area code or number)"),
            ),
            ("ligar depois", Err("has characters other than digits")),
            ("", Err("not provided")),
        ];
        for (raw, want) in table {
            let got = phone(Some(raw));
            match want {
                Ok((e164, national)) => {
                    let p = got.unwrap_or_else(|e| panic!("{raw}: {e}"));
                    assert_eq!((p.e164(), p.national()), (*e164, *national), "{raw}");
                }
                Err(why) => assert_eq!(got.unwrap_err(), *why, "{raw}"),
            }
        }
    }

    #[test]
    fn field_checks_record_reasons_not_values() {
        let check = FieldCheck::of(&email(Some("1199999999333@gmail.com")));
        let json = serde_json::to_string(&check).unwrap();
        assert_eq!(
            json,
            r#"{"valid":false,"reason":"fake: a long run of one digit"}"#
        );
        assert!(FieldCheck::of(&phone(Some("11987654321"))).valid);
    }

    proptest::proptest! {
        #[test]
        fn validation_never_panics_and_valid_phones_are_brazilian_e164(raw in "[0-9 ()+.-]{0,24}", mail in ".{0,80}") {
            if let Ok(p) = phone(Some(&raw)) {
                proptest::prop_assert!(p.e164().starts_with("+55"));
                proptest::prop_assert!(matches!(p.national().len(), 10 | 11));
            }
            if let Ok(e) = email(Some(&mail)) {
                proptest::prop_assert!(e.as_str().len() <= 254 && e.as_str().contains('@'));
            }
        }
    }
}
