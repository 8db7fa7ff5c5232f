//! The migrate function's handler. Invoked two ways:
//! - by the stack's custom resource on every deploy that changes the
//!   function (`MigrationsOnDeploy` in template.yaml): the event carries a
//!   CloudFormation `RequestType` and a presigned `ResponseURL`, which must
//!   be answered SUCCESS or FAILED or the stack waits for an hour;
//! - directly (`aws lambda invoke`, any other event): migrates and answers
//!   `{"applied": [...]}`, or fails the invocation.

use crm_platform::{config::DatabaseConfig, db};
use lambda_runtime::Error;
use serde::Deserialize;
use serde_json::{Value, json};

/// The fields of a CloudFormation custom resource request this uses.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct CustomResourceRequest {
    pub request_type: RequestType,
    #[serde(rename = "ResponseURL")]
    pub response_url: String,
    pub stack_id: String,
    pub request_id: String,
    pub logical_resource_id: String,
    #[serde(default)]
    pub physical_resource_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum RequestType {
    Create,
    Update,
    Delete,
}

/// The same id for the life of the stack: an Update never replaces it (a
/// new id would make CloudFormation send a Delete for the old one).
pub const PHYSICAL_ID: &str = "crm-migrations";

pub async fn handle(event: Value, database: &DatabaseConfig) -> Result<Value, Error> {
    if event.get("RequestType").is_some() && event.get("ResponseURL").is_some() {
        let request: CustomResourceRequest = serde_json::from_value(event)
            .map_err(|e| format!("not a custom resource request: {e}"))?;
        return custom_resource(&request, database).await;
    }
    let applied = db::migrate(database).await?;
    tracing::info!(?applied, "migrations applied");
    Ok(json!({"applied": applied}))
}

/// Migrates on Create and Update (Delete leaves the database alone: it holds
/// the data), then answers CloudFormation.
pub async fn custom_resource(
    request: &CustomResourceRequest,
    database: &DatabaseConfig,
) -> Result<Value, Error> {
    let outcome = match request.request_type {
        RequestType::Delete => Ok(Vec::new()),
        RequestType::Create | RequestType::Update => db::migrate(database)
            .await
            .map_err(|e| crm_domain::db::loggable(&e)),
    };
    let response = match &outcome {
        Ok(applied) => {
            tracing::info!(?applied, request_type = ?request.request_type, "migrations applied on deploy");
            json!({
                "Status": "SUCCESS",
                "PhysicalResourceId": request.physical_resource_id.as_deref().unwrap_or(PHYSICAL_ID),
                "StackId": request.stack_id,
                "RequestId": request.request_id,
                "LogicalResourceId": request.logical_resource_id,
                "Data": {"Applied": applied.len()},
            })
        }
        Err(why) => {
            tracing::error!(error = %why, "migrations failed on deploy");
            json!({
                "Status": "FAILED",
                "Reason": format!("migrations failed: {why} (see the migrate function's log)"),
                "PhysicalResourceId": request.physical_resource_id.as_deref().unwrap_or(PHYSICAL_ID),
                "StackId": request.stack_id,
                "RequestId": request.request_id,
                "LogicalResourceId": request.logical_resource_id,
            })
        }
    };
    respond(&request.response_url, &response).await?;
    Ok(response)
}

/// PUT the answer on the presigned URL: no Content-Type (the URL is signed
/// without one).
async fn respond(url: &str, response: &Value) -> Result<(), Error> {
    let body = response.to_string();
    let resp = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(20))
        .build()?
        .put(url)
        .header(reqwest::header::CONTENT_LENGTH, body.len())
        .body(body)
        .send()
        .await
        .map_err(|e| format!("answering CloudFormation failed: {}", e.without_url()))?;
    if !resp.status().is_success() {
        return Err(format!("CloudFormation's response URL answered {}", resp.status()).into());
    }
    Ok(())
}
