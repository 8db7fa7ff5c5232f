//! One truth per message: a campaign recipient's ledger row and its message
//! follow one state machine (the message's, `MessageStatus::may_become`)
//! in the callback's transaction. Every one of the 120 orders of `queued,
//! sent, delivered, read, failed` callbacks leaves a campaign message and
//! its ledger row agreeing (`failed`/`failed`), and a one-off message
//! `failed` with no ledger row touched.
//!
//! Before this change the ledger had its own rule (`delivered` was final),
//! so in the 80 orders where `delivered` or `read` came before `failed` the
//! message ended `failed` and its row stayed `delivered`.

mod campaign_support;

use campaign_support::*;
use crm_domain::twilio::{
    status::{self, MessageStatus},
    store,
};
use crm_testkit::TestDb;
use send_worker::Outcome;
use uuid::Uuid;
use wiremock::{Mock, MockServer, matchers::method};

const CALLBACKS: [MessageStatus; 5] = [
    MessageStatus::Queued,
    MessageStatus::Sent,
    MessageStatus::Delivered,
    MessageStatus::Read,
    MessageStatus::Failed,
];

fn permutations<T: Clone>(items: &[T]) -> Vec<Vec<T>> {
    if items.len() <= 1 {
        return vec![items.to_vec()];
    }
    let mut out = Vec::new();
    for i in 0..items.len() {
        let mut rest = items.to_vec();
        let first = rest.remove(i);
        for mut p in permutations(&rest) {
            p.insert(0, first.clone());
            out.push(p);
        }
    }
    out
}

/// Applies the callbacks as the twilio-webhook flow does: each in its own transaction.
async fn deliver(pool: &crm_platform::db::PgPool, sid: &str, order: &[MessageStatus]) {
    let mut client = pool.get().await.unwrap();
    for s in order {
        let tx = client.transaction().await.unwrap();
        let error = s
            .is_terminal()
            .then(|| (30003, status::error_message(30003)));
        store::apply_status(
            &tx,
            sid,
            Some(s.as_str()),
            &MessageStatus::predecessors(*s),
            error,
        )
        .await
        .unwrap();
        tx.commit().await.unwrap();
    }
}

async fn message_status(pg: &tokio_postgres::Client, id: Uuid) -> String {
    pg.query_one("select status from messages where id = $1", &[&id])
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn every_order_of_five_callbacks_leaves_the_message_and_its_ledger_row_agreeing() {
    let (db, twilio) = (TestDb::new().await, MockServer::start().await);
    let pg = db.client().await;
    let (camp, who) = (campaign(&pg, &template("sms")).await, contact(&pg).await);
    let delivery = released(&pg, camp, who).await;
    let sid = "SM2123456789abcdef0123456789abcdef";
    Mock::given(method("POST"))
        .respond_with(twilio_created(sid))
        .expect(1)
        .mount(&twilio)
        .await;
    let deps = deps(
        &db,
        Mocks {
            twilio: Some(&twilio),
            ..Default::default()
        },
    );
    assert_eq!(run(&deps, delivery, 1).await, Outcome::Done);
    let message = ledger(&pg, delivery).await.message_id.unwrap();
    // A one-off message to the same contact: no ledger row.
    let one_off_sid = "SM3123456789abcdef0123456789abcdef";
    let one_off: Uuid = pg
        .query_one(
            "insert into messages (direction, channel, contact_id, body, status, provider_sid) \
             values ('out', 'sms', $1, 'hello', 'queued', $2) returning id",
            &[&who, &one_off_sid],
        )
        .await
        .unwrap()
        .get(0);

    let orders = permutations(&CALLBACKS);
    assert_eq!(orders.len(), 120);
    let mut disagreements = Vec::new();
    for order in &orders {
        // Back to where the send left them: message queued with its SID, row sent.
        pg.batch_execute(&format!(
            "update messages set status = 'queued', error_code = null, error_message = null \
               where id in ('{message}', '{one_off}'); \
             update campaign_deliveries set status = 'sent', delivered_at = null, failed_at = null, \
               error_code = null, error = null where id = '{delivery}';"
        ))
        .await
        .unwrap();
        deliver(&deps.pool, sid, order).await;
        deliver(&deps.pool, one_off_sid, order).await;
        let (m, row) = (
            message_status(&pg, message).await,
            ledger(&pg, delivery).await,
        );
        let names: Vec<&str> = order.iter().map(|s| s.as_str()).collect();
        if (
            m.as_str(),
            row.status.as_str(),
            row.error_code.as_deref(),
            row.failed,
        ) != ("failed", "failed", Some("30003"), true)
        {
            disagreements.push(format!("{names:?}: message {m}, ledger {}", row.status));
        }
        assert_eq!(
            message_status(&pg, one_off).await,
            "failed",
            "one-off after {names:?}"
        );
    }
    assert!(
        disagreements.is_empty(),
        "{} of 120 orders disagree: {disagreements:#?}",
        disagreements.len()
    );
    // The campaign's counts read one truth.
    let counts: (i64, i64) = {
        let r = pg
            .query_one(
                "select count(*) filter (where status = 'delivered'), count(*) filter (where status = 'failed') \
                 from campaign_deliveries where campaign_id = $1",
                &[&camp],
            )
            .await
            .unwrap();
        (r.get(0), r.get(1))
    };
    assert_eq!(counts, (0, 1));
}
