//! Phone numbers in E.164 (`+905321234567`), the CRM's identity for a person
//! by phone. Numbers without a country code are read in a default region
//! (`DEFAULT_PHONE_REGION`, e.g. `TR`). `phonenumber::parse` accepts numbers
//! that cannot exist, so validity is always checked.

use phonenumber::{Mode, country};
use std::{fmt, str::FromStr};

/// The region a number without `+<country code>` is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PhoneRegion(country::Id);

impl PhoneRegion {
    /// Turkey: the default when `DEFAULT_PHONE_REGION` is unset.
    pub const DEFAULT: &'static str = "TR";

    /// A two-letter CLDR region code (`TR`, `BR`, `US`), case-insensitive.
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let code = raw.trim().to_ascii_uppercase();
        if code.len() != 2 {
            return Err("must be a two-letter region code such as TR");
        }
        country::Id::from_str(&code)
            .map(Self)
            .map_err(|_| "is not a known region code")
    }
}

impl Default for PhoneRegion {
    fn default() -> Self {
        Self(country::Id::TR)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PhoneE164(String);

impl PhoneE164 {
    pub fn parse(raw: &str, region: PhoneRegion) -> Result<Self, &'static str> {
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("is required");
        }
        if trimmed.len() > 40 {
            return Err("is longer than 40 characters");
        }
        let number =
            phonenumber::parse(Some(region.0), trimmed).map_err(|_| "is not a phone number")?;
        if !number.is_valid() {
            return Err("is not a valid phone number");
        }
        Ok(Self(number.format().mode(Mode::E164).to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// A number as a messaging provider reports a sender: like `parse`, but
    /// digits without `+` are also tried as international (`905321234567`),
    /// and a Brazilian mobile without its 9th digit (`+55 11 8765-4321`, as
    /// older WhatsApp ids carry it) gets the digit back.
    pub fn parse_sender(raw: &str, region: PhoneRegion) -> Result<Self, &'static str> {
        let first = Self::parse(raw, region);
        if first.is_ok() {
            return first;
        }
        let digits: String = raw.chars().filter(char::is_ascii_digit).collect();
        let plain = raw
            .trim()
            .trim_start_matches('+')
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, ' ' | '-' | '(' | ')' | '.'));
        if !plain || digits.len() < 10 || digits.len() > 15 {
            return first;
        }
        let international = format!("+{digits}");
        if let Ok(p) = Self::parse(&international, region) {
            return Ok(p);
        }
        match br_with_ninth_digit(&digits) {
            Some(with_nine) => Self::parse(&with_nine, region).or(first),
            None => first,
        }
    }

    /// The spellings a stored contact may carry for this same number, all
    /// inside its own country (docs/security.md, "Phone variants"): itself,
    /// the trunk 0 kept after the country code (`+90 0532…`), and for a
    /// Brazilian mobile the form without the 9th digit. Never another
    /// country's number with the same last digits.
    pub fn variants(&self) -> Vec<String> {
        let mut out = vec![self.0.clone()];
        if let Ok(number) = phonenumber::parse(None, &self.0) {
            let code = number.code().value();
            let national = number.national().value();
            let with_trunk = format!("+{code}0{national}");
            // The stored form is `+` and at most 15 digits (migrations/V1).
            if with_trunk.len() <= 16 && with_trunk != self.0 {
                out.push(with_trunk);
            }
        }
        let digits = &self.0[1..];
        // +55 DD 9XXXXXXXX: 13 digits with a 9 after the area code.
        if digits.len() == 13 && digits.starts_with("55") && digits.as_bytes()[4] == b'9' {
            out.push(format!("+{}{}", &digits[..4], &digits[5..]));
        }
        out
    }
}

/// `55 DD XXXXXXXX` with a mobile-looking subscriber number (6–9 first) → `+55 DD 9XXXXXXXX`.
fn br_with_ninth_digit(digits: &str) -> Option<String> {
    let b = digits.as_bytes();
    (digits.len() == 12 && digits.starts_with("55") && (b'6'..=b'9').contains(&b[4]))
        .then(|| format!("+{}9{}", &digits[..4], &digits[4..]))
}

