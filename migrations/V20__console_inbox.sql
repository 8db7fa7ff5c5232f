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
