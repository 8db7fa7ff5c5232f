-- The durable feed the UI polls (GET /api/messages/events?after=…): one row
-- per new inbound message and per message status change, written by
-- triggers in the same transaction as the change, whoever makes it (the
-- Twilio webhook, the send worker, the messaging API).
--
-- Readers page on (txid, id) and only return rows whose transaction is
-- older than every transaction still running (pg_snapshot_xmin): a row
-- committed later always sorts after the cursor, so polling never skips an
-- event because a slow transaction committed a lower id after a faster one.
create table message_feed (
    id          bigint generated always as identity primary key,
    txid        bigint not null default (pg_current_xact_id()::text::bigint),
    kind        text not null check (kind in ('message_in', 'status')),
    message_id  uuid not null references messages (id) on delete cascade,
    contact_id  uuid not null references contacts (id) on delete cascade,
    -- The status a 'status' event moved the message to; null for 'message_in'.
    status      text,
    at          timestamptz not null default now(),
    constraint message_feed_status_kind check ((kind = 'status') = (status is not null))
);
create index message_feed_cursor_idx on message_feed (txid, id);

create function message_feed_on_insert() returns trigger language plpgsql as $$
begin
    if new.direction = 'in' then
        insert into message_feed (kind, message_id, contact_id) values ('message_in', new.id, new.contact_id);
    else
        insert into message_feed (kind, message_id, contact_id, status) values ('status', new.id, new.contact_id, new.status);
    end if;
    return null;
end $$;

create function message_feed_on_status() returns trigger language plpgsql as $$
begin
    insert into message_feed (kind, message_id, contact_id, status) values ('status', new.id, new.contact_id, new.status);
    return null;
end $$;

create trigger message_feed_insert after insert on messages
    for each row execute function message_feed_on_insert();
create trigger message_feed_status after update of status on messages
    for each row when (old.status is distinct from new.status) execute function message_feed_on_status();

-- Messages stored before the feed existed: their arrival, oldest first.
insert into message_feed (kind, message_id, contact_id, at)
select 'message_in', m.id, m.contact_id, m.created_at
from messages m where m.direction = 'in'
order by m.created_at, m.id;
