//! Campaigns: segments, templates, the per-recipient ledger and the
//! compliance controls (issue 6). See README "## Campaigns API".

pub mod api;
pub mod audience;
pub mod audit;
pub mod delivery;
pub mod runner;
pub mod segment;
pub mod switch;
pub mod template;
