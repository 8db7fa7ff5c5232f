//! POST /api/media/upload-url `{content_type, bytes}`: a presigned S3 PUT
//! (5 minutes, for exactly that type and size) and the `media_key`
//! (`uploads/<uuid>.<ext>`) to send with POST /api/messages. The allow-list
//! is the media worker's (images, audio, video, PDF); the cap is 16 MiB.
//! Under the local runner the URL is one of its own media folder
//! (`/local/media/uploads/…`, signed by `crm_platform::local_media`, served
//! by infra/local); without either it answers 501 `not_available_locally`.

use crm_domain::crm::{
    ApiError,
    input::{Fields, Patch},
};
use crm_platform::blob::Presigner;
use serde_json::{Map, Value, json};
use std::time::Duration;
use uuid::Uuid;

pub const MAX_BYTES: i64 = 16 * 1024 * 1024;
pub const EXPIRES: Duration = Duration::from_secs(300);

/// The allowed content types and the extension their keys get (as the media worker).
pub use crm_domain::media::extension;

#[derive(Debug, Clone, PartialEq)]
pub struct UploadInput {
    pub content_type: String,
    pub extension: &'static str,
    pub bytes: u64,
}

impl UploadInput {
    pub fn parse(body: Map<String, Value>) -> Result<Self, ApiError> {
        let f = Fields::new(body, &["content_type", "bytes"])?;
        let Patch::Set(raw) = f.text("content_type", 100)? else {
            return Err(ApiError::validation("content_type", "is required"));
        };
        let content_type = raw.to_ascii_lowercase();
        let extension = extension(&content_type).ok_or_else(|| {
            ApiError::validation(
                "content_type",
                "must be an image, audio, video or PDF type WhatsApp accepts",
            )
        })?;
        let Patch::Set(bytes) = f.integer("bytes", 1, MAX_BYTES)? else {
            return Err(ApiError::validation("bytes", "is required"));
        };
        Ok(Self {
            content_type,
            extension,
            bytes: bytes.unsigned_abs(),
        })
    }
}

/// The answer (200): where to PUT, with which headers, and the key to send.
pub async fn presign(presigner: &dyn Presigner, input: &UploadInput) -> Result<Value, ApiError> {
    let key = format!("uploads/{}.{}", Uuid::now_v7(), input.extension);
    let url = presigner
        .presign_put(&key, &input.content_type, input.bytes, EXPIRES)
        .await
        .map_err(ApiError::Unexpected)?;
    Ok(json!({
        "upload_url": url,
        "method": "PUT",
        "headers": {"content-type": input.content_type, "content-length": input.bytes.to_string()},
        "media_key": key,
        "expires_in": EXPIRES.as_secs(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(v: Value) -> Result<UploadInput, ApiError> {
        UploadInput::parse(v.as_object().unwrap().clone())
    }

    #[test]
    fn only_allowed_types_up_to_16_mib() {
        let ok = parse(json!({"content_type": "Image/JPEG", "bytes": 1000})).unwrap();
        assert_eq!(
            (ok.content_type.as_str(), ok.extension),
            ("image/jpeg", "jpg")
        );
        assert!(parse(json!({"content_type": "text/html", "bytes": 10})).is_err());
        assert!(parse(json!({"content_type": "application/pdf", "bytes": MAX_BYTES + 1})).is_err());
        assert!(parse(json!({"content_type": "application/pdf", "bytes": 0})).is_err());
        assert!(parse(json!({"content_type": "application/pdf"})).is_err());
    }
}
