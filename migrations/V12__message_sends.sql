-- The send worker's record of handing an outbound message to Twilio: one row
-- per message. `attempted_at` is set before the call and cleared when Twilio
-- answered "not taken" (5xx/429/timeout), so a row with it set and no SID on
-- the message means the outcome of that call is unknown (never resent blindly).
create table message_sends (
    message_id         uuid primary key references messages (id) on delete cascade,
    -- ContentVariables of a template message ({"1": "...", ...}).
    content_variables  jsonb,
    attempts           integer not null default 0 check (attempts >= 0),
    attempted_at       timestamptz,
    -- Where it went: Twilio, or the local sink when no credentials are configured.
    sink               text check (sink in ('twilio', 'local')),
    -- What the local sink would have sent (form fields); null for Twilio.
    local_request      jsonb,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now()
);
