//! The two paid sources' answers, read into plain types: Diretrix (who owns a
//! phone or an e-mail: `[{nome, cpf}]`) and the Work API (everything about a
//! CPF). Reading is strict about errors: an error body, a `status` other than
//! 200 inside a 200 answer, or a person other than the one asked for is an
//! error, never data. Values are kept as the source reports them.

use super::cpf::Cpf;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Why an answer is not data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceError {
    /// Worth another try later (timeouts, 5xx, 429, "not enough credits").
    Retry(String),
    /// Will not get better by retrying.
    Permanent(String),
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SourceError::Retry(r) | SourceError::Permanent(r) => f.write_str(r),
        }
    }
}

/// Classifies an HTTP status that is not 2xx.
pub fn status_error(api: &str, status: u16) -> SourceError {
    let why = format!("{api} answered HTTP {status}");
    if status == 429 || status == 408 || status >= 500 {
        SourceError::Retry(why)
    } else {
        SourceError::Permanent(why)
    }
}

/// One person Diretrix names, with a CPF that passed its check digits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub cpf: Cpf,
    pub nome: Option<String>,
}

/// A Diretrix answer: the people with a valid CPF (in the order given) and
/// how many entries were dropped for an invalid or missing CPF.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DiretrixAnswer {
    pub owners: Vec<Owner>,
    pub invalid_cpfs: u32,
}

/// Reads a 2xx Diretrix body: a JSON array of `{nome, cpf}`; `[]` is "not found".
pub fn parse_diretrix(body: &str) -> Result<DiretrixAnswer, SourceError> {
    let value: Value = serde_json::from_str(body)
        .map_err(|_| SourceError::Retry("Diretrix answered something other than JSON".into()))?;
    let Value::Array(items) = value else {
        return Err(SourceError::Permanent(
            "Diretrix answered JSON that is not an array (an error body)".into(),
        ));
    };
    let mut answer = DiretrixAnswer::default();
    for item in &items {
        match text(&item["cpf"]).as_deref().map(Cpf::parse) {
            Some(Ok(cpf)) => {
                if !answer.owners.iter().any(|o| o.cpf == cpf) {
                    answer.owners.push(Owner {
                        cpf,
                        nome: text(&item["nome"]),
                    });
                }
            }
            _ => answer.invalid_cpfs += 1,
        }
    }
    Ok(answer)
}

