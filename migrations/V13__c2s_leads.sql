-- Contact2Sale leads: the ingest side (functions/c2s-webhook). Each element of
-- a C2S hook call is one webhook_events row (source 'c2s', key
-- `c2s:<lead id>:<hook action>:<updated_at>`), an upsert of the lead below, and
-- one enrichment job in the outbox. The enrichment worker then moves the event
-- received → completed | partial | failed | skipped.

alter table webhook_events drop constraint webhook_events_status_check;
alter table webhook_events add constraint webhook_events_status_check
    check (status in ('received', 'processed', 'ignored', 'failed', 'rejected',
                      'completed', 'partial', 'skipped'));
-- The external object an event is about (the C2S lead id), for diagnosis and stats.
alter table webhook_events add column subject_id text check (length(subject_id) between 1 and 255);
create index webhook_events_subject_idx on webhook_events (source, subject_id) where subject_id is not null;

-- The lead as C2S last described it. Written forward-only: an element whose
-- `updated_at` is older than the stored one is recorded but does not overwrite.
create table c2s_leads (
    -- C2S's lead id (an opaque string in their API).
    id                     text primary key check (length(id) between 1 and 255),
    customer_name          text,
    customer_email         text,
    customer_phone         text,
    customer_phone2        text,
    customer_phone_global  text,
    seller_id              text,
    seller_name            text,
    seller_email           text,
    seller_phone           text,
    product_description    text,
    prop_ref               text,
    -- Money is integer minor units (centavos); C2S sends "350.000,00".
    price_cents            bigint check (price_cents is null or price_cents >= 0),
    city                   text,
    neighbourhood          text,
    status_alias           text,
    status_name            text,
    lead_source            text,
    channel                text,
    done_details           jsonb,
    archive_details        jsonb,
    c2s_created_at         timestamptz,
    c2s_updated_at         timestamptz,
    last_hook_action       text not null check (last_hook_action in ('on_create_lead', 'on_update_lead', 'on_close_lead')),
    closed_at              timestamptz,
    -- sha256 hex of the normalised customer name, e-mail and phone: the
    -- enrichment worker re-enriches an update only when this changed.
    contact_hash           text not null check (contact_hash ~ '^[0-9a-f]{64}$'),
    -- The lead's attributes as last received.
    attributes             jsonb not null default '{}'::jsonb,
    created_at             timestamptz not null default now(),
    updated_at             timestamptz not null default now()
);
create index c2s_leads_seller_idx on c2s_leads (seller_id) where seller_id is not null;
