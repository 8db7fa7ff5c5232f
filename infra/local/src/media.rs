//! The local media folder over HTTP, standing in for S3's presigned URLs:
//! `PUT /local/media/<key>?…` stores an upload (POST /api/media/upload-url
//! hands these out), `GET /local/media/<key>?…` serves a file (GET
//! /api/messages/{id}/media/{index} redirects to these). Only URLs signed by
//! this process work (`crm_platform::local_media`); a file is served with
//! the content type and disposition the URL was signed for and
//! `X-Content-Type-Options: nosniff`, never with a guessed type.

use axum::{
    body::Bytes,
    extract::{Path, RawQuery, State},
    http::{HeaderMap, HeaderValue, Method, StatusCode, header},
    response::{IntoResponse, Response},
};
use crm_platform::{
    blob::BlobStore,
    config::Env,
    local_media::{Grant, LocalMediaUrls, Refusal},
};
use std::sync::{Arc, OnceLock};

static URLS: OnceLock<Arc<LocalMediaUrls>> = OnceLock::new();

/// The one signer of this process: the functions' `Deps` sign with it and
/// the router verifies with it (MEDIA_DIR, default `.local/media`, as the
/// media worker).
pub fn urls(env: &Env) -> Arc<LocalMediaUrls> {
    URLS.get_or_init(|| {
        let dir = env.optional("MEDIA_DIR").unwrap_or(".local/media");
        Arc::new(LocalMediaUrls::new(dir))
    })
    .clone()
}

/// The signer `build` made (or one on the process environment's MEDIA_DIR).
pub fn current() -> Arc<LocalMediaUrls> {
    urls(&Env::from_process())
}

fn refuse(status: StatusCode, code: &str, msg: &str) -> Response {
    let body = serde_json::json!({"error": msg, "code": code});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn refused(r: Refusal) -> Response {
    match r {
        Refusal::BadSignature => refuse(
            StatusCode::FORBIDDEN,
            "signature_invalid",
            "Invalid media URL",
        ),
        Refusal::Expired => refuse(
            StatusCode::FORBIDDEN,
            "url_expired",
            "This media URL has expired",
        ),
    }
}

pub async fn get(
    State(urls): State<Arc<LocalMediaUrls>>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
) -> Response {
    let grant = match urls.verify("GET", &key, query.as_deref().unwrap_or_default()) {
        Ok(g) => g,
        Err(r) => return refused(r),
    };
    let Grant::Get {
        content_type,
        disposition,
    } = grant
    else {
        return refused(Refusal::BadSignature);
    };
    match urls.blob().get(&key).await {
        Ok(Some(bytes)) => {
            let mut resp = (StatusCode::OK, bytes).into_response();
            let h = resp.headers_mut();
            for (name, value) in [
                (header::CONTENT_TYPE, content_type.as_str()),
                (header::CONTENT_DISPOSITION, disposition.as_str()),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
                (header::CACHE_CONTROL, "private, max-age=60"),
            ] {
                match HeaderValue::from_str(value) {
                    Ok(v) => drop(h.insert(name, v)),
                    Err(_) => return refused(Refusal::BadSignature),
                }
            }
            resp
        }
        Ok(None) => refuse(StatusCode::NOT_FOUND, "not_found", "Not found"),
        Err(e) => {
            tracing::warn!(error = %e, "reading a local media file failed");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal error",
            )
        }
    }
}

pub async fn put(
    State(urls): State<Arc<LocalMediaUrls>>,
    Path(key): Path<String>,
    RawQuery(query): RawQuery,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let grant = match urls.verify(method.as_str(), &key, query.as_deref().unwrap_or_default()) {
        Ok(g) => g,
        Err(r) => return refused(r),
    };
    let Grant::Put {
        content_type,
        bytes,
    } = grant
    else {
        return refused(Refusal::BadSignature);
    };
    // What S3 enforces for a presigned PUT: the signed type and length.
    let sent_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !sent_type.eq_ignore_ascii_case(&content_type) {
        return refuse(
            StatusCode::FORBIDDEN,
            "signature_invalid",
            "Content-Type differs from the one the URL was made for",
        );
    }
    if u64::try_from(body.len()).ok() != Some(bytes) {
        return refuse(
            StatusCode::FORBIDDEN,
            "signature_invalid",
            "Content-Length differs from the one the URL was made for",
        );
    }
    match urls.put(&key, body.to_vec(), &content_type).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "storing a local upload failed");
            refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "Internal error",
            )
        }
    }
}

/// The routes, to merge into the runner's router.
pub fn router(urls: Arc<LocalMediaUrls>) -> axum::Router {
    axum::Router::new()
        .route("/local/media/{*key}", axum::routing::get(get).put(put))
        .layer(axum::extract::DefaultBodyLimit::max(UPLOAD_LIMIT))
        .with_state(urls)
}

/// The upload URL's cap (messages-send `upload::MAX_BYTES`).
const UPLOAD_LIMIT: usize = 16 * 1024 * 1024;
