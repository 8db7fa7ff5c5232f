//! Contact2Sale lead enrichment, the pure part and its SQL: contact data
//! validation (`validate`), CPF check digits (`cpf`), the Diretrix and Work
//! API answers (`sources`), who the contact data point at (`identity`), the
//! note the sales team reads (`note`), and the repositories the workers run
//! on (`store`; `managers` for lead-closed notifications). The worker crate
//! (`functions/enrichment-worker`) does the HTTP and the queue.

pub mod cpf;
pub mod identity;
pub mod managers;
pub mod note;
pub mod sources;
pub mod store;
pub mod validate;
