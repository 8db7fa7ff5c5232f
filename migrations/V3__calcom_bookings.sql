-- Cal.com bookings as the CRM saw them. Cal.com gives a rescheduled booking a
-- new uid (the old one arrives as rescheduleUid): both rows point at the same
-- meeting activity, so a reschedule updates one meeting instead of adding one.

create table calcom_bookings (
    id                    uuid primary key default gen_random_uuid(),
    -- Cal.com's booking uid: the identity every trigger carries.
    uid                   text not null check (length(uid) between 1 and 255),
    -- Cal.com's numeric booking id (bookingId), for support look-ups.
    calcom_booking_id     bigint,
    -- The primary attendee: the contact whose deal the booking moves.
    contact_id            uuid not null references contacts (id) on delete cascade,
    -- Every attendee's contact, primary first.
    attendee_contact_ids  uuid[] not null default '{}',
    deal_id               uuid references deals (id) on delete set null,
    meeting_activity_id   uuid references activities (id) on delete set null,
    -- The deal's stage before the booking took it to Meeting Scheduled; a cancellation moves it back there.
    stage_before_id       uuid references pipeline_stages (id) on delete set null,
    -- scheduled: the meeting stands; rescheduled: replaced by rescheduled_to_uid; cancelled: called off.
    status                text not null check (status in ('scheduled', 'rescheduled', 'cancelled')),
    title                 text,
    start_time            timestamptz not null,
    end_time              timestamptz not null,
    -- Links between the uids of one meeting; not foreign keys, since the original may predate this CRM.
    rescheduled_from_uid  text,
    rescheduled_to_uid    text,
    cancellation_reason   text,
    cancelled_at          timestamptz,
    -- The webhook event that last changed the row.
    last_event_id         uuid references webhook_events (id) on delete set null,
    created_at            timestamptz not null default now(),
    updated_at            timestamptz not null default now(),
    -- One row per Cal.com booking: replays and out-of-order triggers update it, never duplicate it.
    constraint calcom_bookings_uid_unique unique (uid),
    -- A meeting cannot end before it starts.
    constraint calcom_bookings_time_order check (end_time >= start_time),
    -- A cancelled booking says when.
    constraint calcom_bookings_cancelled_at check (status <> 'cancelled' or cancelled_at is not null)
);
create index calcom_bookings_meeting_idx on calcom_bookings (meeting_activity_id);
-- "Does this deal still have a meeting booked?" (asked before a cancellation moves the deal back).
create index calcom_bookings_deal_scheduled_idx on calcom_bookings (deal_id) where status = 'scheduled';
create index calcom_bookings_contact_idx on calcom_bookings (contact_id);
