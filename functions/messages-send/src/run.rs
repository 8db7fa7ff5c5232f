//! Runs a validated send through the shared write protocol
//! (`crm_domain::crm::run`: idempotency key, one transaction, the send job
//! published right after commit).

use crate::{Action, Deps};
use crm_domain::{
    IdempotencyKey, PayloadHash,
    auth::Principal,
    crm::{ApiError, run},
    messaging::{self, template},
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
                    Action::Text(input) => messaging::queue_text(tx, who, input).await,
                    Action::Template(input) => template::queue_template(tx, who, input).await,
                }
            })
        },
    )
    .await
}
