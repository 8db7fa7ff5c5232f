//! Which file GET /api/messages/{id}/media/{index} may hand out: the
//! message must be one the caller may read (its contact), else 404 exactly
//! as for a message that does not exist, so ids cannot be probed.
//!
//! Inbound: the media worker's copy (`media_objects`, V9), by index; a file
//! not stored yet is 409 `media_pending`, one refused for good 409
//! `media_rejected`. Outbound: the upload the message was sent with
//! (`messages.media_key`, `uploads/<uuid>.<ext>`), index 0.

use crate::{auth::Principal, crm::ApiError, db::GenericClient, media};
use uuid::Uuid;

/// How a browser should show the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Disposition {
    /// Images, audio and video: shown in the page.
    Inline,
    /// Anything else (PDF): downloaded.
    Attachment,
}

impl Disposition {
    pub fn for_type(content_type: &str) -> Self {
        if ["image/", "audio/", "video/"]
            .iter()
            .any(|p| content_type.starts_with(p))
        {
            Self::Inline
        } else {
            Self::Attachment
        }
    }
}

/// A file the caller may fetch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaFile {
    /// Blob key (S3 / local folder).
    pub key: String,
    pub content_type: String,
    /// `None` for an outbound upload (its size is not recorded).
    pub bytes: Option<i64>,
    /// `<message id>-<index>.<ext>`: nothing the sender chose.
    pub file_name: String,
    pub disposition: Disposition,
}

impl MediaFile {
    /// The `Content-Disposition` value.
    pub fn content_disposition(&self) -> String {
        let kind = match self.disposition {
            Disposition::Inline => "inline",
            Disposition::Attachment => "attachment",
        };
        format!("{kind}; filename=\"{}\"", self.file_name)
    }
}

/// The highest media index Twilio sends (MediaUrl0…MediaUrl9).
pub const MAX_INDEX: i16 = 9;

/// The path's `{index}`: 0…9, anything else 404 (as an unknown file).
pub fn parse_index(raw: &str) -> Result<i16, ApiError> {
    raw.parse::<i16>()
        .ok()
        .filter(|i| (0..=MAX_INDEX).contains(i))
        .ok_or(ApiError::NotFound("media"))
}

pub async fn find(
    db: &impl GenericClient,
    who: &Principal,
    message_id: Uuid,
    index: i16,
) -> Result<MediaFile, ApiError> {
    let stmt = db
        .prepare_cached(
            "select m.direction, m.media_key, m.num_media, o.status, o.key, o.content_type, o.bytes \
             from messages m \
             join contacts c on c.id = m.contact_id \
                 and ($1::text is null or c.owner_id = $1 or c.owner_id is null) \
             left join media_objects o on o.message_id = m.id and o.index = $3 \
             where m.id = $2",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the media lookup"))?;
    let row = db
        .query_opt(&stmt, &[&who.owner_scope(), &message_id, &index])
        .await
        .map_err(|e| ApiError::from_db(e, "looking up the media"))?
        .ok_or(ApiError::NotFound("message"))?;
    let inbound = row.get::<_, &str>(0) == "in";
    let (key, content_type, bytes) = if inbound {
        match row.get::<_, Option<&str>>(3) {
            Some("stored") => (
                row.get::<_, String>(4),
                row.get::<_, String>(5),
                row.get::<_, Option<i64>>(6),
            ),
            Some(_) => {
                return Err(ApiError::Refused {
                    code: "media_rejected",
                    message: "This file was refused when it was fetched (type, size or host)"
                        .into(),
                });
            }
            None if i32::from(index) < row.get::<_, i32>(2) => {
                return Err(ApiError::Refused {
                    code: "media_pending",
                    message: "This file has not been stored yet; try again shortly".into(),
                });
            }
            None => return Err(ApiError::NotFound("media")),
        }
    } else {
        let key = row
            .get::<_, Option<String>>(1)
            .filter(|_| index == 0)
            .ok_or(ApiError::NotFound("media"))?;
        let content_type = key
            .rsplit_once('.')
            .and_then(|(_, ext)| media::content_type_of(ext))
            .ok_or(ApiError::NotFound("media"))?;
        (key, content_type.to_string(), None)
    };
    let ext = media::extension(&content_type).unwrap_or("bin");
    Ok(MediaFile {
        disposition: Disposition::for_type(&content_type),
        file_name: format!("{message_id}-{index}.{ext}"),
        key,
        content_type,
        bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indexes_outside_twilios_range_are_unknown_files() {
        assert_eq!(parse_index("0").unwrap(), 0);
        assert_eq!(parse_index("9").unwrap(), 9);
        for bad in ["10", "-1", "x", "", "01x"] {
            assert_eq!(parse_index(bad).unwrap_err().status(), 404, "{bad}");
        }
    }

    #[test]
    fn only_pictures_sound_and_video_are_inline() {
        assert_eq!(Disposition::for_type("image/jpeg"), Disposition::Inline);
        assert_eq!(Disposition::for_type("video/mp4"), Disposition::Inline);
        assert_eq!(
            Disposition::for_type("application/pdf"),
            Disposition::Attachment
        );
    }
}
