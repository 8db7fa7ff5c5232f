-- The C2S enrichment worker (functions/enrichment-worker): one run per
-- webhook event, the people found (parties) and their link to the lead, the
-- cross-worker deduplication of paid lookups, the notes posted back to C2S,
-- and managers notified when a lead closes.

-- One row per enrichment job's event: created on the first receive, updated
-- by every later receive of the same job (attempts), finished once.
create table enrichment_runs (
    id              uuid primary key default gen_random_uuid(),
    event_id        uuid not null unique references webhook_events (id) on delete cascade,
    lead_id         text not null references c2s_leads (id) on delete cascade,
    hook_action     text not null check (hook_action in ('on_create_lead', 'on_update_lead', 'on_close_lead')),
    status          text not null default 'running'
                    check (status in ('running', 'completed', 'partial', 'failed', 'skipped')),
    -- The c2s_leads.contact_hash this run enriched: an update re-enriches only
    -- when the lead's hash differs from the last completed/partial run's.
    contact_hash    text check (contact_hash ~ '^[0-9a-f]{64}$'),
    -- Per field: {"phone": {"valid": false, "reason": "..."}, "email": {...}} (no values).
    validation      jsonb not null default '{}'::jsonb,
    -- same_person | different_people | phone_only | email_only | not_found
    identity        text check (identity in ('same_person', 'different_people', 'phone_only', 'email_only', 'not_found')),
    -- Human-readable reasons (skipped, partial, failed), in order.
    reasons         jsonb not null default '[]'::jsonb check (jsonb_typeof(reasons) = 'array'),
    error           text,
    attempts        integer not null default 1 check (attempts >= 1),
    started_at      timestamptz not null default now(),
    finished_at     timestamptz,
    duration_ms     integer check (duration_ms is null or duration_ms >= 0),
    -- A finished run says when; a running one does not.
    constraint enrichment_runs_finished check ((status = 'running') = (finished_at is null))
);
create index enrichment_runs_lead_idx on enrichment_runs (lead_id, started_at desc);

-- A person as the Work API describes them, one row per CPF.
create table parties (
    id              uuid primary key default gen_random_uuid(),
    -- 11 digits, check digits verified by the worker.
    cpf             text not null unique check (cpf ~ '^[0-9]{11}$'),
    name            text,
    birth_date      date,
    gender          text,
    mother_name     text,
    emails          jsonb not null default '[]'::jsonb check (jsonb_typeof(emails) = 'array'),
    phones          jsonb not null default '[]'::jsonb check (jsonb_typeof(phones) = 'array'),
    addresses       jsonb not null default '[]'::jsonb check (jsonb_typeof(addresses) = 'array'),
    companies       jsonb not null default '[]'::jsonb check (jsonb_typeof(companies) = 'array'),
    financial       jsonb,
    -- The Work API answer the row was built from.
    source          text not null default 'work_api' check (source in ('work_api')),
    source_payload  jsonb not null,
    fetched_at      timestamptz not null default now(),
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now()
);

-- Which people a lead resolved to, and through which contact datum.
create table lead_parties (
    lead_id         text not null references c2s_leads (id) on delete cascade,
    party_id        uuid not null references parties (id) on delete cascade,
    matched_by      text not null check (matched_by in ('phone_and_email', 'phone', 'email')),
    run_id          uuid not null references enrichment_runs (id) on delete cascade,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    primary key (lead_id, party_id)
);
create index lead_parties_party_idx on lead_parties (party_id);

-- Paid lookups, deduplicated across concurrent workers: the first worker to
-- claim a key makes the call; the others wait for its result, which stays
-- valid until expires_at (LOOKUP_DEDUP_WINDOW_SECS).
create table enrichment_lookups (
    -- diretrix:phone:<sha256> | diretrix:email:<sha256> | work:cpf:<sha256>: the
    -- SHA-256 hex of the full key text (`diretrix:phone:<e164>`,
    -- `diretrix:email:<address>`, `work:cpf:<cpf>`), so no contact datum is
    -- kept in clear here. Expired rows are purged by the worker, a bounded
    -- batch per invocation.
    key             text primary key check (key ~ '^(diretrix:phone|diretrix:email|work:cpf):[0-9a-f]{64}$'),
    state           text not null check (state in ('pending', 'done')),
    -- The normalised answer (`done` only); what a waiting worker reads.
    result          jsonb,
    -- A pending claim whose holder died is taken over after this.
    lease_until     timestamptz not null,
    expires_at      timestamptz not null,
    calls           integer not null default 1 check (calls >= 1),
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint enrichment_lookups_done_has_result check ((state = 'done') = (result is not null))
);
create index enrichment_lookups_expiry_idx on enrichment_lookups (expires_at);

