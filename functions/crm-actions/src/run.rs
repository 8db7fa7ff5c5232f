//! Runs a validated action through the shared write protocol
//! (`crm_domain::crm::run`: idempotency key, one transaction, own outbox
//! rows published after commit).

use crate::{Action, Deps};
use crm_domain::{
    IdempotencyKey, PayloadHash,
    auth::Principal,
    crm::{ApiError, contacts, deals, ownership, pipelines, routing, run},
};

pub use run::Outcome;

pub async fn execute(
    deps: &Deps,
    who: &Principal,
    key: Option<IdempotencyKey>,
    hash: &PayloadHash,
    action: Action,
) -> Result<Outcome, ApiError> {
    run::execute(
        &deps.pool,
        deps.publisher.as_deref(),
        who,
        key,
        hash,
        move |tx, who| {
            Box::pin(async move {
                match action {
                    Action::Contact(input) => contacts::upsert(tx, who, input).await,
                    Action::Deal(input) => deals::upsert(tx, who, input).await,
                    Action::MoveStage { deal_id, stage_id } => {
                        deals::move_stage(tx, who, deal_id, stage_id).await
                    }
                    Action::Pipeline(action) => pipelines::execute(tx, who, action).await,
                    Action::Assign {
                        contact_id,
                        owner_id,
                    } => ownership::assign(tx, who, contact_id, owner_id).await,
                    Action::Claim { contact_id } => ownership::claim(tx, who, contact_id).await,
                    Action::SetRouting { source, rule } => {
                        routing::set_rule(tx, who, source, rule).await
                    }
                }
            })
        },
    )
    .await
}
