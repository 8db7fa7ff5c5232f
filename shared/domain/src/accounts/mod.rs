//! Team accounts: users, set-password links, sign-in sessions with rotating
//! refresh tokens, the sign-in throttle, and password hashing. Secrets are
//! stored only as hashes (Argon2id for passwords, SHA-256 for tokens) and
//! never logged or written to the audit log.

pub mod bootstrap;
pub mod links;
pub mod password;
pub mod secrets;
pub mod sessions;
pub mod throttle;
pub mod users;
