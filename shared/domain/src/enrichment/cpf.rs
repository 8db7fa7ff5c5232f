//! Brazilian CPF numbers: 11 digits, the last two mod-11 check digits of the
//! first nine. A CPF of one repeated digit passes the arithmetic but is not
//! issued, so it is refused.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Cpf(String);

impl Cpf {
    /// Accepts digits with the usual punctuation (`123.456.789-09`).
    pub fn parse(raw: &str) -> Result<Self, &'static str> {
        let raw = raw.trim();
        if raw.is_empty() {
            return Err("is empty");
        }
        if !raw
            .chars()
            .all(|c| c.is_ascii_digit() || matches!(c, '.' | '-' | ' '))
        {
            return Err("has characters other than digits");
        }
        let digits: Vec<u32> = raw.chars().filter_map(|c| c.to_digit(10)).collect();
        if digits.len() != 11 {
            return Err("does not have 11 digits");
        }
        if digits.iter().all(|d| *d == digits[0]) {
            return Err("is one repeated digit");
        }
        if check_digit(&digits[..9]) != digits[9] || check_digit(&digits[..10]) != digits[10] {
            return Err("has wrong check digits");
        }
        Ok(Self(
            digits.iter().map(|d| char::from(b'0' + *d as u8)).collect(),
        ))
    }

    /// The 11 digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Mod-11 check digit over `digits`, weights `len+1` down to 2.
fn check_digit(digits: &[u32]) -> u32 {
    let n = digits.len() as u32 + 1;
    let sum: u32 = digits
        .iter()
        .enumerate()
        .map(|(i, d)| d * (n - i as u32))
        .sum();
    let rest = (sum * 10) % 11;
    if rest == 10 { 0 } else { rest }
}

impl fmt::Display for Cpf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl serde::Serialize for Cpf {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> serde::Deserialize<'de> for Cpf {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = <String as serde::Deserialize>::deserialize(d)?;
        Cpf::parse(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_cpfs_pass_with_or_without_punctuation() {
        for raw in [
            "52998224725",
            "529.982.247-25",
            "11144477735",
            "111.444.777-35",
            "39053344705",
        ] {
            assert!(Cpf::parse(raw).is_ok(), "{raw}");
        }
        assert_eq!(
            Cpf::parse("529.982.247-25").unwrap().as_str(),
            "52998224725"
        );
    }

    #[test]
    fn wrong_check_digits_are_refused() {
        assert_eq!(Cpf::parse("52998224726"), Err("has wrong check digits"));
        assert_eq!(Cpf::parse("52998224715"), Err("has wrong check digits"));
        assert_eq!(Cpf::parse("11144477734"), Err("has wrong check digits"));
    }

    #[test]
    fn repeated_digits_length_and_letters_are_refused() {
        for d in 0..=9 {
            let raw = d.to_string().repeat(11);
            assert_eq!(Cpf::parse(&raw), Err("is one repeated digit"), "{raw}");
        }
        assert_eq!(Cpf::parse("5299822472"), Err("does not have 11 digits"));
        assert_eq!(Cpf::parse("529982247250"), Err("does not have 11 digits"));
        assert_eq!(
            Cpf::parse("5299822472a"),
            Err("has characters other than digits")
        );
        assert_eq!(Cpf::parse(""), Err("is empty"));
    }

    #[test]
    fn every_single_digit_change_of_a_valid_cpf_is_caught() {
        let base: Vec<char> = "52998224725".chars().collect();
        for i in 0..11 {
            for d in '0'..='9' {
                if d == base[i] {
                    continue;
                }
                let mut c = base.clone();
                c[i] = d;
                let s: String = c.into_iter().collect();
                assert!(Cpf::parse(&s).is_err(), "{s}");
            }
        }
    }

    proptest::proptest! {
        #[test]
        fn any_nine_digits_with_their_check_digits_are_a_cpf(base in proptest::collection::vec(0u32..10, 9)) {
            let mut digits = base.clone();
            digits.push(check_digit(&digits));
            digits.push(check_digit(&digits));
            let raw: String = digits.iter().map(|d| char::from(b'0' + *d as u8)).collect();
            let same = digits.iter().all(|d| *d == digits[0]);
            proptest::prop_assert_eq!(Cpf::parse(&raw).is_ok(), !same);
        }

        #[test]
        fn parsing_never_panics(raw in ".{0,40}") {
            let _ = Cpf::parse(&raw);
        }
    }
}
