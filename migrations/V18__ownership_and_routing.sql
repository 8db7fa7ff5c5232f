-- Owners are users, and webhook-created leads get one by a per-source rule
-- (issue 10 §3). `owner_id` stays text: rows written before accounts keep
-- their free-text owner until reassigned (docs/ownership.md); the API checks
-- every owner it writes against `users`.

-- How new contacts from one webhook source are assigned.
create table lead_routing (
    source      text primary key check (source in ('instantly', 'calcom', 'twilio')),
    mode        text not null default 'unowned' check (mode in ('unowned', 'fixed', 'round_robin')),
    -- The rule's users, in round-robin order.
    user_ids    uuid[] not null default '{}',
    -- Round-robin: the 0-based index into user_ids of the next candidate.
    next_index  integer not null default 0 check (next_index >= 0),
    updated_by  text,
    updated_at  timestamptz not null default now(),
    -- A rule names exactly the users its mode needs: none, one, or at least one.
    constraint lead_routing_users_fit_mode check (
        (mode = 'unowned' and cardinality(user_ids) = 0)
        or (mode = 'fixed' and cardinality(user_ids) = 1)
        or (mode = 'round_robin' and cardinality(user_ids) between 1 and 100))
);
-- Default: leads stay unowned until someone claims them.
insert into lead_routing (source) values ('instantly'), ('calcom'), ('twilio');

-- The owner the rule of `p_source` gives the next lead, or null (unowned,
-- or no active user in the rule). Round-robin takes the rule's row lock, so
-- concurrent leads queue on it and each sees the index the previous one
-- left: two leads never go to the same person while another is next.
-- Inactive users are skipped (and the index moves past them).
create function lead_route_owner(p_source text) returns uuid
language plpgsql as $$
declare
    v_mode  text;
    v_users uuid[];
    v_next  integer;
    v_n     integer;
    v_pick  uuid;
begin
    select mode, user_ids into v_mode, v_users from lead_routing where source = p_source;
    if not found or v_mode = 'unowned' then
        return null;
    end if;
    if v_mode = 'fixed' then
        select id into v_pick from users where id = v_users[1] and active;
        return v_pick;
    end if;
    -- Round-robin: read the rule again under its lock (it may have changed meanwhile).
    select mode, user_ids, next_index into v_mode, v_users, v_next
    from lead_routing where source = p_source for update;
    if v_mode <> 'round_robin' then
        return lead_route_owner(p_source);
    end if;
    v_n := cardinality(v_users);
    for i in 0 .. v_n - 1 loop
        select id into v_pick from users where id = v_users[((v_next + i) % v_n) + 1] and active;
        if v_pick is not null then
            update lead_routing set next_index = (v_next + i + 1) % v_n where source = p_source;
            return v_pick;
        end if;
    end loop;
    return null;
end
$$;

-- Gives a contact a webhook just created the owner its source's rule names,
-- with its open unowned deals, and logs who got it on the timeline. Every
-- webhook flow that creates contacts calls this, and only for contacts it
-- inserted. Returns the owner (null: the lead stays unowned).
create function lead_route_assign(p_contact uuid, p_source text) returns text
language plpgsql as $$
declare
    v_owner uuid := lead_route_owner(p_source);
    v_name  text;
    v_mode  text;
begin
    if v_owner is null then
        return null;
    end if;
    update contacts set owner_id = v_owner::text, updated_at = now()
    where id = p_contact and owner_id is null;
    if not found then
        return null;
    end if;
    update deals set owner_id = v_owner::text, updated_at = now()
    where contact_id = p_contact and status = 'open' and owner_id is null;
    select name into v_name from users where id = v_owner;
    select mode into v_mode from lead_routing where source = p_source;
    insert into activities (type, contact_id, body, metadata, actor)
    values ('system', p_contact,
            format('Lead assigned to %s by the %s routing rule (%s)', v_name, p_source, replace(v_mode, '_', '-')),
            jsonb_build_object('event', 'contact_assigned', 'via', 'lead_routing', 'source', p_source,
                               'mode', v_mode, 'from_owner_id', null, 'to_owner_id', v_owner::text),
            'lead_routing');
    return v_owner::text;
end
$$;

-- A contact's open deals follow its owner: a deal inserted without an owner
-- takes its contact's (webhook flows create deals unowned).
create function deals_take_contact_owner() returns trigger
language plpgsql as $$
begin
    if new.owner_id is null and new.status = 'open' then
        select owner_id into new.owner_id from contacts where id = new.contact_id;
    end if;
    return new;
end
$$;
create trigger deals_take_contact_owner before insert on deals
    for each row execute function deals_take_contact_owner();

-- The Instantly reply flow of V2, now routing the contacts it creates.
create or replace function instantly_reply_ingest(p jsonb, p_payload jsonb) returns jsonb
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
    v_new_contact boolean;
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
    returning id, (xmax = 0) into v_contact, v_new_contact;

    -- A contact this reply created goes to whoever the source's rule names (V18).
    if v_new_contact then
        perform lead_route_assign(v_contact, 'instantly');
    end if;

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
