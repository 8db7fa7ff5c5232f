//! The three providers over HTTP, each with its timeout and per-process
//! pacing: Diretrix (who owns a phone / an e-mail), the Work API (a CPF's
//! data) and C2S (post a message on a lead). Errors are classified without
//! quoting URLs (the Work API token is in its query string) or bodies.

use crate::config::{C2sConfig, CallConfig, DiretrixConfig, WorkConfig};
use crm_domain::enrichment::{
    cpf::Cpf,
    sources::{self, DiretrixAnswer, SourceError, WorkAnswer},
};
use std::time::Duration;
use tokio::{sync::Mutex, time::Instant};

/// Spaces the calls of one process to one API at least `interval` apart.
#[derive(Debug)]
pub struct Pacer {
    interval: Duration,
    next: Mutex<Option<Instant>>,
}

impl Pacer {
    pub fn new(interval: Duration) -> Self {
        Self {
            interval,
            next: Mutex::new(None),
        }
    }

    pub async fn wait(&self) {
        if self.interval.is_zero() {
            return;
        }
        let mut next = self.next.lock().await;
        if let Some(at) = *next {
            tokio::time::sleep_until(at).await;
        }
        *next = Some(Instant::now() + self.interval);
    }
}

fn transport(api: &str, e: &reqwest::Error) -> SourceError {
    let class = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "transport error"
    };
    SourceError::Retry(format!("{api} {class}"))
}

/// `base` + path segments, each percent-encoded as a path segment.
fn join(base: &reqwest::Url, segments: &[&str]) -> reqwest::Url {
    let mut url = base.clone();
    url.path_segments_mut()
        .expect("base URLs are checked at start-up")
        .pop_if_empty()
        .extend(segments);
    url
}

pub fn client(call: CallConfig) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .timeout(call.timeout)
        .connect_timeout(call.timeout.min(Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("crm-hub-enrichment/", env!("CARGO_PKG_VERSION")))
        .build()
}

/// What Diretrix is asked about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiretrixQuery<'a> {
    /// National digits: area code + number (`11987654321`).
    Phone(&'a str),
    Email(&'a str),
}

pub struct Diretrix {
    pub config: DiretrixConfig,
    pub http: reqwest::Client,
    pub pacer: Pacer,
}

impl Diretrix {
    pub async fn lookup(&self, q: DiretrixQuery<'_>) -> Result<DiretrixAnswer, SourceError> {
        let url = match q {
            DiretrixQuery::Phone(p) => join(
                &self.config.base_url,
                &["Consultas", "Pessoa", "Telefone", p],
            ),
            DiretrixQuery::Email(e) => {
                join(&self.config.base_url, &["Consultas", "Pessoa", "Email", e])
            }
        };
        self.pacer.wait().await;
        let resp = self
            .http
            .get(url)
            .basic_auth(&self.config.user, Some(self.config.pass.expose()))
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| transport("Diretrix", &e))?;
        let status = resp.status();
        // "Not found" is only ever an explicit empty list (`[]`). Some
        // deployments send that list with a 404; any other 404 (a wrong base
        // path, an HTML page) is an error, never cached as "no CPF".
        if status.as_u16() == 404 {
            let body = resp.text().await.unwrap_or_default();
            return match sources::parse_diretrix(&body) {
                Ok(a) if a.owners.is_empty() && a.invalid_cpfs == 0 => Ok(a),
                _ => Err(sources::status_error("Diretrix", 404)),
            };
        }
        if !status.is_success() {
            return Err(sources::status_error("Diretrix", status.as_u16()));
        }
        let body = resp.text().await.map_err(|e| transport("Diretrix", &e))?;
        sources::parse_diretrix(&body)
    }
}

pub struct Work {
    pub config: WorkConfig,
    pub http: reqwest::Client,
    pub pacer: Pacer,
}

