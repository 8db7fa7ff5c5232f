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

    #[test]
    fn region_must_be_a_known_two_letter_code() {
        assert!(PhoneRegion::parse("XX").is_err());
        assert!(PhoneRegion::parse("TUR").is_err());
        assert_eq!(PhoneRegion::default(), tr());
    }
}