-- The enrichment note of a lead, posted to C2S at most once. The intent
-- (`pending`, attempted_at set) is committed before the call and the result
-- right after: a pending row found later means the outcome is unknown, and it
-- becomes `uncertain` instead of being posted again.
create table enrichment_notes (
    id              uuid primary key default gen_random_uuid(),
    lead_id         text not null references c2s_leads (id) on delete cascade,
    run_id          uuid not null references enrichment_runs (id) on delete cascade,
    body            text not null check (length(body) between 1 and 20000),
    body_sha256     text not null check (body_sha256 ~ '^[0-9a-f]{64}$'),
    -- pending: intent recorded; posted: C2S answered 2xx; failed: provably not
    -- taken (an error answer, or the connection never made); uncertain: the
    -- outcome of an attempt is unknown, never repeated; local: recorded by the
    -- local sink (no C2S credentials), not posted.
    status          text not null check (status in ('pending', 'posted', 'failed', 'uncertain', 'local')),
    attempts        integer not null default 0 check (attempts >= 0),
    attempted_at    timestamptz,
    http_status     integer,
    error           text,
    posted_at       timestamptz,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    -- A lead never receives the same note twice.
    constraint enrichment_notes_once unique (lead_id, body_sha256),
    -- One note per run (= per webhook event): a retried job reuses this row
    -- and its stored body, whatever text it would compose now, and never
    -- posts another while it is pending, uncertain or posted.
    constraint enrichment_notes_one_per_run unique (run_id)
);

-- Sales managers notified when a lead of one of their sellers closes. No
-- secrets here: a webhook is named by the SHA-256 of an OUTBOUND_WEBHOOK_URLS
-- entry of the send worker (the URL itself lives in configuration).
create table managers (
    id                  uuid primary key default gen_random_uuid(),
    name                text not null check (length(name) between 1 and 200),
    email               text check (email is null or (length(email) <= 254 and email like '%_@_%')),
    webhook_target_key  text check (webhook_target_key ~ '^[0-9a-f]{64}$'),
    active              boolean not null default true,
    created_at          timestamptz not null default now(),
    updated_at          timestamptz not null default now(),
    -- A manager must be reachable somehow.
    constraint managers_reachable check (email is not null or webhook_target_key is not null)
);

-- Which sellers a manager answers for: by C2S seller id or by seller e-mail.
create table manager_sellers (
    id              uuid primary key default gen_random_uuid(),
    manager_id      uuid not null references managers (id) on delete cascade,
    seller_id       text check (length(seller_id) between 1 and 255),
    seller_email    text check (seller_email = lower(seller_email) and length(seller_email) <= 254),
    created_at      timestamptz not null default now(),
    constraint manager_sellers_one_key check ((seller_id is null) <> (seller_email is null))
);
-- A seller may answer to several managers; each pairing once.
create unique index manager_sellers_seller_id_idx on manager_sellers (seller_id, manager_id) where seller_id is not null;
create unique index manager_sellers_seller_email_idx on manager_sellers (seller_email, manager_id) where seller_email is not null;

-- One notification per closed-lead event, manager and channel, delivered
-- once by the send worker (notify_manager job): intent before the call
-- (`sending`, attempted_at), result after; a `sending` row found later is
-- `uncertain`, never sent twice.
create table manager_notifications (
    id              uuid primary key default gen_random_uuid(),
    manager_id      uuid not null references managers (id) on delete cascade,
    lead_id         text not null references c2s_leads (id) on delete cascade,
    event_id        uuid not null references webhook_events (id) on delete cascade,
    channel         text not null check (channel in ('email', 'webhook')),
    subject         text not null,
    body            text not null,
    status          text not null default 'pending'
                    check (status in ('pending', 'sending', 'sent', 'failed', 'uncertain')),
    attempts        integer not null default 0 check (attempts >= 0),
    attempted_at    timestamptz,
    provider_id     text,
    error           text,
    sent_at         timestamptz,
    created_at      timestamptz not null default now(),
    updated_at      timestamptz not null default now(),
    constraint manager_notifications_once unique (event_id, manager_id, channel),
    constraint manager_notifications_sent_has_time check ((status = 'sent') = (sent_at is not null))
);
create index manager_notifications_lead_idx on manager_notifications (lead_id);
