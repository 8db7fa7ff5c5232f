-- Our copies of the media files of inbound Twilio messages (fetch_twilio_media
-- jobs): one row per message and media index, stored or rejected for good.
-- Forward-only: never edit once landed; add a new V<n>__*.sql instead.

create table media_objects (
    message_id    uuid not null references messages (id) on delete cascade,
    -- N of Twilio's MediaUrlN (at most 10 files per message).
    index         smallint not null check (index between 0 and 9),
    status        text not null check (status in ('stored', 'rejected')),
    -- Blob key (S3 / local folder), derived from message_id and index: a retry overwrites the same object.
    key           text,
    content_type  text,
    bytes         bigint check (bytes >= 0),
    sha256        text check (sha256 ~ '^[0-9a-f]{64}$'),
    -- Why a file was refused for good (host, type, size, a 4xx); no URL, it may carry ids.
    reason        text check (reason is null or length(reason) <= 500),
    created_at    timestamptz not null default now(),
    -- One copy per file: a redelivered job finds its row and is acknowledged without downloading.
    constraint media_objects_message_index unique (message_id, index),
    -- A stored file has everything needed to serve it; a rejected one has its reason.
    constraint media_objects_stored_complete check (
        (status = 'stored') = (key is not null and content_type is not null and bytes is not null and sha256 is not null)),
    constraint media_objects_rejected_reason check ((status = 'rejected') = (reason is not null))
);
