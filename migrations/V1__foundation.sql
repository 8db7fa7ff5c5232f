-- Foundation: pipelines, contacts, deals, the timeline, inbound event receipts and the outbox.
-- Forward-only: never edit once landed; add a new V<n>__*.sql instead.

create table pipelines (
    id          uuid primary key default gen_random_uuid(),
    name        text not null unique check (length(btrim(name)) between 1 and 120),
    is_default  boolean not null default false,
    created_at  timestamptz not null default now()
);
-- Exactly one default pipeline: at most one here, and the seed below provides it.
create unique index pipelines_one_default on pipelines (is_default) where is_default;

create table pipeline_stages (
    id           uuid primary key default gen_random_uuid(),
    pipeline_id  uuid not null references pipelines (id) on delete cascade,
    name         text not null check (length(btrim(name)) between 1 and 80),
    position     integer not null check (position >= 0),
    -- won/lost stages close a deal; open stages keep it on the board.
    kind         text not null default 'open' check (kind in ('open', 'won', 'lost')),
    created_at   timestamptz not null default now(),
    -- A board shows each stage once and in one place.
    constraint pipeline_stages_name_unique unique (pipeline_id, name),
    constraint pipeline_stages_position_unique unique (pipeline_id, position) deferrable initially immediate
);

create table contacts (
    id                uuid primary key default gen_random_uuid(),
    -- Lower-cased, trimmed; one contact per mailbox.
    email             text check (email is null or (email = lower(btrim(email)) and position('@' in email) > 1)),
    -- E.164 (+ and 8–15 digits); one contact per phone.
    phone             text check (phone is null or phone ~ '^\+[1-9][0-9]{7,14}$'),
    full_name         text,
    first_name        text,
    last_name         text,
    company           text,
    website           text,
    time_zone         text,
    owner_id          text,
    source            text not null default 'api',
    -- Latest classified reply (Instantly) and its one-line summary.
    reply_status      text check (reply_status in ('interested', 'meeting_request', 'question', 'not_interested',
                                                   'unsubscribe', 'out_of_office', 'wrong_person', 'unknown')),
    reply_summary     text,
    last_replied_at   timestamptz,
    -- A lead that reached us before anybody registered it (e.g. an unknown WhatsApp sender).
    is_unregistered   boolean not null default false,
    attributes        jsonb not null default '{}'::jsonb,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    constraint contacts_email_unique unique (email),
    constraint contacts_phone_unique unique (phone)
);
create index contacts_owner_idx on contacts (owner_id);
create index contacts_created_idx on contacts (created_at, id);

-- The suppression list: one row per contact and channel; checked at send time.
create table opt_outs (
    id          uuid primary key default gen_random_uuid(),
    contact_id  uuid not null references contacts (id) on delete cascade,
    channel     text not null check (channel in ('email', 'sms', 'whatsapp')),
    source      text not null,
    reason      text,
    created_at  timestamptz not null default now(),
    constraint opt_outs_contact_channel_unique unique (contact_id, channel)
);

create table deals (
    id           uuid primary key default gen_random_uuid(),
    contact_id   uuid not null references contacts (id) on delete restrict,
    pipeline_id  uuid not null references pipelines (id) on delete restrict,
    stage_id     uuid not null references pipeline_stages (id) on delete restrict,
    owner_id     text,
    title        text not null check (length(btrim(title)) between 1 and 200),
    status       text not null default 'open' check (status in ('open', 'won', 'lost')),
    -- Money is integer minor units with an ISO 4217 code.
    value_cents  bigint check (value_cents is null or value_cents >= 0),
    currency     text check (currency is null or currency ~ '^[A-Z]{3}$'),
    source       text not null default 'api',
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    closed_at    timestamptz
);
-- At most one open deal per contact per pipeline: replies and bookings update it instead of piling up deals.
create unique index deals_one_open_per_contact_pipeline on deals (contact_id, pipeline_id) where status = 'open';
create index deals_board_idx on deals (pipeline_id, stage_id, updated_at desc, id);