/// A string or a number as text; empty and null are absent.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn list(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or_default()
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkEmail {
    pub email: String,
    pub prioridade: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkPhone {
    pub telefone: String,
    pub tipo: Option<String>,
    pub whatsapp: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkAddress {
    pub logradouro: Option<String>,
    pub numero: Option<String>,
    pub bairro: Option<String>,
    pub cidade: Option<String>,
    pub uf: Option<String>,
    pub cep: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct WorkCompany {
    pub cnpj: String,
    pub relacao: Option<String>,
}

/// What the Work API says about one CPF, as it says it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkPerson {
    /// The CPF that was asked for (and that the answer names, when it names one).
    pub cpf: Cpf,
    pub nome: Option<String>,
    /// `dd/mm/yyyy` as reported.
    pub data_nascimento: Option<String>,
    pub sexo: Option<String>,
    pub nome_mae: Option<String>,
    /// `"3.500,00"`: comma decimal, as reported.
    pub renda: Option<String>,
    pub poder_aquisitivo: Option<String>,
    pub faixa_poder_aquisitivo: Option<String>,
    pub score: Option<String>,
    pub score_faixa_risco: Option<String>,
    pub emails: Vec<WorkEmail>,
    pub telefones: Vec<WorkPhone>,
    pub enderecos: Vec<WorkAddress>,
    pub empresas: Vec<WorkCompany>,
}

impl WorkPerson {
    /// The birth date, when it is a real `dd/mm/yyyy` date.
    pub fn birth_date(&self) -> Option<NaiveDate> {
        NaiveDate::parse_from_str(self.data_nascimento.as_deref()?, "%d/%m/%Y").ok()
    }

    pub fn has_financial(&self) -> bool {
        self.renda.is_some()
            || self.poder_aquisitivo.is_some()
            || self.faixa_poder_aquisitivo.is_some()
            || self.score.is_some()
            || self.score_faixa_risco.is_some()
    }
}

/// A Work API answer that is data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WorkAnswer {
    Found(Box<WorkPerson>),
    /// The API knows nothing about this CPF.
    NotFound,
}

fn credits_in(body: &str) -> bool {
    let lower = body.to_lowercase();
    ["cr\u{e9}dito", "credito", "credit"]
        .iter()
        .any(|w| lower.contains(w))
}

/// A message (`mensagem`/`message`/`msg`) that says the CPF was not found.
fn says_not_found(v: &Value) -> bool {
    ["mensagem", "message", "msg"].iter().any(|k| {
        text(&v[*k]).is_some_and(|m| {
            let m = m.to_lowercase();
            ["n\u{e3}o encontrad", "nao encontrad", "not found"]
                .iter()
                .any(|w| m.contains(w))
        })
    })
}

/// Reads a 2xx Work API body for `asked`.
pub fn parse_work(body: &str, asked: &Cpf) -> Result<WorkAnswer, SourceError> {
    let v: Value = serde_json::from_str(body)
        .map_err(|_| SourceError::Retry("Work API answered something other than JSON".into()))?;
    if !v.is_object() {
        return Err(SourceError::Permanent(
            "Work API answered JSON that is not an object".into(),
        ));
    }
    // `status` as the API reports it: a number or a string; anything else
    // (`false`, `true`, an object) is no status of success.
    let status = text(&v["status"]);
    if v.get("status").is_some_and(|s| !s.is_null()) && status.is_none() {
        return Err(if credits_in(body) {
            SourceError::Retry(
                "Work API answered an error inside a 200 (not enough credits)".into(),
            )
        } else {
            SourceError::Permanent("Work API answered a failed status inside a 200".into())
        });
    }
    if let Some(status) = status.clone().filter(|s| s != "200") {
        let code: u16 = status.parse().unwrap_or(0);
        let credits = credits_in(body);
        if code == 404 && v.get("DadosBasicos").is_none() {
            return Ok(WorkAnswer::NotFound);
        }
        return Err(if code == 429 || code >= 500 || credits {
            SourceError::Retry(format!(
                "Work API answered status {code} inside a 200 (e.g. not enough credits)"
            ))
        } else {
            SourceError::Permanent(format!("Work API answered status {code} inside a 200"))
        });
    }
    for key in ["error", "erro", "errors"] {
        if v.get(key)
            .is_some_and(|e| !e.is_null() && e != &Value::Bool(false))
        {
            return Err(SourceError::Permanent(format!(
                "Work API answered an error body ({key})"
            )));
        }
    }
    let basic = &v["DadosBasicos"];
    if !basic.is_object() {
        // "Not found" only on an explicit signal: status 200 without data, or
        // a message saying so. Anything else (`{"message": …}`, an empty
        // object, a shape we do not know) is an error, never cached as data.
        if status.as_deref() == Some("200") || says_not_found(&v) {
            return Ok(WorkAnswer::NotFound);
        }
        return Err(if credits_in(body) {
            SourceError::Retry(
                "Work API answered an error inside a 200 (not enough credits)".into(),
            )
        } else {
            SourceError::Permanent(
                "Work API answered neither data nor an explicit not-found".into(),
            )
        });
    }
    if let Some(named) = text(&basic["cpf"]) {
        let digits: String = named.chars().filter(char::is_ascii_digit).collect();
        if digits != asked.as_str() {
            return Err(SourceError::Permanent(
                "Work API answered for another CPF than the one asked".into(),
            ));
        }
    }
    let eco = &v["DadosEconomicos"];
    let poder = &eco["poderAquisitivo"];
    let score = &eco["score"];
    let person = WorkPerson {
        cpf: asked.clone(),
        nome: text(&basic["nome"]),
        data_nascimento: text(&basic["dataNascimento"]),
        sexo: text(&basic["sexo"]),
        nome_mae: text(&basic["nomeMae"]),
        renda: text(&eco["renda"]),
        poder_aquisitivo: text(&poder["poderAquisitivoDescricao"]),
        faixa_poder_aquisitivo: text(&poder["faixaPoderAquisitivo"]),
        score: text(&score["scoreCSBA"]),
        score_faixa_risco: text(&score["scoreCSBAFaixaRisco"]),
        emails: list(&v["emails"])
            .iter()
            .filter_map(|e| {
                Some(WorkEmail {
                    email: text(&e["email"])?,
                    prioridade: text(&e["prioridade"]),
                })
            })
            .collect(),
        telefones: list(&v["telefones"])
            .iter()
            .filter_map(|t| {
                Some(WorkPhone {
                    telefone: text(&t["telefone"])?,
                    tipo: text(&t["tipo"]),
                    whatsapp: text(&t["whatsapp"]).is_some_and(|w| w.eq_ignore_ascii_case("SIM")),
                })
            })
            .collect(),
        enderecos: list(&v["enderecos"])
            .iter()
            .map(|a| WorkAddress {
                logradouro: text(&a["logradouro"]),
                // The Work API sends the house number as `logradouroNumero`
                // (older answers: `numero`).
                numero: text(&a["logradouroNumero"]).or_else(|| text(&a["numero"])),
                bairro: text(&a["bairro"]),
                cidade: text(&a["cidade"]),
                uf: text(&a["uf"]),
                cep: text(&a["cep"]),
            })
            .filter(|a| a != &WorkAddress::default())
            .collect(),
        empresas: list(&v["empresas"])
            .iter()
            .filter_map(|c| {
                Some(WorkCompany {
                    cnpj: text(&c["cnpj"])?,
                    relacao: text(&c["relacao"]),
                })
            })
            .collect(),
    };
    Ok(WorkAnswer::Found(Box::new(person)))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn work_body(cpf: &str) -> Value {
        json!({
            "status": 200,
            "DadosBasicos": {"nome": "MARIA DA SILVA", "cpf": cpf, "dataNascimento": "01/02/1980",
                             "sexo": "F", "nomeMae": "ANA DA SILVA"},
            "DadosEconomicos": {"renda": "3.500,00",
                "poderAquisitivo": {"poderAquisitivoDescricao": "MEDIO", "faixaPoderAquisitivo": "3"},
                "score": {"scoreCSBA": 650, "scoreCSBAFaixaRisco": "BAIXO RISCO"}},
            "emails": [{"email": "maria@gmail.com", "prioridade": "1"}],
            "telefones": [{"telefone": "11987654321", "tipo": "MOVEL", "whatsapp": "SIM"},
                          {"telefone": "1133334444", "tipo": "FIXO", "whatsapp": "NAO"}],
            "enderecos": [{"logradouro": "RUA DAS FLORES", "numero": "100", "bairro": "CENTRO",
                           "cidade": "SAO PAULO", "uf": "SP", "cep": "01000000"}],
            "empresas": [{"cnpj": "12345678000190", "relacao": "SOCIO"}]
        })
    }

    #[test]
    fn the_work_api_house_number_is_logradouro_numero() {
        // Issue 13: the production peer's own answers carry `logradouroNumero`.
        let cpf = Cpf::parse("52998224725").unwrap();
        let mut body = work_body("52998224725");
        body["enderecos"] = json!([{"logradouro": "RUA DAS FLORES", "logradouroNumero": "100",
                                    "cidade": "SAO PAULO", "uf": "SP"}]);
        let Ok(WorkAnswer::Found(w)) = parse_work(&body.to_string(), &cpf) else {
            panic!("a found person");
        };
        assert_eq!(w.enderecos[0].numero.as_deref(), Some("100"));
    }

    #[test]
    fn diretrix_arrays_keep_valid_cpfs_in_order() {
        let a = parse_diretrix(r#"[{"nome":"MARIA","cpf":"529.982.247-25"},{"nome":"X","cpf":"11111111111"},{"nome":"JOSE","cpf":"11144477735"},{"nome":"MARIA","cpf":"52998224725"}]"#).unwrap();
        let cpfs: Vec<&str> = a.owners.iter().map(|o| o.cpf.as_str()).collect();
        assert_eq!(cpfs, ["52998224725", "11144477735"]);
        assert_eq!(a.invalid_cpfs, 1);
        assert_eq!(parse_diretrix("[]").unwrap(), DiretrixAnswer::default());
    }

    #[test]
    fn diretrix_error_bodies_are_errors() {
        assert!(matches!(
            parse_diretrix(r#"{"erro":"unauthorized"}"#),
            Err(SourceError::Permanent(_))
        ));
        assert!(matches!(
            parse_diretrix("<html>bad gateway</html>"),
            Err(SourceError::Retry(_))
        ));
    }

    #[test]
    fn work_error_bodies_without_a_known_error_key_are_errors_not_not_found() {
        let cpf = Cpf::parse("52998224725").unwrap();
        for body in [
            json!({"status": false, "mensagem": "Token inválido"}),
            json!({"message": "Unauthorized"}),
            json!({"msg": "consulta indisponível"}),
            json!({}),
            json!({"status": true}),
        ] {
            assert!(
                matches!(
                    parse_work(&body.to_string(), &cpf),
                    Err(SourceError::Permanent(_))
                ),
                "{body}"
            );
        }
        let credits = json!({"status": false, "mensagem": "Sem créditos"});
        assert!(matches!(
            parse_work(&credits.to_string(), &cpf),
            Err(SourceError::Retry(_))
        ));
        // Data without a status is still data.
        let mut data = work_body("52998224725");
        data.as_object_mut().unwrap().remove("status");
        assert!(matches!(
            parse_work(&data.to_string(), &cpf),
            Ok(WorkAnswer::Found(_))
        ));
    }

    #[test]
    fn work_answers_are_read_as_reported() {
        let cpf = Cpf::parse("52998224725").unwrap();
        let WorkAnswer::Found(p) =
            parse_work(&work_body("529.982.247-25").to_string(), &cpf).unwrap()
        else {
            panic!("found expected");
        };
        assert_eq!(p.nome.as_deref(), Some("MARIA DA SILVA"));
        assert_eq!(p.birth_date(), NaiveDate::from_ymd_opt(1980, 2, 1));
        assert_eq!(p.renda.as_deref(), Some("3.500,00"));
        assert_eq!(p.score.as_deref(), Some("650"));
        assert!(p.telefones[0].whatsapp && !p.telefones[1].whatsapp);
        assert_eq!(p.enderecos[0].cep.as_deref(), Some("01000000"));
        assert_eq!(p.empresas[0].relacao.as_deref(), Some("SOCIO"));
    }

    #[test]
    fn work_errors_are_never_data() {
        let cpf = Cpf::parse("52998224725").unwrap();
        let credits = json!({"status": 429, "mensagem": "Você não possui créditos suficientes"});
        assert!(matches!(
            parse_work(&credits.to_string(), &cpf),
            Err(SourceError::Retry(_))
        ));
        let forbidden = json!({"status": "403", "mensagem": "token inválido"});
        assert!(matches!(
            parse_work(&forbidden.to_string(), &cpf),
            Err(SourceError::Permanent(_))
        ));
        let error = json!({"error": "consulta inválida"});
        assert!(matches!(
            parse_work(&error.to_string(), &cpf),
            Err(SourceError::Permanent(_))
        ));
        let other = work_body("11144477735");
        assert_eq!(
            parse_work(&other.to_string(), &cpf),
            Err(SourceError::Permanent(
                "Work API answered for another CPF than the one asked".into()
            ))
        );
        assert_eq!(
            parse_work(r#"{"status":200}"#, &cpf),
            Ok(WorkAnswer::NotFound)
        );
        assert_eq!(
            parse_work(r#"{"status":"200","DadosBasicos":null}"#, &cpf),
            Ok(WorkAnswer::NotFound)
        );
        assert_eq!(
            parse_work(r#"{"mensagem":"CPF não encontrado"}"#, &cpf),
            Ok(WorkAnswer::NotFound)
        );
        assert_eq!(
            parse_work(r#"{"status":404,"mensagem":"não encontrado"}"#, &cpf),
            Ok(WorkAnswer::NotFound)
        );
        assert!(matches!(
            parse_work("Too many requests", &cpf),
            Err(SourceError::Retry(_))
        ));
        assert!(matches!(
            status_error("Work API", 429),
            SourceError::Retry(_)
        ));
        assert!(matches!(
            status_error("Work API", 503),
            SourceError::Retry(_)
        ));
        assert!(matches!(
            status_error("Work API", 401),
            SourceError::Permanent(_)
        ));
    }
}
