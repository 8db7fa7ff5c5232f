//! Who the lead's contact data point at. "Same person" only when the phone
//! and the e-mail both resolve to one CPF; two sources naming disjoint CPFs
//! are different people; a CPF found through one source alone is reported as
//! exactly that, whether the other source was empty, invalid or not asked.

use super::{cpf::Cpf, sources::DiretrixAnswer};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Identity {
    SamePerson(Cpf),
    DifferentPeople { phone: Cpf, email: Cpf },
    PhoneOnly(Cpf),
    EmailOnly(Cpf),
    NotFound,
}

impl Identity {
    /// `None` for a source that was not looked up (invalid or missing datum).
    pub fn resolve(phone: Option<&DiretrixAnswer>, email: Option<&DiretrixAnswer>) -> Self {
        let p: Vec<&Cpf> = phone
            .map(|a| a.owners.iter().map(|o| &o.cpf).collect())
            .unwrap_or_default();
        let e: Vec<&Cpf> = email
            .map(|a| a.owners.iter().map(|o| &o.cpf).collect())
            .unwrap_or_default();
        match (p.first(), e.first()) {
            (Some(first_p), Some(first_e)) => match p.iter().find(|c| e.contains(c)) {
                Some(shared) => Identity::SamePerson((*shared).clone()),
                None => Identity::DifferentPeople {
                    phone: (*first_p).clone(),
                    email: (*first_e).clone(),
                },
            },
            (Some(c), None) => Identity::PhoneOnly((*c).clone()),
            (None, Some(c)) => Identity::EmailOnly((*c).clone()),
            (None, None) => Identity::NotFound,
        }
    }

    /// The `enrichment_runs.identity` value.
    pub fn kind(&self) -> &'static str {
        match self {
            Identity::SamePerson(_) => "same_person",
            Identity::DifferentPeople { .. } => "different_people",
            Identity::PhoneOnly(_) => "phone_only",
            Identity::EmailOnly(_) => "email_only",
            Identity::NotFound => "not_found",
        }
    }

    /// The people to enrich, each with how it was matched (`lead_parties.matched_by`).
    pub fn people(&self) -> Vec<(&Cpf, &'static str)> {
        match self {
            Identity::SamePerson(c) => vec![(c, "phone_and_email")],
            Identity::DifferentPeople { phone, email } => vec![(phone, "phone"), (email, "email")],
            Identity::PhoneOnly(c) => vec![(c, "phone")],
            Identity::EmailOnly(c) => vec![(c, "email")],
            Identity::NotFound => vec![],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrichment::sources::Owner;

    const A: &str = "52998224725";
    const B: &str = "11144477735";
    const C: &str = "39053344705";

    fn answer(cpfs: &[&str]) -> DiretrixAnswer {
        DiretrixAnswer {
            owners: cpfs
                .iter()
                .map(|c| Owner {
                    cpf: Cpf::parse(c).unwrap(),
                    nome: None,
                })
                .collect(),
            invalid_cpfs: 0,
        }
    }

    fn cpf(c: &str) -> Cpf {
        Cpf::parse(c).unwrap()
    }

    #[test]
    fn same_person_truth_table() {
        // (phone lookup, e-mail lookup) → identity; None = not looked up.
        type Row<'a> = (Option<&'a [&'a str]>, Option<&'a [&'a str]>, Identity);
        let table: Vec<Row> = vec![
            (Some(&[A]), Some(&[A]), Identity::SamePerson(cpf(A))),
            (Some(&[B, A]), Some(&[C, A]), Identity::SamePerson(cpf(A))),
            (
                Some(&[A]),
                Some(&[B]),
                Identity::DifferentPeople {
                    phone: cpf(A),
                    email: cpf(B),
                },
            ),
            (
                Some(&[A, C]),
                Some(&[B]),
                Identity::DifferentPeople {
                    phone: cpf(A),
                    email: cpf(B),
                },
            ),
            (Some(&[A]), Some(&[]), Identity::PhoneOnly(cpf(A))),
            (Some(&[A]), None, Identity::PhoneOnly(cpf(A))),
            (Some(&[]), Some(&[B]), Identity::EmailOnly(cpf(B))),
            (None, Some(&[B]), Identity::EmailOnly(cpf(B))),
            (Some(&[]), Some(&[]), Identity::NotFound),
            (None, Some(&[]), Identity::NotFound),
            (Some(&[]), None, Identity::NotFound),
            (None, None, Identity::NotFound),
        ];
        for (phone, email, want) in table {
            let (p, e) = (phone.map(answer), email.map(answer));
            let got = Identity::resolve(p.as_ref(), e.as_ref());
            assert_eq!(got, want, "phone {phone:?} e-mail {email:?}");
        }
    }

    #[test]
    fn one_source_alone_is_never_same_or_different() {
        for single in [
            Identity::resolve(Some(&answer(&[A])), None),
            Identity::resolve(None, Some(&answer(&[A]))),
        ] {
            assert!(!matches!(
                single,
                Identity::SamePerson(_) | Identity::DifferentPeople { .. }
            ));
            assert_eq!(single.people().len(), 1);
        }
    }

    #[test]
    fn people_carry_how_they_were_matched() {
        let d = Identity::DifferentPeople {
            phone: cpf(A),
            email: cpf(B),
        };
        assert_eq!(d.people(), vec![(&cpf(A), "phone"), (&cpf(B), "email")]);
        assert_eq!(d.kind(), "different_people");
        assert!(Identity::NotFound.people().is_empty());
    }
}
