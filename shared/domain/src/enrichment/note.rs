//! The enrichment note, in Portuguese as the sales team reads it in C2S: a
//! header saying what the contact data point at, then one block per person
//! (`✅ DADOS PESSOAIS`, `💰 DADOS FINANCEIROS`, `📧 EMAILS` ≤ 3,
//! `📱 TELEFONES` ≤ 3 with WhatsApp marked, `🏠 ENDEREÇOS` ≤ 2,
//! `🏢 EMPRESAS` ≤ 3). Values appear as the sources report them; a section
//! with nothing to show is left out. Deterministic: the same data make the
//! same text (the note's SHA-256 is what "never twice" is keyed on).

use super::{cpf::Cpf, identity::Identity, sources::WorkPerson};
use std::fmt::Write;

pub const MAX_EMAILS: usize = 3;
pub const MAX_PHONES: usize = 3;
pub const MAX_ADDRESSES: usize = 2;
pub const MAX_COMPANIES: usize = 3;

/// What became of one contact datum's lookup, for the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SourceState {
    Found,
    NotFound,
    Invalid,
    NotProvided,
    /// The lookup answered an error that retrying will not fix.
    Failed,
}

impl SourceState {
    fn phrase(self) -> &'static str {
        match self {
            SourceState::Found => "encontrado",
            SourceState::NotFound => "sem resultado",
            SourceState::Invalid => "inválido, não consultado",
            SourceState::NotProvided => "não informado",
            SourceState::Failed => "consulta indisponível",
        }
    }
}

/// One person of the note: the Work API data when there are any, else what
/// Diretrix said (the name) and the CPF.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Person<'a> {
    pub cpf: &'a Cpf,
    pub work: Option<&'a WorkPerson>,
    pub diretrix_name: Option<&'a str>,
}

/// Composes the note; `None` when nobody was found (no note is posted).
pub fn compose<'a>(
    identity: &'a Identity,
    phone: SourceState,
    email: SourceState,
    person: impl Fn(&'a Cpf) -> Person<'a>,
) -> Option<String> {
    let mut out = String::new();
    match identity {
        Identity::NotFound => return None,
        Identity::SamePerson(c) => {
            out.push_str("📞📧 Telefone e e-mail da mesma pessoa\n");
            block(&mut out, &person(c));
        }
        Identity::DifferentPeople { phone: p, email: e } => {
            out.push_str("⚠️ Telefone e e-mail relacionados a PESSOAS DIFERENTES!\n");
            out.push_str("\n👤 PESSOA DO TELEFONE\n");
            block(&mut out, &person(p));
            out.push_str("\n👤 PESSOA DO E-MAIL\n");
            block(&mut out, &person(e));
        }
        Identity::PhoneOnly(c) => {
            let _ = writeln!(
                out,
                "📞 Dados encontrados somente pelo telefone (e-mail: {})",
                email.phrase()
            );
            block(&mut out, &person(c));
        }
        Identity::EmailOnly(c) => {
            let _ = writeln!(
                out,
                "📧 Dados encontrados somente pelo e-mail (telefone: {})",
                phone.phrase()
            );
            block(&mut out, &person(c));
        }
    }
    Some(out.trim_end().to_string())
}

fn line(out: &mut String, label: &str, value: Option<&str>) {
    if let Some(v) = value {
        let _ = writeln!(out, "{label}: {v}");
    }
}