create table deal_stage_history (
    id             bigint generated always as identity primary key,
    deal_id        uuid not null references deals (id) on delete cascade,
    from_stage_id  uuid references pipeline_stages (id),
    to_stage_id    uuid not null references pipeline_stages (id),
    actor          text not null,
    source_event_id uuid,
    changed_at     timestamptz not null default now()
);
create index deal_stage_history_deal_idx on deal_stage_history (deal_id, changed_at);

-- Every inbound call: accepted ones hold the idempotency slot, rejected ones are kept for diagnosis only.
create table webhook_events (
    id               uuid primary key default gen_random_uuid(),
    source           text not null check (source in ('instantly', 'calcom', 'twilio', 'c2s', 'crm_api')),
    -- Set only for accepted events: a rejected (e.g. forged) call never occupies a key.
    idempotency_key  text check (length(idempotency_key) between 1 and 255),
    -- The key a rejected call offered, for diagnosis.
    offered_key      text check (length(offered_key) between 1 and 255),
    payload_hash     text not null check (payload_hash ~ '^[0-9a-f]{64}$'),
    event_type       text,
    status           text not null default 'received'
                     check (status in ('received', 'processed', 'ignored', 'failed', 'rejected')),
    http_status      integer,
    error_code       text,
    error            text,
    payload          jsonb,
    -- The ids the first processing produced, answered again on replay.
    result           jsonb,
    attempts         integer not null default 1,
    received_at      timestamptz not null default now(),
    processed_at     timestamptz,
    duration_ms      integer,
    constraint webhook_events_rejected_hold_no_key check (status <> 'rejected' or idempotency_key is null),
    constraint webhook_events_accepted_have_a_key check (status = 'rejected' or idempotency_key is not null),
    -- One accepted event per key and source.
    constraint webhook_events_idempotency unique (source, idempotency_key)
) with (fillfactor = 85);  -- room for the received → processed update to stay on its page (HOT)
-- Diagnostics read by source and time; status is deliberately not indexed so the status update stays HOT.
create index webhook_events_source_time_idx on webhook_events (source, received_at desc);

create table activities (
    id               uuid primary key default gen_random_uuid(),
    type             text not null check (type in ('email_in', 'email_out', 'meeting', 'message_in', 'message_out',
                                                   'stage_change', 'system', 'note')),
    contact_id       uuid not null references contacts (id) on delete cascade,
    deal_id          uuid references deals (id) on delete set null,
    body             text check (body is null or length(body) <= 4000),
    metadata         jsonb not null default '{}'::jsonb,
    actor            text not null default 'system',
    source_event_id  uuid references webhook_events (id) on delete set null,
    occurred_at      timestamptz not null default now(),
    created_at       timestamptz not null default now()
);
create index activities_contact_timeline_idx on activities (contact_id, occurred_at desc, id);
create index activities_deal_idx on activities (deal_id) where deal_id is not null;

-- Work for the queues, written in the same transaction as the change that caused it.
create table outbox (
    id            bigint generated always as identity primary key,
    queue         text not null check (queue in ('send', 'enrichment', 'media')),
    -- Stable across republishing, so consumers can deduplicate.
    message_id    uuid not null unique default gen_random_uuid(),
    body          jsonb not null,
    created_at    timestamptz not null default now(),
    published_at  timestamptz,
    attempts      integer not null default 0,
    last_error    text
);
create index outbox_unpublished_idx on outbox (id) where published_at is null;

-- Seed: the default pipeline and its stages. Idempotent by name.
insert into pipelines (name, is_default) values ('Sales', true) on conflict (name) do nothing;
insert into pipeline_stages (pipeline_id, name, position, kind)
select p.id, s.name, s.position, s.kind
from pipelines p
cross join (values ('New', 0, 'open'), ('Qualified', 1, 'open'), ('Meeting Scheduled', 2, 'open'),
                   ('Proposal', 3, 'open'), ('Won', 4, 'won'), ('Lost', 5, 'lost')) as s (name, position, kind)
where p.name = 'Sales'
on conflict (pipeline_id, name) do nothing;
