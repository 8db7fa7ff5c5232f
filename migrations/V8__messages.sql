-- WhatsApp and SMS messages (Twilio): the messages themselves, every raw
-- status callback, and the notifications an inbound message raises.

create table messages (
    id                 uuid primary key default gen_random_uuid(),
    direction          text not null check (direction in ('in', 'out')),
    channel            text not null check (channel in ('sms', 'whatsapp')),
    contact_id         uuid not null references contacts (id) on delete cascade,
    body               text check (body is null or length(body) <= 4096),
    -- Twilio's MessageSid; null only for an outbound message not yet handed to Twilio.
    provider_sid       text check (provider_sid ~ '^[A-Za-z0-9]{2,64}$'),
    -- Twilio's statuses; inbound messages are 'received'. Moves forward only (crm_domain::twilio::status).
    status             text not null check (status in ('received', 'accepted', 'scheduled', 'queued', 'sending',
                                                       'sent', 'delivered', 'read', 'failed', 'undelivered', 'canceled')),
    error_code         integer,
    error_message      text,
    num_media          integer not null default 0 check (num_media between 0 and 10),
    -- Twilio Content SID of a template message.
    template_sid       text,
    -- S3 key of our copy of the (first) media file.
    media_key          text,
    wa_id              text,
    profile_name       text,
    is_read            boolean not null default false,
    read_at            timestamptz,
    is_starred         boolean not null default false,
    starred_at         timestamptz,
    source_event_id    uuid references webhook_events (id) on delete set null,
    status_updated_at  timestamptz not null default now(),
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now(),
    -- One row per Twilio message: a redelivered webhook never stores it twice.
    constraint messages_provider_sid_unique unique (provider_sid),
    -- The flags and their timestamps go together.
    constraint messages_read_at check (is_read = (read_at is not null)),
    constraint messages_starred_at check (is_starred = (starred_at is not null)),
    constraint messages_inbound_received check (direction = 'out' or status = 'received')
);
create index messages_contact_idx on messages (contact_id, created_at desc, id);
-- The WhatsApp 24-hour window looks up a contact's last inbound message.
create index messages_contact_inbound_idx on messages (contact_id, created_at desc) where direction = 'in';

-- Every status callback as received, applied or not (a late or unknown status is kept, not lost).
create table message_status_events (
    id                bigint generated always as identity primary key,
    message_id        uuid references messages (id) on delete cascade,
    provider_sid      text not null,
    status            text not null,
    error_code        integer,
    -- Whether it moved the message (forward only).
    applied           boolean not null,
    payload           jsonb not null,
    webhook_event_id  uuid references webhook_events (id) on delete set null,
    received_at       timestamptz not null default now()
);
create index message_status_events_sid_idx on message_status_events (provider_sid, id);

-- What the UI shows as new: one per inbound message.
create table notifications (
    id          uuid primary key default gen_random_uuid(),
    kind        text not null check (kind in ('message_in')),
    contact_id  uuid not null references contacts (id) on delete cascade,
    message_id  uuid references messages (id) on delete cascade,
    payload     jsonb not null default '{}'::jsonb,
    read_at     timestamptz,
    created_at  timestamptz not null default now(),
    constraint notifications_message_unique unique (kind, message_id)
);
create index notifications_unread_idx on notifications (created_at desc) where read_at is null;

-- The last-10-digits fallback of sender matching.
create index contacts_phone_last10_idx on contacts (right(phone, 10)) where phone is not null;
