//! CloudWatch metrics through the Embedded Metric Format: one JSON line on
//! stdout that CloudWatch Logs turns into metrics (no SDK call, no extra
//! permission, no added latency). Namespace `METRICS_NAMESPACE` (the stack
//! name in template.yaml), one dimension `FunctionName` (Lambda's
//! `AWS_LAMBDA_FUNCTION_NAME`), which the stack's alarms select on.
//!
//! Outside Lambda (no `AWS_LAMBDA_FUNCTION_NAME`) nothing is printed: local
//! runs and tests keep their logs readable.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unit {
    Count,
    Seconds,
}

impl Unit {
    fn as_str(self) -> &'static str {
        match self {
            Unit::Count => "Count",
            Unit::Seconds => "Seconds",
        }
    }
}

/// One metric value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Metric {
    pub name: &'static str,
    pub value: f64,
    pub unit: Unit,
}

impl Metric {
    pub fn count(name: &'static str, value: f64) -> Self {
        Self {
            name,
            value,
            unit: Unit::Count,
        }
    }
    pub fn seconds(name: &'static str, value: f64) -> Self {
        Self {
            name,
            value,
            unit: Unit::Seconds,
        }
    }
}

/// The EMF document for these metrics.
pub fn document(
    namespace: &str,
    function_name: &str,
    timestamp_ms: i64,
    metrics: &[Metric],
) -> serde_json::Value {
    let mut doc = serde_json::json!({
        "_aws": {
            "Timestamp": timestamp_ms,
            "CloudWatchMetrics": [{
                "Namespace": namespace,
                "Dimensions": [["FunctionName"]],
                "Metrics": metrics
                    .iter()
                    .map(|m| serde_json::json!({"Name": m.name, "Unit": m.unit.as_str()}))
                    .collect::<Vec<_>>(),
            }],
        },
        "FunctionName": function_name,
    });
    for m in metrics {
        doc[m.name] = serde_json::json!(m.value);
    }
    doc
}

/// Prints the metrics as one EMF line when running in Lambda.
pub fn emit(metrics: &[Metric]) {
    let Ok(function_name) = std::env::var("AWS_LAMBDA_FUNCTION_NAME") else {
        return;
    };
    let namespace = std::env::var("METRICS_NAMESPACE")
        .ok()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| "CrmHub".to_string());
    let doc = document(
        &namespace,
        &function_name,
        chrono::Utc::now().timestamp_millis(),
        metrics,
    );
    println!("{doc}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_emf_document_declares_and_carries_every_metric() {
        let doc = document(
            "crm-hub",
            "crm-hub-OutboxRelayFunction-abc",
            1_700_000_000_000,
            &[
                Metric::count("OutboxBacklog", 3.0),
                Metric::seconds("OutboxOldestAgeSeconds", 42.5),
            ],
        );
        assert_eq!(
            doc,
            serde_json::json!({
                "_aws": {
                    "Timestamp": 1_700_000_000_000i64,
                    "CloudWatchMetrics": [{
                        "Namespace": "crm-hub",
                        "Dimensions": [["FunctionName"]],
                        "Metrics": [
                            {"Name": "OutboxBacklog", "Unit": "Count"},
                            {"Name": "OutboxOldestAgeSeconds", "Unit": "Seconds"},
                        ],
                    }],
                },
                "FunctionName": "crm-hub-OutboxRelayFunction-abc",
                "OutboxBacklog": 3.0,
                "OutboxOldestAgeSeconds": 42.5,
            })
        );
    }
}
