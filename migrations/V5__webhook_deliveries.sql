-- Outbound webhooks: one delivery per event and target URL, every attempt
-- recorded; and the messages a worker could not read (poison messages).
-- Forward-only: never edit once landed; add a new V<n>__*.sql instead.

create table webhook_deliveries (
    id                bigint generated always as identity primary key,
    -- The Standard Webhooks `webhook-id`; the same on every retry.
    event_id          uuid not null,
    event_type        text not null,
    -- SHA-256 (hex) of the configured URL: the URL itself may carry a token, so it is not stored.
    target_key        text not null check (target_key ~ '^[0-9a-f]{64}$'),
    -- scheme://host[:port] only, for people reading this table.
    target_origin     text not null,
    status            text not null default 'pending'
                      check (status in ('pending', 'delivered', 'failed', 'dead')),
    attempts          integer not null default 0 check (attempts >= 0),
    last_http_status  integer,
    last_error        text,
    -- A worker holds the delivery while its attempt is in flight; expires so a crashed worker's claim lapses.
    locked_until      timestamptz,
    created_at        timestamptz not null default now(),
    updated_at        timestamptz not null default now(),
    finished_at       timestamptz,
    -- Each URL gets an event at most once per success: a redelivered job skips URLs already done.
    constraint webhook_deliveries_event_target unique (event_id, target_key),
    -- Only a pending delivery can be in flight or unfinished.
    constraint webhook_deliveries_finished check ((status = 'pending') = (finished_at is null))
);
create index webhook_deliveries_open_idx on webhook_deliveries (created_at) where status = 'pending';

create table webhook_delivery_attempts (
    id             bigint generated always as identity primary key,
    delivery_id    bigint not null references webhook_deliveries (id) on delete cascade,
    attempt        integer not null check (attempt >= 1),
    -- The queue message that carried it (SQS message id, or the outbox message id locally).
    message_id     text,
    http_status    integer,
    -- null when delivered (2xx).
    error_class    text check (error_class in ('http_status', 'timeout', 'connect', 'transport')),
    duration_ms    integer not null check (duration_ms >= 0),
    attempted_at   timestamptz not null default now(),
    constraint webhook_delivery_attempts_unique unique (delivery_id, attempt)
);

-- Queue messages a worker could not parse. The body is not kept (it may hold
-- personal data); the message itself ends in the queue's dead-letter queue.
create table poison_messages (
    queue          text not null check (queue in ('send', 'enrichment', 'media')),
    message_id     text not null,
    reason         text not null,
    receive_count  integer not null default 1,
    first_seen_at  timestamptz not null default now(),
    last_seen_at   timestamptz not null default now(),
    primary key (queue, message_id)
);
