//! Presigned URLs for the local media folder (the local runner's stand-in
//! for S3 presigning): `/local/media/<key>?exp=…&ct=…&len=…&sig=…` for a
//! PUT of exactly that type and size, `…?exp=…&ct=…&cd=…&sig=…` for a GET
//! answered with that `Content-Type` and `Content-Disposition`. The
//! signature is an HMAC-SHA256 over method, key, expiry and the fixed
//! headers with a key made at start-up, so only URLs this process handed out
//! work, only until they expire, and only for what they were made for.
//! URLs are relative to the runner's origin (the console is served there).

use crate::blob::{BlobStore, LocalFolderBlob, Presigner};
use crm_domain::{
    Secret,
    outbox::BoxFuture,
    signature::{hmac_sha256_hex, hmac_sha256_hex_matches},
};
use std::{
    collections::HashMap,
    path::PathBuf,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

/// Where the local runner serves the folder.
pub const PREFIX: &str = "/local/media/";

/// What a verified URL allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Grant {
    Put {
        content_type: String,
        bytes: u64,
    },
    Get {
        content_type: String,
        disposition: String,
    },
}

/// Why a URL is refused (answered 403 without detail by the runner).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Missing or altered parameters, or a signature we did not make.
    BadSignature,
    Expired,
}

pub struct LocalMediaUrls {
    secret: Secret,
    blob: LocalFolderBlob,
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn canonical(method: &str, key: &str, exp: &str, ct: &str, extra: &str) -> String {
    format!("{method}\n{key}\n{exp}\n{ct}\n{extra}")
}

impl LocalMediaUrls {
    /// Files under `root` (MEDIA_DIR), signed with a key made now.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        let key = format!(
            "{}{}",
            uuid::Uuid::new_v4().simple(),
            uuid::Uuid::new_v4().simple()
        );
        Self {
            secret: Secret::new(key).expect("a non-empty key"),
            blob: LocalFolderBlob::new(root),
        }
    }

    /// The folder itself, to read and write what a verified URL allows.
    pub fn blob(&self) -> &LocalFolderBlob {
        &self.blob
    }

    fn url(
        &self,
        method: &str,
        key: &str,
        expires: Duration,
        ct: &str,
        extra: (&str, &str),
    ) -> String {
        let exp = (now_secs() + expires.as_secs()).to_string();
        let sig = hmac_sha256_hex(
            self.secret.expose().as_bytes(),
            canonical(method, key, &exp, ct, extra.1).as_bytes(),
        );
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("exp", &exp)
            .append_pair("ct", ct)
            .append_pair(extra.0, extra.1)
            .append_pair("sig", &sig)
            .finish();
        format!("{PREFIX}{key}?{query}")
    }

    /// Checks a request for `key` (the path after `PREFIX`) with its query.
    pub fn verify(&self, method: &str, key: &str, query: &str) -> Result<Grant, Refusal> {
        let q: HashMap<String, String> = form_urlencoded::parse(query.as_bytes())
            .into_owned()
            .collect();
        let get = |name: &str| q.get(name).map(String::as_str).ok_or(Refusal::BadSignature);
        let (exp, ct, sig) = (get("exp")?, get("ct")?, get("sig")?);
        let (extra_name, grant_put) = match method {
            "PUT" => ("len", true),
            "GET" | "HEAD" => ("cd", false),
            _ => return Err(Refusal::BadSignature),
        };
        let extra = get(extra_name)?;
        let signed_method = if grant_put { "PUT" } else { "GET" };
        if !hmac_sha256_hex_matches(
            &self.secret,
            canonical(signed_method, key, exp, ct, extra).as_bytes(),
            sig,
        ) {
            return Err(Refusal::BadSignature);
        }
        let exp: u64 = exp.parse().map_err(|_| Refusal::BadSignature)?;
        if exp < now_secs() {
            return Err(Refusal::Expired);
        }
        Ok(if grant_put {
            Grant::Put {
                content_type: ct.to_string(),
                bytes: extra.parse().map_err(|_| Refusal::BadSignature)?,
            }
        } else {
            Grant::Get {
                content_type: ct.to_string(),
                disposition: extra.to_string(),
            }
        })
    }

    /// Stores an upload a verified PUT URL allows.
    pub async fn put(&self, key: &str, bytes: Vec<u8>, content_type: &str) -> anyhow::Result<()> {
        self.blob.put(key, bytes, content_type).await
    }
}

impl Presigner for LocalMediaUrls {
    fn presign_put<'a>(
        &'a self,
        key: &'a str,
        content_type: &'a str,
        bytes: u64,
        expires: Duration,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(async move {
            Ok(self.url(
                "PUT",
                key,
                expires,
                content_type,
                ("len", &bytes.to_string()),
            ))
        })
    }

    fn presign_get<'a>(
        &'a self,
        key: &'a str,
        expires: Duration,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        self.presign_get_as(key, expires, "application/octet-stream", "attachment")
    }

    fn presign_get_as<'a>(
        &'a self,
        key: &'a str,
        expires: Duration,
        content_type: &'a str,
        disposition: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<String>> {
        Box::pin(
            async move { Ok(self.url("GET", key, expires, content_type, ("cd", disposition))) },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(url: &str) -> (&str, &str) {
        let rest = url.strip_prefix(PREFIX).unwrap();
        rest.split_once('?').unwrap()
    }

    #[tokio::test]
    async fn urls_verify_only_for_what_they_were_made_for() {
        let urls = LocalMediaUrls::new(std::env::temp_dir());
        let put = urls
            .presign_put("uploads/a.jpg", "image/jpeg", 10, Duration::from_secs(60))
            .await
            .unwrap();
        let (key, q) = split(&put);
        assert_eq!(
            urls.verify("PUT", key, q),
            Ok(Grant::Put {
                content_type: "image/jpeg".into(),
                bytes: 10
            })
        );
        // Another key, another method, an altered size, another process's key.
        assert_eq!(
            urls.verify("PUT", "uploads/b.jpg", q),
            Err(Refusal::BadSignature)
        );
        assert_eq!(urls.verify("GET", key, q), Err(Refusal::BadSignature));
        let bigger = q.replace("len=10", "len=11");
        assert_eq!(urls.verify("PUT", key, &bigger), Err(Refusal::BadSignature));
        let other = LocalMediaUrls::new(std::env::temp_dir());
        assert_eq!(other.verify("PUT", key, q), Err(Refusal::BadSignature));

        let get = urls
            .presign_get_as(
                "media/m.pdf",
                Duration::from_secs(60),
                "application/pdf",
                "attachment; filename=\"m-0.pdf\"",
            )
            .await
            .unwrap();
        let (key, q) = split(&get);
        assert_eq!(
            urls.verify("GET", key, q),
            Ok(Grant::Get {
                content_type: "application/pdf".into(),
                disposition: "attachment; filename=\"m-0.pdf\"".into()
            })
        );
        let expired = urls
            .presign_get("media/m.pdf", Duration::ZERO)
            .await
            .unwrap();
        let (key, q) = split(&expired);
        // Expiry is whole seconds: an URL made to expire now is refused a second later.
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(urls.verify("GET", key, q), Err(Refusal::Expired));
    }
}
