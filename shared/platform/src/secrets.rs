//! Secrets from one AWS Secrets Manager secret: a JSON object whose keys are
//! the variable names the typed configuration reads (`DATABASE_URL`,
//! `JWT_SECRET`, `TWILIO_AUTH_TOKEN`, ...). `SECRETS_ARN` names it; the
//! secret is read once per cold start through the SDK, kept in memory in the
//! [`Env`] and overlaid on the process environment (a key in both takes the
//! secret's value). Without `SECRETS_ARN` the environment alone is the
//! configuration (local runs, tests, `cargo lambda watch`).
//!
//! Errors name `SECRETS_ARN` and say what is wrong, never a value of the
//! secret (not even in a JSON syntax error: only the position).

use crate::config::{ConfigError, Env};
use aws_sdk_secretsmanager::{Client, error::ProvideErrorMetadata};
use std::collections::HashMap;

pub const SECRETS_ARN: &str = "SECRETS_ARN";

fn err(reason: impl Into<String>) -> ConfigError {
    ConfigError {
        name: SECRETS_ARN.to_string(),
        reason: reason.into(),
    }
}

/// The process environment, overlaid with the secret when `SECRETS_ARN` is
/// set (the SDK client is only built then).
pub async fn load_env() -> Result<Env, ConfigError> {
    let env = Env::from_process();
    if env.optional(SECRETS_ARN).is_none() {
        return Ok(env);
    }
    let client = Client::new(&crate::aws::load().await);
    overlay(env, &client).await
}

/// `env` overlaid with the secret `SECRETS_ARN` names, read with `client`;
/// `env` unchanged when `SECRETS_ARN` is unset.
pub async fn overlay(env: Env, client: &Client) -> Result<Env, ConfigError> {
    let Some(arn) = env.optional(SECRETS_ARN).map(str::to_owned) else {
        return Ok(env);
    };
    let values = fetch(client, &arn).await?;
    tracing::debug!(
        keys = values.len(),
        "configuration overlaid with the secret"
    );
    Ok(env.overlaid(values))
}

/// The secret's key/value pairs.
pub async fn fetch(client: &Client, arn: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let out = client
        .get_secret_value()
        .secret_id(arn)
        .send()
        .await
        .map_err(|e| {
            // The service's error code (AccessDeniedException,
            // ResourceNotFoundException, ...) or the kind of failure; both
            // name nothing of the secret.
            let why = e.code().map(str::to_owned).unwrap_or_else(|| match &e {
                aws_sdk_secretsmanager::error::SdkError::TimeoutError(_) => "timed out".to_string(),
                aws_sdk_secretsmanager::error::SdkError::DispatchFailure(_) => {
                    "Secrets Manager is unreachable (a VPC endpoint or NAT is needed)".to_string()
                }
                _ => "unexpected response".to_string(),
            });
            err(format!("the secret could not be read: {why}"))
        })?;
    let text = out
        .secret_string()
        .ok_or_else(|| err("the secret has no SecretString (a JSON object is expected)"))?;
    parse(text)
}

/// A JSON object of string values; numbers and booleans are taken as their
/// text. Anything else fails naming the key (never the value).
pub fn parse(text: &str) -> Result<Vec<(String, String)>, ConfigError> {
    let map: HashMap<String, serde_json::Value> = serde_json::from_str(text).map_err(|e| {
        err(format!(
            "the secret is not a JSON object of strings ({})",
            crate::sqs_batch::unreadable(&e)
        ))
    })?;
    let mut pairs = Vec::with_capacity(map.len());
    for (key, value) in map {
        let value = match value {
            serde_json::Value::String(s) => s,
            serde_json::Value::Number(n) => n.to_string(),
            serde_json::Value::Bool(b) => b.to_string(),
            _ => return Err(err(format!("key {key} of the secret must be a string"))),
        };
        pairs.push((key, value));
    }
    Ok(pairs)
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn keys_become_variables_and_bad_values_name_only_the_key() {
        let mut pairs = parse(r#"{"JWT_SECRET": "s3cret-s3cret", "PG_POOL_MAX": 2}"#).unwrap();
        pairs.sort();
        assert_eq!(
            pairs,
            [
                ("JWT_SECRET".to_string(), "s3cret-s3cret".to_string()),
                ("PG_POOL_MAX".to_string(), "2".to_string()),
            ]
        );
        let e = parse(r#"{"C2S_TOKEN": {"nested": "tok-123"}}"#).unwrap_err();
        assert_eq!(e.name, "SECRETS_ARN");
        assert!(e.to_string().contains("C2S_TOKEN"), "{e}");
        assert!(!e.to_string().contains("tok-123"), "{e}");
        let e = parse("DATABASE_URL=postgres://u:hunter2@h/db").unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }
}
