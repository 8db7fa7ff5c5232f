//! `on_close_lead`: the close is recorded, and every manager of the lead's
//! seller (matched by C2S seller id or seller e-mail) gets a notification per
//! channel (e-mail, webhook), each delivered by the send worker through a
//! `notify_manager` job in the outbox — all in one transaction.

use crate::{Deps, Step};
use crm_domain::{
    enrichment::{
        managers,
        store::{self, Finish, Lead},
    },
    jobs::{self, EnrichLead, Job, NotifyManager},
};
use uuid::Uuid;

/// The notification's text, in Portuguese for the sales manager.
pub(crate) fn message(lead: &Lead) -> (String, String) {
    let name = lead.customer_name.as_deref().unwrap_or("(sem nome)");
    let subject = format!("Lead fechado: {name}");
    let mut body = format!(
        "O lead {} foi fechado no Contact2Sale.\n\nCliente: {name}\n",
        lead.id
    );
    let mut line = |label: &str, v: Option<&str>| {
        if let Some(v) = v.filter(|v| !v.trim().is_empty()) {
            body.push_str(&format!("{label}: {v}\n"));
        }
    };
    line("Vendedor", lead.seller_name.as_deref());
    line("Produto", lead.product_description.as_deref());
    line("Status", lead.status_name.as_deref());
    let closed = lead
        .closed_at
        .map(|t| t.format("%d/%m/%Y %H:%M UTC").to_string());
    line("Fechado em", closed.as_deref());
    (subject, body)
}

pub(crate) async fn close(
    job: &EnrichLead,
    lead: &Lead,
    run: Uuid,
    deps: &Deps,
) -> anyhow::Result<Step> {
    let (subject, body) = message(lead);
    let mut client = deps.pool.get().await?;
    let tx = client.transaction().await?;
    let managers =
        managers::managers_for_seller(&tx, lead.seller_id.as_deref(), lead.seller_email.as_deref())
            .await?;
    let mut queued = 0usize;
    for m in &managers {
        let channels = [
            ("email", m.email.is_some()),
            ("webhook", m.webhook_target_key.is_some()),
        ];
        for (channel, reachable) in channels {
            if !reachable {
                continue;
            }
            if let Some(id) = managers::create_notification(
                &tx,
                m.id,
                &lead.id,
                job.event_id,
                channel,
                &subject,
                &body,
            )
            .await?
            {
                jobs::enqueue(
                    &tx,
                    &Job::NotifyManager(NotifyManager {
                        v: 1,
                        notification_id: id,
                    }),
                )
                .await?;
                queued += 1;
            }
        }
    }
    let (status, reason) = if managers.is_empty() {
        (
            "partial",
            "lead closed; no manager matches the seller (by seller id or e-mail): nobody notified"
                .to_string(),
        )
    } else {
        (
            "completed",
            format!("lead closed; {queued} manager notification(s) queued"),
        )
    };
    store::finish(
        &tx,
        run,
        job.event_id,
        &Finish {
            status,
            identity: None,
            validation: None,
            reasons: std::slice::from_ref(&reason),
            error: (status == "partial").then_some(reason.as_str()),
        },
    )
    .await?;
    tx.commit().await?;
    tracing::info!(
        status,
        managers = managers.len(),
        queued,
        "lead close recorded"
    );
    Ok(Step::Finished)
}
