//! Our copies of inbound media (`media_objects`, V9): one row per message and
//! media index, `stored` (key, type, size, SHA-256) or `rejected` for good
//! (reason). The row is the media worker's receipt: a job whose row exists is
//! done, so a redelivered job never downloads again.

use crate::db::GenericClient;
use anyhow::Context;
use uuid::Uuid;

/// The media types WhatsApp accepts that we store or upload, and the
/// extension their blob keys get; `None` for any other type.
pub fn extension(content_type: &str) -> Option<&'static str> {
    Some(match content_type {
        "image/jpeg" => "jpg",
        "image/png" => "png",
        "image/webp" => "webp",
        "image/gif" => "gif",
        "audio/ogg" => "ogg",
        "audio/mpeg" => "mp3",
        "audio/amr" => "amr",
        "audio/mp4" => "m4a",
        "video/mp4" => "mp4",
        "video/3gpp" => "3gp",
        "application/pdf" => "pdf",
        _ => return None,
    })
}

/// The content type an `extension` key stands for (the inverse of `extension`).
pub fn content_type_of(ext: &str) -> Option<&'static str> {
    Some(match ext {
        "jpg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "ogg" => "audio/ogg",
        "mp3" => "audio/mpeg",
        "amr" => "audio/amr",
        "m4a" => "audio/mp4",
        "mp4" => "video/mp4",
        "3gp" => "video/3gpp",
        "pdf" => "application/pdf",
        _ => return None,
    })
}

/// What became of one media file, as recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaStatus {
    Stored,
    Rejected,
}

/// A file copied into the blob store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredObject<'a> {
    pub message_id: Uuid,
    pub index: i16,
    pub key: &'a str,
    pub content_type: &'a str,
    pub bytes: i64,
    /// Lower-case hex.
    pub sha256: &'a str,
}

/// Where file `index` of a message stands, in one round trip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// No such message (a job may outlive a deleted message).
    NoMessage,
    /// The message exists and the file has no recorded outcome yet.
    Pending,
    Recorded(MediaStatus),
}

/// Whether the message exists and the recorded outcome of its file `index`
/// (rows cascade with the message, so a recorded file implies the message).
pub async fn find(db: &impl GenericClient, message_id: Uuid, index: i16) -> anyhow::Result<Lookup> {
    let stmt = db
        .prepare_cached(
            "select o.status from messages m \
             left join media_objects o on o.message_id = m.id and o.index = $2 \
             where m.id = $1",
        )
        .await
        .context("preparing the media object lookup")?;
    let row = db
        .query_opt(&stmt, &[&message_id, &index])
        .await
        .context("looking up a media object")?;
    Ok(match row {
        None => Lookup::NoMessage,
        Some(r) => match r.get::<_, Option<&str>>(0) {
            None => Lookup::Pending,
            Some("stored") => Lookup::Recorded(MediaStatus::Stored),
            Some(_) => Lookup::Recorded(MediaStatus::Rejected),
        },
    })
}

/// Locks the message row (serialising the media of one message); `false`
/// when there is no such message.
pub async fn lock_message(db: &impl GenericClient, message_id: Uuid) -> anyhow::Result<bool> {
    let stmt = db
        .prepare_cached("select 1 from messages where id = $1 for update")
        .await
        .context("preparing the message lock")?;
    Ok(db
        .query_opt(&stmt, &[&message_id])
        .await
        .context("locking the message")?
        .is_some())
}

/// Records a stored file and points `messages.media_key` at the message's
/// first stored file. Call inside a transaction after `lock_message`, so two
/// files of one message finishing at once both see each other. Returns
/// whether the row is new (a concurrent copy of the job may have won).
pub async fn record_stored(
    db: &impl GenericClient,
    obj: &StoredObject<'_>,
) -> anyhow::Result<bool> {
    let insert = db
        .prepare_cached(
            "insert into media_objects (message_id, index, status, key, content_type, bytes, sha256) \
             values ($1, $2, 'stored', $3, $4, $5, $6) on conflict (message_id, index) do nothing",
        )
        .await
        .context("preparing the media object insert")?;
    let inserted = db
        .execute(
            &insert,
            &[
                &obj.message_id,
                &obj.index,
                &obj.key,
                &obj.content_type,
                &obj.bytes,
                &obj.sha256,
            ],
        )
        .await
        .context("recording a stored media object")?;
    let update = db
        .prepare_cached(
            "update messages set media_key = first.key, updated_at = now() \
             from (select key from media_objects where message_id = $1 and status = 'stored' \
                   order by index limit 1) first \
             where id = $1 and media_key is distinct from first.key",
        )
        .await
        .context("preparing the media key update")?;
    db.execute(&update, &[&obj.message_id])
        .await
        .context("setting the message's media key")?;
    Ok(inserted == 1)
}

/// Records a file refused for good, with why (no URL: it may carry ids).
/// Returns whether the row is new.
pub async fn record_rejected(
    db: &impl GenericClient,
    message_id: Uuid,
    index: i16,
    reason: &str,
) -> anyhow::Result<bool> {
    let stmt = db
        .prepare_cached(
            "insert into media_objects (message_id, index, status, reason) values ($1, $2, 'rejected', left($3, 500)) \
             on conflict (message_id, index) do nothing",
        )
        .await
        .context("preparing the media rejection")?;
    Ok(db
        .execute(&stmt, &[&message_id, &index, &reason])
        .await
        .context("recording a rejected media object")?
        == 1)
}
