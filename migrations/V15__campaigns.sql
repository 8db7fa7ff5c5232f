-- Campaigns (issue 6): channels, templates, segments, campaigns, the
-- per-recipient delivery ledger, the audit log and the kill switch.
--
-- The ledger is the engine: one campaign_deliveries row per campaign × contact
-- (unique), written by a set-based snapshot of the segment; the campaign worker
-- releases queued rows in paced batches, the send worker moves each row
-- queued → sending → sent → delivered | failed, and provider status callbacks
-- update the same rows. A campaign is finished only when every row is terminal.

-- The kill switch: one row per module; when `crm` is off every campaign route
-- answers 403 module_disabled and the send worker holds campaign messages.
create table module_switches (
    module      text primary key check (module in ('crm')),
    enabled     boolean not null default true,
    reason      text check (reason is null or length(reason) <= 500),
    updated_by  text,
    updated_at  timestamptz not null default now()
);
insert into module_switches (module, enabled) values ('crm', true) on conflict do nothing;

-- Delivery channels. Secrets (Twilio, SES, webhook URL) stay in configuration.
create table channels (
    name             text primary key check (name in ('whatsapp', 'sms', 'email', 'webhook')),
    enabled          boolean not null default false,
    -- Messages per second the fan-out releases for this channel.
    rate_per_second  numeric(8, 3) not null default 10 check (rate_per_second > 0 and rate_per_second <= 1000),
    -- The channel's send budget, shared by every campaign runner on it: a
    -- token bucket refilled at rate_per_second (capped at one batch) under
    -- this row's lock; null refilled_at = a full bucket.
    tokens           numeric not null default 0,
    refilled_at      timestamptz,
    updated_by       text,
    updated_at       timestamptz not null default now()
);
insert into channels (name, enabled, rate_per_second) values
    ('whatsapp', false, 20), ('sms', false, 10), ('email', false, 10), ('webhook', false, 50)
on conflict do nothing;

-- The suppression list covers every channel a campaign can use.
alter table opt_outs drop constraint opt_outs_channel_check;
alter table opt_outs add constraint opt_outs_channel_check
    check (channel in ('email', 'sms', 'whatsapp', 'webhook'));

-- Templates: the Twilio Content API sync (V10) and the campaign API share one
-- table. `body` holds `{{1}}…` positional and `{{contact.first_name}}`-style
-- named variables; e-mail templates have a subject.
alter table message_templates drop constraint message_templates_channel_check;
alter table message_templates add constraint message_templates_channel_check
    check (channel in ('whatsapp', 'sms', 'email', 'webhook'));
alter table message_templates add column subject text check (subject is null or length(subject) between 1 and 998);
alter table message_templates add column source text not null default 'twilio_sync'
    check (source in ('twilio_sync', 'api'));
alter table message_templates add column created_by text;

-- A saved filter over contacts, evaluated at send time (crm_domain validates `filter`).
create table segments (
    id           uuid primary key default gen_random_uuid(),
    name         text not null check (length(btrim(name)) between 1 and 200),
    description  text check (description is null or length(description) <= 2000),
    filter       jsonb not null default '{}'::jsonb,
    created_by   text not null,
    created_at   timestamptz not null default now(),
    updated_at   timestamptz not null default now(),
    constraint segments_name_unique unique (name)
);

create table campaigns (
    id              uuid primary key default gen_random_uuid(),
    name            text not null check (length(btrim(name)) between 1 and 200),
    channel         text not null references channels (name),
    segment_id      uuid not null references segments (id) on delete restrict,
    template_id     uuid not null references message_templates (id) on delete restrict,
    -- draft → queued (send accepted) → sending (snapshot taken) → finished;
    -- queued/sending ⇄ paused; any but finished → cancelled.
    status          text not null default 'draft'
                    check (status in ('draft', 'queued', 'sending', 'paused', 'cancelled', 'finished')),
    pause_reason    text check (pause_reason is null or length(pause_reason) <= 500),
    created_by      text not null,
    -- Set by the snapshot: how many ledger rows, and when.
    recipients      integer check (recipients is null or recipients >= 0),
    snapshot_at     timestamptz,
    -- The campaign worker's lease: one runner at a time per campaign.
    runner_lease_until  timestamptz,
    -- Last (re)start by send or resume: the error threshold counts outcomes after it only.
    resumed_at      timestamptz,
    queued_at       timestamptz,
    finished_at     timestamptz,
    cancelled_at    timestamptz,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);
