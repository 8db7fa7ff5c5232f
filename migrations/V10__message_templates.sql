-- WhatsApp/SMS message templates (Twilio Content API). Upserted by content_sid
-- by the templates sync in functions/messages-read; read by messages-send.
create table message_templates (
    id uuid primary key default gen_random_uuid(),
    content_sid text unique,
    name text not null,
    language text,
    channel text not null check (channel in ('whatsapp', 'sms')),
    body text not null,
    variables jsonb not null default '[]',
    status text not null default 'approved'
        check (status in ('approved', 'pending', 'rejected', 'disabled')),
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
