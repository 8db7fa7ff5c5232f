-- Durability: the local runner's queues live in PostgreSQL, as durable as
-- SQS. A message is gone only when its consumer acknowledged it; a claim
-- has a visibility deadline, so a consumer that died (SIGKILL) lets it go
-- and the message is received again after the deadline.
-- Forward-only: never edit once landed; add a new V<n>__*.sql instead.

create table local_queue_messages (
    id             bigint generated always as identity primary key,
    queue          text not null check (queue in ('send', 'enrichment', 'media', 'campaign')),
    -- The outbox message id: a second publish of the same row (a relay that
    -- died between publishing and marking) is the same message, kept once.
    message_id     uuid not null unique,
    body           text not null,
    -- Receivable from this moment on; a claim pushes it to its deadline.
    visible_at     timestamptz not null default now(),
    receive_count  integer not null default 0 check (receive_count >= 0),
    created_at     timestamptz not null default now(),
    -- Set when the consumer acknowledged it (done, or dropped as SQS would
    -- dead-letter it); kept a day so a re-publish is recognised, then purged.
    acked_at       timestamptz,
    dead_reason    text
);
create index local_queue_messages_receivable_idx
    on local_queue_messages (queue, visible_at) where acked_at is null;
create index local_queue_messages_acked_idx
    on local_queue_messages (acked_at) where acked_at is not null;

-- The scheduled relay re-drives the job of a stale state (crm_domain::outbox::stale)
-- by copying its last outbox row, found by the id the job names.
create index outbox_job_message_id_idx on outbox ((body->>'message_id'));
create index outbox_job_event_id_idx on outbox ((body->>'event_id'));
