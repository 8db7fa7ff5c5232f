-- Idempotent receipt of inbound events, and the Instantly reply flow as one
-- statement: a webhook costs one round trip to PostgreSQL, and the whole
-- flow commits or rolls back together.

-- Claims the idempotency slot of (source, key).
--   new      : this call owns the event (first time, or retry of a failed one)
--   seen     : already processed or ignored; result holds the first answer
--   mismatch : the key was used with a different payload
--   in_flight: another request holds the key and has not finished
-- A concurrent duplicate blocks on the unique index until the first commits,
-- then sees it as 'seen': it never writes a second time.
create function webhook_claim(p_source text, p_key text, p_hash text, p_event_type text, p_payload jsonb,
                              out outcome text, out event_id uuid, out result jsonb)
language plpgsql as $$
declare
    existing webhook_events%rowtype;
begin
    insert into webhook_events (source, idempotency_key, payload_hash, event_type, payload)
    values (p_source, p_key, p_hash, p_event_type, p_payload)
    on conflict (source, idempotency_key) do nothing
    returning id into event_id;
    if event_id is not null then
        outcome := 'new';
        return;
    end if;

    select * into existing from webhook_events
    where source = p_source and idempotency_key = p_key
    for update;
    event_id := existing.id;
    if existing.payload_hash <> p_hash then
        outcome := 'mismatch';
    elsif existing.status = 'failed' then
        -- A failed event may be retried: take the slot over.
        update webhook_events
        set status = 'received', attempts = attempts + 1, error = null, error_code = null,
            http_status = null, payload = coalesce(p_payload, payload), received_at = now()
        where id = existing.id;
        outcome := 'new';
    elsif existing.status = 'received' then
        outcome := 'in_flight';
    else
        outcome := 'seen';
        result := existing.result;
    end if;
end
$$;

-- Marks a claimed event done with the answer replays will get.
create function webhook_complete(p_event_id uuid, p_status text, p_result jsonb) returns void
language sql as $$
    update webhook_events
    set status = p_status, result = p_result, http_status = 200, processed_at = clock_timestamp(),
        duration_ms = greatest(0, (extract(epoch from clock_timestamp() - received_at) * 1000)::integer)
    where id = p_event_id;
$$;

-- Records an accepted event whose processing failed (our fault); a retry may claim it again.
create function webhook_fail(p_source text, p_key text, p_hash text, p_event_type text, p_payload jsonb,
                             p_error_code text, p_error text) returns uuid
language sql as $$
    insert into webhook_events as w (source, idempotency_key, payload_hash, event_type, payload, status,
                                     http_status, error_code, error, processed_at, duration_ms)
    values (p_source, p_key, p_hash, p_event_type, p_payload, 'failed', 500, p_error_code, p_error, now(), 0)
    on conflict (source, idempotency_key) do update
    set status = 'failed', http_status = 500, error_code = excluded.error_code, error = excluded.error,
        processed_at = now(),
        duration_ms = greatest(0, (extract(epoch from now() - w.received_at) * 1000)::integer)
    where w.status in ('received', 'failed')
    returning id;
$$;

