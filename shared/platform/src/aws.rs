//! AWS clients from one `aws_config` load per cold start. `AWS_ENDPOINT_URL`
//! (read by the SDK itself) points them at a local AWS-compatible server.

use aws_config::{BehaviorVersion, SdkConfig};

pub async fn load() -> SdkConfig {
    aws_config::defaults(BehaviorVersion::latest()).load().await
}

/// S3 with path-style addressing when a custom endpoint is used (local servers
/// do not resolve bucket subdomains).
pub fn s3(conf: &SdkConfig, force_path_style: bool) -> aws_sdk_s3::Client {
    let s3_conf = aws_sdk_s3::config::Builder::from(conf)
        .force_path_style(force_path_style)
        .build();
    aws_sdk_s3::Client::from_conf(s3_conf)
}

pub fn sqs(conf: &SdkConfig) -> aws_sdk_sqs::Client {
    aws_sdk_sqs::Client::new(conf)
}