create index campaigns_created_idx on campaigns (created_at desc, id desc);
create index campaigns_active_idx on campaigns (status) where status in ('queued', 'sending');

-- The per-recipient ledger.
create table campaign_deliveries (
    id            uuid primary key default gen_random_uuid(),
    -- No foreign key to campaigns: its per-row check cost ~0.7 s of a 100k-row
    -- snapshot, and the snapshot runs with the campaign row locked, so the
    -- campaign exists. Deleting a campaign deletes its ledger (trigger below).
    campaign_id   uuid not null,
    contact_id    uuid not null references contacts (id) on delete cascade,
    -- queued: waiting for release; sending: released to the send queue (or
    -- with the provider); sent: the provider took it; delivered | failed:
    -- final; skipped: never sent (skip_reason); cancelled: campaign cancelled first.
    status        text not null default 'queued'
                  check (status in ('queued', 'sending', 'sent', 'delivered', 'failed', 'skipped', 'cancelled')),
    skip_reason   text check (skip_reason in ('opted_out', 'no_address', 'window_closed', 'invalid_template')),
    -- The outbound `messages` row of a WhatsApp/SMS delivery (status callbacks update both).
    message_id    uuid references messages (id) on delete set null,
    -- SES message id, webhook answer id, or Twilio SID.
    provider_id   text,
    attempts      integer not null default 0 check (attempts >= 0),
    -- Set before the provider call, cleared when the provider provably did
    -- not take it: set with no result means the outcome is unknown (never resent blindly).
    attempted_at  timestamptz,
    error_code    text,
    error         text check (error is null or length(error) <= 1000),
    released_at   timestamptz,
    sent_at       timestamptz,
    delivered_at  timestamptz,
    failed_at     timestamptz,
    created_at    timestamptz not null default now(),
    updated_at    timestamptz not null default now(),
    constraint campaign_deliveries_one_per_contact unique (campaign_id, contact_id),
    constraint campaign_deliveries_skip_reason check ((status = 'skipped') = (skip_reason is not null))
) with (fillfactor = 80);
-- Pages of the ledger by status, the per-status counts, and the next batch to release.
create index campaign_deliveries_status_idx on campaign_deliveries (campaign_id, status, id);
create index campaign_deliveries_message_idx on campaign_deliveries (message_id) where message_id is not null;
-- The campaign worker's error threshold: the last W rows that left the provider path, newest first.
create index campaign_deliveries_outcome_idx on campaign_deliveries (campaign_id, (coalesce(failed_at, sent_at)) desc nulls last)
    where status in ('sent', 'delivered', 'failed');

-- The ledger goes with its campaign: one set-based delete per statement.
create function campaign_deliveries_cascade() returns trigger language plpgsql as $$
begin
    delete from campaign_deliveries d using gone where d.campaign_id = gone.id;
    return null;
end $$;
create trigger campaigns_delete_ledger after delete on campaigns
    referencing old table as gone for each statement execute function campaign_deliveries_cascade();

-- Who did what, with ids and counts only — never message bodies or contact details.
create table audit_log (
    id           bigint generated always as identity primary key,
    action       text not null check (action ~ '^crm\.[a-z_]+\.[a-z_]+$'),
    actor        text not null,
    target_type  text not null,
    target_id    text,
    details      jsonb not null default '{}'::jsonb,
    created_at   timestamptz not null default now()
);
create index audit_log_time_idx on audit_log (created_at desc, id desc);
create index audit_log_action_idx on audit_log (action, created_at desc, id desc);
create index audit_log_actor_idx on audit_log (actor, created_at desc, id desc);

-- The campaign worker's own queue (snapshot and paced fan-out).
alter table outbox drop constraint outbox_queue_check;
alter table outbox add constraint outbox_queue_check check (queue in ('send', 'enrichment', 'media', 'campaign'));
-- A campaign-queue message the campaign worker cannot read is recorded like the others'.
alter table poison_messages drop constraint poison_messages_queue_check;
alter table poison_messages add constraint poison_messages_queue_check
    check (queue in ('send', 'enrichment', 'media', 'campaign'));