impl Work {
    /// The answer and the raw JSON it was read from (kept as the party's source payload).
    pub async fn lookup(&self, cpf: &Cpf) -> Result<(WorkAnswer, serde_json::Value), SourceError> {
        let url = join(&self.config.base_url, &["api"]);
        self.pacer.wait().await;
        let resp = self
            .http
            .get(url)
            .query(&[
                ("token", self.config.token.expose()),
                ("modulo", "cpf"),
                ("consulta", cpf.as_str()),
            ])
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| transport("Work API", &e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(sources::status_error("Work API", status.as_u16()));
        }
        let body = resp.text().await.map_err(|e| transport("Work API", &e))?;
        let answer = sources::parse_work(&body, cpf)?;
        let raw = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
        Ok((answer, raw))
    }
}

/// What became of a note post.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    Posted {
        status: u16,
    },
    /// Provably not taken: an error answer, or no connection made.
    Failed {
        status: Option<u16>,
        retry: bool,
        reason: String,
    },
    /// It may or may not have been taken (timed out or cut off after
    /// sending, or a gateway timeout: HTTP 504).
    Uncertain {
        status: Option<u16>,
        reason: String,
    },
}

pub struct C2s {
    pub config: C2sConfig,
    pub http: reqwest::Client,
    pub pacer: Pacer,
}

impl C2s {
    pub async fn post_message(&self, lead_id: &str, body: &str) -> PostOutcome {
        let url = join(
            &self.config.base_url,
            &["integration", "leads", lead_id, "create_message"],
        );
        self.pacer.wait().await;
        let sent = self
            .http
            .post(url)
            .bearer_auth(self.config.token.expose())
            .json(&serde_json::json!({"leadId": lead_id, "body": body}))
            .send()
            .await;
        match sent {
            Ok(resp) if resp.status().is_success() => PostOutcome::Posted {
                status: resp.status().as_u16(),
            },
            // A gateway timeout: the request reached a proxy that gave up
            // waiting for C2S, which may still have stored the note. (502
            // and 503 mean the proxy could not hand it over: not taken.)
            Ok(resp) if resp.status().as_u16() == 504 => PostOutcome::Uncertain {
                status: Some(504),
                reason: "C2S answered HTTP 504, a gateway timeout".into(),
            },
            Ok(resp) => {
                let status = resp.status().as_u16();
                PostOutcome::Failed {
                    status: Some(status),
                    retry: status == 429 || status == 408 || status >= 500,
                    reason: format!("C2S answered HTTP {status}"),
                }
            }
            Err(e) if e.is_connect() => PostOutcome::Failed {
                status: None,
                retry: true,
                reason: "C2S connection failed".into(),
            },
            Err(e) if e.is_timeout() => PostOutcome::Uncertain {
                status: None,
                reason: "C2S timed out".into(),
            },
            Err(_) => PostOutcome::Uncertain {
                status: None,
                reason: "C2S transport error after sending".into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_segments_are_encoded_and_base_paths_kept() {
        let base = reqwest::Url::parse("https://api.example.com/v1/").unwrap();
        let url = join(
            &base,
            &["Consultas", "Pessoa", "Email", "a/b?c#d%e f@x.com"],
        );
        assert_eq!(
            url.as_str(),
            "https://api.example.com/v1/Consultas/Pessoa/Email/a%2Fb%3Fc%23d%25e%20f@x.com"
        );
        let base = reqwest::Url::parse("https://api.example.com").unwrap();
        assert_eq!(
            join(&base, &["api"]).as_str(),
            "https://api.example.com/api"
        );
    }

    #[tokio::test]
    async fn a_pacer_spaces_calls() {
        let pacer = Pacer::new(Duration::from_millis(50));
        let start = Instant::now();
        pacer.wait().await;
        pacer.wait().await;
        pacer.wait().await;
        // Two full intervals must have passed before the third call (a lower bound, not a timing assertion on speed).
        assert!(start.elapsed() >= Duration::from_millis(100));
    }
}
