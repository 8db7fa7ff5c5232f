//! Runs a validated action through the shared write protocol
//! (`crm_domain::crm::run`: idempotency key, one transaction, own outbox
//! rows published after commit).

use crate::{Action, Deps};
use crm_domain::{
    IdempotencyKey, PayloadHash,
    auth::Principal,
    crm::{ApiError, contacts, deals, pipelines, run},
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
                }
            })
        },
    )
    .await
}