-- The Instantly reply flow (validated and classified by the caller):
-- claim → upsert contact by e-mail → email_in activity → reply status and
-- summary → opt-out on unsubscribe → find or create the open deal in the
-- default pipeline, moving it forward only → system activity → processed.
create function instantly_reply_ingest(p jsonb, p_payload jsonb) returns jsonb
language plpgsql as $$
declare
    v_claim       record;
    v_contact     uuid;
    v_activity    uuid := gen_random_uuid();
    v_system      uuid := gen_random_uuid();
    v_pipeline    uuid;
    v_target      uuid;
    v_target_pos  integer;
    v_target_name text;
    v_deal        uuid;
    v_deal_stage  uuid;
    v_deal_pos    integer;
    v_deal_kind   text;
    v_from_name   text;
    v_created     boolean := false;
    v_moved       boolean := false;
    v_stage_name  text;
    v_received    timestamptz := (p ->> 'received_at')::timestamptz;
    v_sys_body    text;
    v_result      jsonb;
    v_event       uuid;
    -- RFC 3339 in UTC with a Z, as the Rust side writes timestamps.
    v_changed_at  text := to_char(now() at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"');
begin
    -- Fast path: a new key costs one insert. A taken key goes through webhook_claim.
    insert into webhook_events (source, idempotency_key, payload_hash, event_type, payload)
    values ('instantly', p ->> 'idempotency_key', p ->> 'payload_hash', 'reply_received', p_payload)
    on conflict (source, idempotency_key) do nothing
    returning id into v_event;
    if v_event is null then
        select * into v_claim
        from webhook_claim('instantly', p ->> 'idempotency_key', p ->> 'payload_hash', 'reply_received', p_payload);
        if v_claim.outcome <> 'new' then
            return jsonb_build_object('outcome', v_claim.outcome, 'event_id', v_claim.event_id, 'result', v_claim.result);
        end if;
        v_event := v_claim.event_id;
    end if;

    insert into contacts as c (email, full_name, first_name, last_name, company, website, source,
                               reply_status, reply_summary, last_replied_at)
    values (p ->> 'email', p ->> 'full_name', p ->> 'first_name', p ->> 'last_name', p ->> 'company',
            p ->> 'website', 'instantly', p ->> 'intent', p ->> 'summary', v_received)
    on conflict (email) do update
    set full_name  = coalesce(c.full_name, excluded.full_name),
        first_name = coalesce(c.first_name, excluded.first_name),
        last_name  = coalesce(c.last_name, excluded.last_name),
        company    = coalesce(c.company, excluded.company),
        website    = coalesce(c.website, excluded.website),
        -- An older reply arriving late never overwrites the newer classification.
        reply_status    = case when c.last_replied_at is null or excluded.last_replied_at >= c.last_replied_at
                               then excluded.reply_status else c.reply_status end,
        reply_summary   = case when c.last_replied_at is null or excluded.last_replied_at >= c.last_replied_at
                               then excluded.reply_summary else c.reply_summary end,
        last_replied_at = greatest(c.last_replied_at, excluded.last_replied_at),
        updated_at = now()
    returning id into v_contact;

    if (p ->> 'opt_out')::boolean then
        insert into opt_outs (contact_id, channel, source, reason)
        values (v_contact, 'email', 'instantly', 'reply classified as unsubscribe')
        on conflict (contact_id, channel) do nothing;
    end if;

    select pl.id, st.id, st.position, st.name into strict v_pipeline, v_target, v_target_pos, v_target_name
    from pipelines pl join pipeline_stages st on st.pipeline_id = pl.id and st.name = p ->> 'target_stage'
    where pl.is_default;

    -- The open deal, locked; created when there is none (a concurrent creator wins the unique index).
    for attempt in 1..2 loop
        select d.id, d.stage_id, s.position, s.kind, s.name
        into v_deal, v_deal_stage, v_deal_pos, v_deal_kind, v_from_name
        from deals d join pipeline_stages s on s.id = d.stage_id
        where d.contact_id = v_contact and d.pipeline_id = v_pipeline and d.status = 'open'
        for update of d;
        exit when v_deal is not null;
        insert into deals (contact_id, pipeline_id, stage_id, title, source)
        values (v_contact, v_pipeline, v_target, p ->> 'deal_title', 'instantly')
        on conflict (contact_id, pipeline_id) where status = 'open' do nothing
        returning id into v_deal;
        if v_deal is not null then
            v_created := true;
            insert into deal_stage_history (deal_id, from_stage_id, to_stage_id, actor, source_event_id)
            values (v_deal, null, v_target, 'instantly', v_event);
            exit;
        end if;
    end loop;
    if v_deal is null then
        raise exception 'open deal for contact % vanished twice', v_contact;
    end if;

    v_stage_name := v_target_name;
    if not v_created then
        v_stage_name := v_from_name;
        -- Forward only: a reply never drags a deal back to an earlier stage.
        if v_deal_kind = 'open' and v_target_pos > v_deal_pos then
            update deals set stage_id = v_target, updated_at = now() where id = v_deal;
            insert into deal_stage_history (deal_id, from_stage_id, to_stage_id, actor, source_event_id)
            values (v_deal, v_deal_stage, v_target, 'instantly', v_event);
            v_moved := true;
            v_stage_name := v_target_name;
            -- deal.stage_changed for outbound webhooks: the same job crm_domain::jobs::Job::DeliverWebhook
            -- that every other stage move writes (the wire format is pinned by a test in jobs.rs).
            insert into outbox (queue, body)
            values ('send', jsonb_build_object(
                'kind', 'deliver_webhook', 'v', 1, 'event_id', gen_random_uuid(),
                'event_type', 'deal.stage_changed', 'occurred_at', v_changed_at,
                'payload', jsonb_build_object(
                    'deal_id', v_deal, 'contact_id', v_contact, 'pipeline_id', v_pipeline,
                    'from', jsonb_build_object('stage_id', v_deal_stage, 'name', v_from_name),
                    'to', jsonb_build_object('stage_id', v_target, 'name', v_target_name),
                    'actor', 'instantly', 'changed_at', v_changed_at)));
        else
            update deals set updated_at = now() where id = v_deal;
        end if;
    end if;

    v_sys_body := case
        when v_created then format('Deal created in %s from an Instantly reply (intent: %s)', v_stage_name, p ->> 'intent')
        when v_moved then format('Deal moved from %s to %s after an Instantly reply (intent: %s)', v_from_name, v_stage_name, p ->> 'intent')
        else format('Instantly reply logged; deal stays in %s (intent: %s)', v_stage_name, p ->> 'intent')
    end;
    insert into activities (id, type, contact_id, deal_id, body, metadata, actor, source_event_id, occurred_at)
    values (v_activity, 'email_in', v_contact, v_deal, p ->> 'body', p -> 'metadata', 'instantly', v_event, v_received),
           (v_system, 'system', v_contact, v_deal, v_sys_body,
            jsonb_build_object('intent', p ->> 'intent', 'deal_created', v_created, 'deal_moved', v_moved,
                               'from_stage', v_from_name, 'stage', v_stage_name, 'email_activity_id', v_activity),
            'instantly', v_event, now());

    v_result := jsonb_build_object(
        'status', 'ok',
        'step', 'E:deal_created_and_logged',
        'idempotency_key', p ->> 'idempotency_key',
        'contact_id', v_contact,
        'activity_id', v_activity,
        'reply_status', p ->> 'intent',
        'reply_summary', p ->> 'summary',
        'deal_id', v_deal,
        'deal_stage', v_stage_name,
        'deal_created', v_created,
        'system_activity_id', v_system);
    update webhook_events
    set status = 'processed', result = v_result, http_status = 200, processed_at = clock_timestamp(),
        duration_ms = greatest(0, (extract(epoch from clock_timestamp() - received_at) * 1000)::integer)
    where id = v_event;
    return jsonb_build_object('outcome', 'new', 'event_id', v_event, 'result', v_result);
end
$$;

-- Records an event that is valid but needs no work (e.g. Instantly "email_opened").
create function webhook_ignore(p_source text, p_key text, p_hash text, p_event_type text, p_payload jsonb,
                               p_result jsonb) returns jsonb
language plpgsql as $$
declare
    v_claim record;
begin
    select * into v_claim from webhook_claim(p_source, p_key, p_hash, p_event_type, p_payload);
    if v_claim.outcome = 'new' then
        perform webhook_complete(v_claim.event_id, 'ignored', p_result);
        return jsonb_build_object('outcome', 'new', 'event_id', v_claim.event_id, 'result', p_result);
    end if;
    return jsonb_build_object('outcome', v_claim.outcome, 'event_id', v_claim.event_id, 'result', v_claim.result);
end
$$;