impl fmt::Display for PhoneE164 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tr() -> PhoneRegion {
        PhoneRegion::parse("tr").unwrap()
    }

    #[test]
    fn phone_without_country_code_gets_default_region() {
        assert_eq!(
            PhoneE164::parse("0532 123 45 67", tr()).unwrap().as_str(),
            "+905321234567"
        );
        let br = PhoneRegion::parse("BR").unwrap();
        assert_eq!(
            PhoneE164::parse("(11) 98765-4321", br).unwrap().as_str(),
            "+5511987654321"
        );
    }

    #[test]
    fn phone_with_country_code_ignores_the_region() {
        assert_eq!(
            PhoneE164::parse("+55 11 98765-4321", tr())
                .unwrap()
                .as_str(),
            "+5511987654321"
        );
        assert_eq!(
            PhoneE164::parse("+1 (650) 253-0000", tr())
                .unwrap()
                .as_str(),
            "+16502530000"
        );
    }

    #[test]
    fn impossible_numbers_are_refused_even_when_they_parse() {
        assert_eq!(
            PhoneE164::parse("+90 123", tr()),
            Err("is not a valid phone number")
        );
        assert!(PhoneE164::parse("12", tr()).is_err());
        assert!(PhoneE164::parse("call me", tr()).is_err());
        assert_eq!(PhoneE164::parse(" ", tr()), Err("is required"));
    }

    /// (raw sender, region, E.164): what Twilio's `From` (or a CRM user) may carry.
    const SENDERS: &[(&str, &str, &str)] = &[
        ("+905321234567", "TR", "+905321234567"),
        ("0532 123 45 67", "TR", "+905321234567"),
        ("5321234567", "TR", "+905321234567"),
        ("905321234567", "TR", "+905321234567"),
        ("+90 (532) 123-4567", "BR", "+905321234567"),
        ("+5511987654321", "BR", "+5511987654321"),
        ("+551187654321", "BR", "+5511987654321"),
        ("551187654321", "TR", "+5511987654321"),
        ("5511987654321", "TR", "+5511987654321"),
        ("(11) 98765-4321", "BR", "+5511987654321"),
        ("+55 21 99876-5432", "TR", "+5521998765432"),
        ("+552198765432", "TR", "+5521998765432"),
    ];

    #[test]
    fn sender_numbers_in_tr_and_br_spellings_become_one_e164() {
        for (raw, region, want) in SENDERS {
            let got = PhoneE164::parse_sender(raw, PhoneRegion::parse(region).unwrap());
            assert_eq!(
                got.as_ref().map(PhoneE164::as_str),
                Ok(*want),
                "{raw} in {region}"
            );
        }
    }

    #[test]
    fn sender_parsing_still_refuses_what_is_not_a_number() {
        for raw in ["", "call me", "+90 123", "12345", "whatsapp:abc"] {
            assert!(PhoneE164::parse_sender(raw, tr()).is_err(), "{raw}");
        }
    }

    #[test]
    fn brazilian_mobiles_also_match_without_the_ninth_digit() {
        let br = PhoneE164::parse("+5511987654321", tr()).unwrap();
        assert_eq!(
            br.variants(),
            ["+5511987654321", "+55011987654321", "+551187654321"]
        );
        let tr_mobile = PhoneE164::parse("+905321234567", tr()).unwrap();
        assert_eq!(tr_mobile.variants(), ["+905321234567", "+9005321234567"]);
    }

    #[test]
    fn variants_never_leave_the_country() {
        // +86 153 2123 4567 ends in the same 10 digits as +90 532 123 4567.
        let cn = PhoneE164::parse("+8615321234567", tr()).unwrap();
        for v in cn.variants() {
            assert!(v.starts_with("+86"), "{v}");
        }
        assert!(!cn.variants().contains(&"+905321234567".to_string()));
    }

    #[test]
    fn region_must_be_a_known_two_letter_code() {
        assert!(PhoneRegion::parse("XX").is_err());
        assert!(PhoneRegion::parse("TUR").is_err());
        assert_eq!(PhoneRegion::default(), tr());
    }
}
