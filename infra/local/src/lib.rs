//! The local runner as a library, so tests can check its route table (and
//! the OpenAPI document against it) without starting a server.

pub mod media;
pub mod routes;