fn block(out: &mut String, p: &Person<'_>) {
    out.push_str("\n✅ DADOS PESSOAIS\n");
    let w = p.work;
    line(
        out,
        "Nome",
        w.and_then(|w| w.nome.as_deref()).or(p.diretrix_name),
    );
    line(out, "CPF", Some(p.cpf.as_str()));
    let Some(w) = w else {
        out.push_str("(sem dados da Work API para este CPF)\n");
        return;
    };
    line(out, "Nascimento", w.data_nascimento.as_deref());
    line(out, "Sexo", w.sexo.as_deref());
    line(out, "Mãe", w.nome_mae.as_deref());
    if w.has_financial() {
        out.push_str("\n💰 DADOS FINANCEIROS\n");
        line(out, "Renda", w.renda.as_deref());
        let poder = match (&w.poder_aquisitivo, &w.faixa_poder_aquisitivo) {
            (Some(d), Some(f)) => Some(format!("{d} (faixa {f})")),
            (Some(d), None) => Some(d.clone()),
            (None, Some(f)) => Some(format!("faixa {f}")),
            (None, None) => None,
        };
        line(out, "Poder aquisitivo", poder.as_deref());
        let score = match (&w.score, &w.score_faixa_risco) {
            (Some(s), Some(r)) => Some(format!("{s} ({r})")),
            (Some(s), None) => Some(s.clone()),
            (None, Some(r)) => Some(r.clone()),
            (None, None) => None,
        };
        line(out, "Score", score.as_deref());
    }
    if !w.emails.is_empty() {
        out.push_str("\n📧 EMAILS\n");
        for e in w.emails.iter().take(MAX_EMAILS) {
            let _ = writeln!(out, "• {}", e.email);
        }
    }
    if !w.telefones.is_empty() {
        out.push_str("\n📱 TELEFONES\n");
        for t in w.telefones.iter().take(MAX_PHONES) {
            let _ = write!(out, "• {}", t.telefone);
            if let Some(tipo) = &t.tipo {
                let _ = write!(out, " ({tipo})");
            }
            out.push_str(if t.whatsapp { " ✅ WhatsApp\n" } else { "\n" });
        }
    }
    if !w.enderecos.is_empty() {
        out.push_str("\n🏠 ENDEREÇOS\n");
        for a in w.enderecos.iter().take(MAX_ADDRESSES) {
            let street = [a.logradouro.as_deref(), a.numero.as_deref()]
                .into_iter()
                .flatten()
                .collect::<Vec<_>>()
                .join(", ");
            let city = match (&a.cidade, &a.uf) {
                (Some(c), Some(u)) => Some(format!("{c}/{u}")),
                (Some(c), None) => Some(c.clone()),
                (None, Some(u)) => Some(u.clone()),
                (None, None) => None,
            };
            let cep = a.cep.as_ref().map(|c| format!("CEP {c}"));
            let parts: Vec<String> = [
                Some(street).filter(|s| !s.is_empty()),
                a.bairro.clone(),
                city,
                cep,
            ]
            .into_iter()
            .flatten()
            .collect();
            let _ = writeln!(out, "• {}", parts.join(" - "));
        }
    }
    if !w.empresas.is_empty() {
        out.push_str("\n🏢 EMPRESAS\n");
        for c in w.empresas.iter().take(MAX_COMPANIES) {
            match &c.relacao {
                Some(r) => {
                    let _ = writeln!(out, "• {} ({r})", c.cnpj);
                }
                None => {
                    let _ = writeln!(out, "• {}", c.cnpj);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enrichment::sources::{WorkAnswer, parse_work, tests::work_body};
    use serde_json::json;

    const A: &str = "52998224725";
    const B: &str = "11144477735";

    fn work(cpf: &str, body: serde_json::Value) -> WorkPerson {
        match parse_work(&body.to_string(), &Cpf::parse(cpf).unwrap()).unwrap() {
            WorkAnswer::Found(p) => *p,
            WorkAnswer::NotFound => panic!("found expected"),
        }
    }

    const GOLDEN_SAME: &str = "\
📞📧 Telefone e e-mail da mesma pessoa

✅ DADOS PESSOAIS
Nome: MARIA DA SILVA
CPF: 52998224725
Nascimento: 01/02/1980
Sexo: F
Mãe: ANA DA SILVA

💰 DADOS FINANCEIROS
Renda: 3.500,00
Poder aquisitivo: MEDIO (faixa 3)
Score: 650 (BAIXO RISCO)

📧 EMAILS
• maria@gmail.com

📱 TELEFONES
• 11987654321 (MOVEL) ✅ WhatsApp
• 1133334444 (FIXO)

🏠 ENDEREÇOS
• RUA DAS FLORES, 100 - CENTRO - SAO PAULO/SP - CEP 01000000

🏢 EMPRESAS
• 12345678000190 (SOCIO)";

    #[test]
    fn same_person_note_matches_the_golden_text() {
        let cpf = Cpf::parse(A).unwrap();
        let w = work(A, work_body(A));
        let note = compose(
            &Identity::SamePerson(cpf),
            SourceState::Found,
            SourceState::Found,
            |c| Person {
                cpf: c,
                work: Some(&w),
                diretrix_name: None,
            },
        )
        .unwrap();
        assert_eq!(note, GOLDEN_SAME);
    }

    #[test]
    fn different_people_get_one_block_each() {
        let (a, b) = (Cpf::parse(A).unwrap(), Cpf::parse(B).unwrap());
        let wa = work(A, work_body(A));
        let note = compose(
            &Identity::DifferentPeople {
                phone: a.clone(),
                email: b.clone(),
            },
            SourceState::Found,
            SourceState::Found,
            |c| Person {
                cpf: c,
                work: (c == &a).then_some(&wa),
                diretrix_name: (c != &a).then_some("JOSE SOUZA"),
            },
        )
        .unwrap();
        let want = "\
⚠️ Telefone e e-mail relacionados a PESSOAS DIFERENTES!

👤 PESSOA DO TELEFONE

✅ DADOS PESSOAIS
Nome: MARIA DA SILVA
CPF: 52998224725";
        assert!(note.starts_with(want), "{note}");
        assert!(note.ends_with(
            "👤 PESSOA DO E-MAIL\n\n✅ DADOS PESSOAIS\nNome: JOSE SOUZA\nCPF: 11144477735\n(sem dados da Work API para este CPF)"
        ), "{note}");
        assert_eq!(note.matches("✅ DADOS PESSOAIS").count(), 2);
    }

    #[test]
    fn single_source_says_which_and_why_the_other_did_not_match() {
        let a = Cpf::parse(A).unwrap();
        let note = compose(
            &Identity::PhoneOnly(a.clone()),
            SourceState::Found,
            SourceState::Invalid,
            |c| Person {
                cpf: c,
                work: None,
                diretrix_name: Some("MARIA"),
            },
        )
        .unwrap();
        assert!(note.starts_with(
            "📞 Dados encontrados somente pelo telefone (e-mail: inválido, não consultado)\n"
        ));
        let note = compose(
            &Identity::EmailOnly(a),
            SourceState::NotFound,
            SourceState::Found,
            |c| Person {
                cpf: c,
                work: None,
                diretrix_name: None,
            },
        )
        .unwrap();
        assert!(
            note.starts_with(
                "📧 Dados encontrados somente pelo e-mail (telefone: sem resultado)\n"
            )
        );
        assert!(!note.contains("MESMA") && !note.contains("DIFERENTES"));
        assert_eq!(
            compose(
                &Identity::NotFound,
                SourceState::NotFound,
                SourceState::NotFound,
                |c| Person {
                    cpf: c,
                    work: None,
                    diretrix_name: None
                }
            ),
            None
        );
    }

    #[test]
    fn lists_are_capped_and_empty_sections_left_out() {
        let mut body = work_body(A);
        body["emails"] = json!(
            (1..=5)
                .map(|i| json!({"email": format!("m{i}@gmail.com")}))
                .collect::<Vec<_>>()
        );
        body["telefones"] = json!(
            (1..=5)
                .map(|i| json!({"telefone": format!("1198765432{i}"), "whatsapp": "SIM"}))
                .collect::<Vec<_>>()
        );
        body["enderecos"] = json!(
            (1..=4)
                .map(|i| json!({"logradouro": format!("RUA {i}")}))
                .collect::<Vec<_>>()
        );
        body["empresas"] = json!([]);
        body["DadosEconomicos"] = json!(null);
        let w = work(A, body);
        let note = compose(
            &Identity::SamePerson(Cpf::parse(A).unwrap()),
            SourceState::Found,
            SourceState::Found,
            |c| Person {
                cpf: c,
                work: Some(&w),
                diretrix_name: None,
            },
        )
        .unwrap();
        assert_eq!(note.matches("@gmail.com").count(), MAX_EMAILS);
        assert_eq!(note.matches("✅ WhatsApp").count(), MAX_PHONES);
        assert_eq!(note.matches("• RUA").count(), MAX_ADDRESSES);
        assert!(!note.contains("🏢 EMPRESAS") && !note.contains("💰 DADOS FINANCEIROS"));
    }
}
