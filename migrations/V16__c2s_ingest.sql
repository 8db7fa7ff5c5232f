-- The Contact2Sale ingest of one hook element as one statement (one round
-- trip, all or nothing): claim the element's key in webhook_events → upsert
-- the lead forward-only → one enrichment job in the outbox. Parsing,
-- normalising, the key and the contact hash are decided in Rust
-- (crm_domain::c2s); the job body too (its event_id is filled in here).
--
-- Claim outcomes:
--   accepted : a new key, or a re-send of one that failed retryably (taken
--              over): our ingest failed (error_code `internal_error`) or the
--              worker gave up after its attempts (error_code `gave_up`)
--   duplicate: the key is known with the same payload hash, whatever else its
--              status (received = waiting for the worker; completed, partial,
--              skipped = done; failed with a final outcome such as "no CPF
--              found" = done too): nothing is written
--   mismatch : the key is known with another payload hash: nothing is written
-- A concurrent duplicate blocks on the unique (source, idempotency_key) index
-- until the first commits, then finds its row: it never writes twice.
create function c2s_ingest(p jsonb, p_payload jsonb, p_job jsonb) returns jsonb
language plpgsql as $$
declare
    v_event    uuid;
    v_existing webhook_events%rowtype;
    v_lead     text;
    v_job      uuid;
    l          jsonb := p -> 'lead';
    v_action   text := p ->> 'hook_action';
    v_updated  timestamptz := (l ->> 'c2s_updated_at')::timestamptz;
begin
    insert into webhook_events (source, idempotency_key, payload_hash, event_type, payload, subject_id, http_status)
    values ('c2s', p ->> 'idempotency_key', p ->> 'payload_hash', v_action, p_payload, p ->> 'lead_id', 200)
    on conflict (source, idempotency_key) do nothing
    returning id into v_event;

    if v_event is null then
        select * into v_existing from webhook_events
        where source = 'c2s' and idempotency_key = p ->> 'idempotency_key'
        for update;
        if v_existing.id is null then
            raise exception 'c2s key vanished between its conflict and its lookup';
        end if;
        if v_existing.payload_hash <> p ->> 'payload_hash' then
            return jsonb_build_object('outcome', 'mismatch', 'event_id', v_existing.id);
        elsif v_existing.status <> 'failed'
              or coalesce(v_existing.error_code, '') not in ('internal_error', 'gave_up') then
            return jsonb_build_object('outcome', 'duplicate', 'event_id', v_existing.id,
                                      'status', v_existing.status);
        end if;
        -- A retryable failure may be retried: take the slot over, as new.
        update webhook_events
        set status = 'received', attempts = attempts + 1, error = null, error_code = null,
            http_status = 200, result = null, payload = p_payload, subject_id = p ->> 'lead_id',
            received_at = now(), processed_at = null, duration_ms = null
        where id = v_existing.id;
        v_event := v_existing.id;
    end if;

    -- Forward only: an element older than the stored lead is recorded (and
    -- enriched as the worker sees fit) but does not overwrite it. An element
    -- without updated_at cannot be ordered: it overwrites only a lead that has none.
    insert into c2s_leads as c (
        id, customer_name, customer_email, customer_phone, customer_phone2, customer_phone_global,
        seller_id, seller_name, seller_email, seller_phone,
        product_description, prop_ref, price_cents, city, neighbourhood,
        status_alias, status_name, lead_source, channel, done_details, archive_details,
        c2s_created_at, c2s_updated_at, last_hook_action, closed_at, contact_hash, attributes)
    values (
        p ->> 'lead_id', l ->> 'customer_name', l ->> 'customer_email', l ->> 'customer_phone',
        l ->> 'customer_phone2', l ->> 'customer_phone_global',
        l ->> 'seller_id', l ->> 'seller_name', l ->> 'seller_email', l ->> 'seller_phone',
        l ->> 'product_description', l ->> 'prop_ref', (l ->> 'price_cents')::bigint, l ->> 'city',
        l ->> 'neighbourhood', l ->> 'status_alias', l ->> 'status_name', l ->> 'lead_source',
        l ->> 'channel', nullif(l -> 'done_details', 'null'::jsonb),
        nullif(l -> 'archive_details', 'null'::jsonb),
        (l ->> 'c2s_created_at')::timestamptz, v_updated, v_action,
        case when v_action = 'on_close_lead' then coalesce(v_updated, now()) end,
        l ->> 'contact_hash', coalesce(nullif(l -> 'attributes', 'null'::jsonb), '{}'::jsonb))
    on conflict (id) do update
    set customer_name = excluded.customer_name,
        customer_email = excluded.customer_email,
        customer_phone = excluded.customer_phone,
        customer_phone2 = excluded.customer_phone2,
        customer_phone_global = excluded.customer_phone_global,
        seller_id = excluded.seller_id,
        seller_name = excluded.seller_name,
        seller_email = excluded.seller_email,
        seller_phone = excluded.seller_phone,
        product_description = excluded.product_description,
        prop_ref = excluded.prop_ref,
        price_cents = excluded.price_cents,
        city = excluded.city,
        neighbourhood = excluded.neighbourhood,
        status_alias = excluded.status_alias,
        status_name = excluded.status_name,
        lead_source = excluded.lead_source,
        channel = excluded.channel,
        done_details = excluded.done_details,
        archive_details = excluded.archive_details,
        c2s_created_at = coalesce(excluded.c2s_created_at, c.c2s_created_at),
        c2s_updated_at = excluded.c2s_updated_at,
        last_hook_action = excluded.last_hook_action,
        -- Set by a close; kept through later updates (the lead's history says it was closed).
        closed_at = coalesce(excluded.closed_at, c.closed_at),
        contact_hash = excluded.contact_hash,
        attributes = excluded.attributes,
        updated_at = now()
    where c.c2s_updated_at is null or excluded.c2s_updated_at >= c.c2s_updated_at
    returning id into v_lead;

    insert into outbox (queue, body)
    values ('enrichment', jsonb_set(p_job, '{event_id}', to_jsonb(v_event)))
    returning message_id into v_job;

    update webhook_events
    set result = jsonb_build_object('lead_updated', v_lead is not null, 'outbox_message_id', v_job)
    where id = v_event;

    return jsonb_build_object('outcome', 'accepted', 'event_id', v_event,
                              'lead_updated', v_lead is not null, 'outbox_message_id', v_job);
end
$$;
