//! The blob port (media): S3 in AWS, a local folder on one machine. Keys are
//! derived from stable ids by the caller, so a retried write lands on the
//! same object.

use anyhow::Context;
use crm_domain::outbox::BoxFuture;
use std::path::{Component, Path, PathBuf};

pub trait BlobStore: Send + Sync {
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
        content_type: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>>;
    /// `None` when the key does not exist.
    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<Option<Vec<u8>>>>;
}

/// Refuses keys that could escape a folder or confuse S3 tooling.
fn check_key(key: &str) -> anyhow::Result<()> {
    let valid = !key.is_empty()
        && key.len() <= 512
        && !key.starts_with('/')
        && Path::new(key)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c));
    anyhow::ensure!(valid, "invalid blob key");
    Ok(())
}

pub struct S3Blob {
    client: aws_sdk_s3::Client,
    bucket: String,
}

impl S3Blob {
    pub fn new(client: aws_sdk_s3::Client, bucket: impl Into<String>) -> Self {
        Self {
            client,
            bucket: bucket.into(),
        }
    }
}

impl BlobStore for S3Blob {
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
        content_type: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            check_key(key)?;
            self.client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .body(bytes.into())
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "S3 PutObject: {}",
                        aws_sdk_s3::error::DisplayErrorContext(e)
                    )
                })?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            check_key(key)?;
            match self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .send()
                .await
            {
                Ok(out) => Ok(Some(
                    out.body
                        .collect()
                        .await
                        .context("reading S3 object body")?
                        .to_vec(),
                )),
                Err(e) if e.as_service_error().is_some_and(|s| s.is_no_such_key()) => Ok(None),
                Err(e) => Err(anyhow::anyhow!(
                    "S3 GetObject: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )),
            }
        })
    }
}

/// Presigned URLs, so browsers upload media and Twilio fetches it straight
/// from S3 without passing through a Lambda. S3 only: the local folder has no
/// URL anyone outside this process could use.
pub trait Presigner: Send + Sync {
    /// A PUT URL for exactly this content type and length.
    fn presign_put<'a>(
        &'a self,
        key: &'a str,
        content_type: &'a str,
        bytes: u64,
        expires: std::time::Duration,
    ) -> BoxFuture<'a, anyhow::Result<String>>;
    fn presign_get<'a>(
        &'a self,
        key: &'a str,
        expires: std::time::Duration,
    ) -> BoxFuture<'a, anyhow::Result<String>>;
    /// A GET URL whose answer carries this `Content-Type` and
    /// `Content-Disposition` (S3's `response-content-*` overrides), so a
    /// browser shows the file as what we stored, not as what it was uploaded as.
    fn presign_get_as<'a>(
        &'a self,
        key: &'a str,
        expires: std::time::Duration,
        content_type: &'a str,
        disposition: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        let _ = (content_type, disposition);
        self.presign_get(key, expires)
    }
}

impl Presigner for S3Blob {
    fn presign_put<'a>(
        &'a self,
        key: &'a str,
        content_type: &'a str,
        bytes: u64,
        expires: std::time::Duration,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            check_key(key)?;
            let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires)
                .context("presigning expiry")?;
            let length = i64::try_from(bytes).context("object size")?;
            let req = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(key)
                .content_type(content_type)
                .content_length(length)
                .presigned(config)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "presigning S3 PutObject: {}",
                        aws_sdk_s3::error::DisplayErrorContext(e)
                    )
                })?;
            Ok(req.uri().to_string())
        })
    }

    fn presign_get<'a>(
        &'a self,
        key: &'a str,
        expires: std::time::Duration,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            check_key(key)?;
            let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires)
                .context("presigning expiry")?;
            let req = self
                .client
                .get_object()
                .bucket(&self.bucket)
                .key(key)
                .presigned(config)
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "presigning S3 GetObject: {}",
                        aws_sdk_s3::error::DisplayErrorContext(e)
                    )
                })?;
            Ok(req.uri().to_string())
        })
    }

    fn presign_get_as<'a>(
        &'a self,
        key: &'a str,
        expires: std::time::Duration,
        content_type: &'a str,
        disposition: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(self.presign_get_with(key, expires, Some(content_type), Some(disposition)))
    }
}

impl S3Blob {
    async fn presign_get_with(
        &self,
        key: &str,
        expires: std::time::Duration,
        content_type: Option<&str>,
        disposition: Option<&str>,
    ) -> anyhow::Result<String> {
        check_key(key)?;
        let config = aws_sdk_s3::presigning::PresigningConfig::expires_in(expires)
            .context("presigning expiry")?;
        let req = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .set_response_content_type(content_type.map(str::to_string))
            .set_response_content_disposition(disposition.map(str::to_string))
            .presigned(config)
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "presigning S3 GetObject: {}",
                    aws_sdk_s3::error::DisplayErrorContext(e)
                )
            })?;
        Ok(req.uri().to_string())
    }
}

/// Media in a local folder (the local runner's stand-in for S3).
pub struct LocalFolderBlob {
    root: PathBuf,
}

impl LocalFolderBlob {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }
}

impl BlobStore for LocalFolderBlob {
    fn put<'a>(
        &'a self,
        key: &'a str,
        bytes: Vec<u8>,
        _content_type: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            check_key(key)?;
            let path = self.root.join(key);
            if let Some(dir) = path.parent() {
                tokio::fs::create_dir_all(dir)
                    .await
                    .context("creating the media folder")?;
            }
            // Write then rename, so a reader never sees half a file.
            let tmp = path.with_extension(format!("tmp-{}", uuid::Uuid::new_v4()));
            tokio::fs::write(&tmp, bytes)
                .await
                .context("writing a media file")?;
            tokio::fs::rename(&tmp, &path)
                .await
                .context("moving a media file into place")?;
            Ok(())
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BoxFuture<'a, anyhow::Result<Option<Vec<u8>>>> {
        Box::pin(async move {
            check_key(key)?;
            match tokio::fs::read(self.root.join(key)).await {
                Ok(bytes) => Ok(Some(bytes)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).context("reading a media file"),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_that_escape_the_folder_are_refused() {
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "a b", "a\\b"] {
            assert!(check_key(bad).is_err(), "{bad:?} should be refused");
        }
        assert!(check_key("media/2026/msg-1.jpg").is_ok());
    }

    #[tokio::test]
    async fn local_folder_roundtrips_and_misses_cleanly() {
        let dir = std::env::temp_dir().join(format!("crm-blob-{}", uuid::Uuid::new_v4()));
        let store = LocalFolderBlob::new(&dir);
        store
            .put("media/m1.jpg", b"jpeg".to_vec(), "image/jpeg")
            .await
            .unwrap();
        assert_eq!(
            store.get("media/m1.jpg").await.unwrap().as_deref(),
            Some(&b"jpeg"[..])
        );
        assert_eq!(store.get("media/none.jpg").await.unwrap(), None);
        std::fs::remove_dir_all(dir).unwrap();
    }
}
