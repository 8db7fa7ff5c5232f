-- Team accounts: users, one-time set-password links, sign-in sessions with
-- rotating refresh tokens, and the sign-in throttle. Secrets are stored only
-- as hashes (Argon2id PHC strings for passwords, SHA-256 hex for tokens).

create table users (
    id               uuid primary key default gen_random_uuid(),
    -- Lower-cased, trimmed; one account per mailbox.
    email            text not null check (email = lower(btrim(email)) and position('@' in email) > 1 and length(email) <= 254),
    name             text not null check (length(btrim(name)) between 1 and 120),
    role             text not null check (role in ('admin', 'member')),
    -- Capabilities carried into access tokens (e.g. can_use_crm, campaigns:send).
    caps             text[] not null default '{}',
    active           boolean not null default true,
    -- Argon2id PHC string; null until the user follows their set-password link.
    password_hash    text check (password_hash is null or password_hash like '$argon2id$%'),
    -- How the account was made: an admin's invitation, the bootstrap, or an external identity provider's first sign-in.
    origin           text not null default 'invited' check (origin in ('invited', 'bootstrap', 'development', 'external')),
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now(),
    last_sign_in_at  timestamptz,
    constraint users_email_unique unique (email)
);

-- One-time links that set a password. Only the newest unexpired, unused one works.
create table password_tokens (
    id           uuid primary key default gen_random_uuid(),
    user_id      uuid not null references users (id) on delete cascade,
    token_hash   text not null check (token_hash ~ '^[0-9a-f]{64}$'),
    expires_at   timestamptz not null,
    used_at      timestamptz,
    -- Set when a newer link was issued for the same user.
    superseded_at timestamptz,
    created_at   timestamptz not null default now(),
    constraint password_tokens_hash_unique unique (token_hash)
);
create index password_tokens_user_idx on password_tokens (user_id, created_at desc);

-- A sign-in session: the chain of refresh tokens issued since one login.
create table sessions (
    id            uuid primary key default gen_random_uuid(),
    user_id       uuid not null references users (id) on delete cascade,
    created_at    timestamptz not null default now(),
    last_used_at  timestamptz not null default now(),
    expires_at    timestamptz not null,
    revoked_at    timestamptz,
    revoked_reason text check (revoked_reason in ('logout', 'reuse_detected', 'signed_out_everywhere', 'deactivated', 'password_changed'))
);
create index sessions_user_idx on sessions (user_id) where revoked_at is null;

-- Every refresh token ever issued for a session. Using one marks it used and
-- issues its successor; presenting a used one again revokes the whole session.
create table refresh_tokens (
    token_hash   text primary key check (token_hash ~ '^[0-9a-f]{64}$'),
    session_id   uuid not null references sessions (id) on delete cascade,
    created_at   timestamptz not null default now(),
    used_at      timestamptz
);
create index refresh_tokens_session_idx on refresh_tokens (session_id);

-- Failed sign-ins per key (`account:<sha256 of e-mail>` or `address:<sha256 of source ip>`), in a sliding window.
create table sign_in_failures (
    key           text primary key check (length(key) between 1 and 200),
    failures      integer not null default 0 check (failures >= 0),
    window_start  timestamptz not null default now(),
    locked_until  timestamptz
);

-- Audit actions for accounts use the existing audit_log (`crm.user.created`, …).
