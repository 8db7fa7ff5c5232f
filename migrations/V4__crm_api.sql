-- The CRM API (JWT): Stripe-style idempotency keys for its POSTs, and the
-- indexes its reads need (contact search, a contact's deals).

create table api_idempotency_keys (
    -- Keys are scoped per user (the JWT `sub`): two users may use the same key.
    user_id          text not null check (length(user_id) between 1 and 200),
    idempotency_key  text not null check (length(idempotency_key) between 1 and 255),
    -- SHA-256 of method, path and canonical JSON body: a key reused for another request is refused.
    request_hash     text not null check (request_hash ~ '^[0-9a-f]{64}$'),
    status           text not null default 'in_flight' check (status in ('in_flight', 'completed')),
    -- The request holding an in-flight key; only it may complete or release it.
    lock_token       uuid not null,
    -- Only caller outcomes are kept (2xx-4xx); a server fault releases the key instead.
    response_status  integer check (response_status between 200 and 499),
    response_body    jsonb,
    created_at       timestamptz not null default now(),
    locked_at        timestamptz not null default now(),
    completed_at     timestamptz,
    -- A completed key holds the answer its replays get.
    constraint api_idempotency_completed_has_response
        check (status <> 'completed' or (response_status is not null and response_body is not null)),
    primary key (user_id, idempotency_key)
);
-- For purging keys past their 24-hour life.
create index api_idempotency_keys_created_idx on api_idempotency_keys (created_at);

-- Claims (user, key) for a request, in its own short transaction:
--   new       : this request owns the key (first use, an expired key, or one a crashed request abandoned)
--   replay    : completed before with the same request; response_* is the first answer
--   mismatch  : the key was used with a different request
--   in_flight : another request holds the key and is still working
-- A request at work holds the row lock (its transaction locks the row first),
-- so SKIP LOCKED tells "in flight" without waiting for it.
create function api_idempotency_claim(p_user text, p_key text, p_hash text, p_token uuid,
                                      out outcome text, out response_status integer, out response_body jsonb)
language plpgsql as $$
declare
    existing api_idempotency_keys%rowtype;
begin
    loop
        insert into api_idempotency_keys (user_id, idempotency_key, request_hash, lock_token)
        values (p_user, p_key, p_hash, p_token)
        on conflict (user_id, idempotency_key) do nothing;
        if found then
            outcome := 'new';
            return;
        end if;

        select * into existing from api_idempotency_keys
        where user_id = p_user and idempotency_key = p_key
        for update skip locked;
        if not found then
            perform 1 from api_idempotency_keys where user_id = p_user and idempotency_key = p_key;
            if found then
                outcome := 'in_flight';
                return;
            end if;
            continue;  -- released by a failed request just now: claim it afresh
        end if;

        if existing.created_at < now() - interval '24 hours' then
            -- Keys live 24 hours (as Stripe's do); after that the key starts over.
            update api_idempotency_keys
            set request_hash = p_hash, status = 'in_flight', lock_token = p_token, response_status = null,
                response_body = null, created_at = now(), locked_at = now(), completed_at = null
            where user_id = p_user and idempotency_key = p_key;
            outcome := 'new';
        elsif existing.request_hash <> p_hash then
            outcome := 'mismatch';
        elsif existing.status = 'completed' then
            outcome := 'replay';
            response_status := existing.response_status;
            response_body := existing.response_body;
        elsif existing.locked_at < now() - interval '60 seconds' then
            -- Its holder died without completing or releasing it (functions time out well before this).
            update api_idempotency_keys set lock_token = p_token, locked_at = now()
            where user_id = p_user and idempotency_key = p_key;
            outcome := 'new';
        else
            outcome := 'in_flight';
        end if;
        return;
    end loop;
end
$$;

-- Contact search (name, e-mail, phone, company; case-insensitive substring):
-- one trigram index over the text the API searches, so `ilike '%q%'` is indexed.
create extension if not exists pg_trgm;
create index contacts_search_trgm_idx on contacts using gin (
    (coalesce(full_name, '') || ' ' || coalesce(email, '') || ' ' || coalesce(phone, '') || ' ' || coalesce(company, ''))
    gin_trgm_ops
);

-- A contact's deals (open and closed), for its detail page; also serves the
-- foreign key when a contact is deleted.
create index deals_contact_idx on deals (contact_id, created_at desc);
