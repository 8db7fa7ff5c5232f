-- The console's inbox (issue 11 §3). One source of truth for "unread":
-- inbound messages with is_read = false. The `notifications` table the
-- Twilio webhook filled (V8) was never read by anything; it is dropped, and
-- the webhook no longer writes it. New-message alerts come from the durable
-- feed (message_feed, V11, GET /api/messages/events); docs/inbox.md.
-- Forward-only: never edit once landed; add a new V<n>__*.sql instead.

drop table notifications;

-- Unread counts per contact (GET /api/conversations): only the unread
-- inbound rows are indexed, so the index stays as small as the backlog.
create index messages_unread_idx on messages (contact_id, channel) where direction = 'in' and not is_read;

-- The inbox's order (GET /api/conversations): messages newest first with
-- the contact as tie-break, scanned from the cursor; a message counts when it
-- is its contact's newest (probed on messages_contact_idx). An index only:
-- no table kept by a trigger, so concurrent message inserts of one contact
-- never wait on each other.
create index messages_recent_idx on messages (created_at desc, contact_id desc);
