//! A campaign's audience: its segment evaluated now, each contact `queued`
//! or `skipped` with a reason. One SQL text ([`audience_sql`]) serves both
//! the snapshot (one set-based `insert … select … on conflict do nothing`
//! into the ledger) and the dry run (the same select, counted), so a dry run
//! answers exactly the set a snapshot at the same moment would write.
//!
//! Skip reasons, first match wins:
//! - `opted_out`: an `opt_outs` row for the campaign's channel;
//! - `no_address`: e-mail channel without an e-mail, SMS/WhatsApp without a phone;
//! - `window_closed`: WhatsApp free-form template (no `content_sid`) and no
//!   inbound WhatsApp message in the last 24 hours;
//! - `invalid_template`: the template cannot be rendered for this contact (a
//!   variable's value is blank), or not at all (not approved, another
//!   channel, an unknown variable).

use super::{
    delivery,
    segment::{SegmentFilter, Sql},
    template::{self, UNSUBSCRIBE_URL},
};
use crate::db::GenericClient;
use anyhow::Context;
use serde::Serialize;
use serde_json::Value;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// What a snapshot wrote. `queued` and `skipped` count the rows this call
/// inserted (a second call inserts nothing and reports zeros).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotSummary {
    pub inserted: u64,
    pub queued: u64,
    pub skipped: BTreeMap<String, u64>,
}

/// What a send would do now, without writing anything.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DryRun {
    /// Contacts in the segment (queued + skipped).
    pub recipients: u64,
    /// Contacts that would be sent a message.
    pub queued: u64,
    /// Contacts that would be skipped, by reason.
    pub skipped: BTreeMap<String, u64>,
    /// Up to three rendered messages, for the first sendable contacts by id.
    pub samples: Vec<Sample>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sample {
    pub contact_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    pub body: String,
    /// Why this contact's message could not be rendered (variable names only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// Placeholder text for the unsubscribe link in dry-run samples (each real
/// message gets its own signed link).
pub const SAMPLE_UNSUBSCRIBE_URL: &str = "<unsubscribe link>";

/// The campaign, segment and template a snapshot needs.
#[derive(Debug, Clone)]
pub struct Plan {
    pub campaign_id: Uuid,
    pub channel: String,
    pub filter: SegmentFilter,
    pub body: String,
    pub subject: Option<String>,
    pub variables: Vec<String>,
    pub content_sid: Option<String>,
    pub template_channel: String,
    pub template_status: String,
}

impl Plan {
    /// The value names the template needs, or `None` when it cannot be used at all.
    fn usable_names(&self) -> Option<Vec<String>> {
        if self.template_status != "approved" || self.template_channel != self.channel {
            return None;
        }
        let mut texts = vec![self.body.as_str()];
        if let Some(s) = &self.subject {
            texts.push(s);
        }
        template::required_names(&texts, &self.variables).ok()
    }
}

pub async fn load_plan(db: &impl GenericClient, campaign_id: Uuid) -> anyhow::Result<Plan> {
    let stmt = db
        .prepare_cached(
            "select k.channel, s.filter, t.body, t.subject, t.variables, t.content_sid, t.channel, t.status \
             from campaigns k join segments s on s.id = k.segment_id \
             join message_templates t on t.id = k.template_id where k.id = $1",
        )
        .await
        .context("preparing the campaign plan read")?;
    let row = db
        .query_opt(&stmt, &[&campaign_id])
        .await
        .context("reading the campaign plan")?
        .with_context(|| format!("campaign {campaign_id} not found"))?;
    let variables = match row.get::<_, Value>(4) {
        Value::Array(items) => items
            .into_iter()
            .map(|v| v.as_str().map(str::to_owned).unwrap_or_default())
            .collect(),
        _ => Vec::new(),
    };
    Ok(Plan {
        campaign_id,
        channel: row.get(0),
        filter: SegmentFilter::from_stored(&row.get::<_, Value>(1))?,
        body: row.get(2),
        subject: row.get(3),
        variables,
        content_sid: row.get(5),
        template_channel: row.get(6),
        template_status: row.get(7),
    })
}

/// The SQL expression of a value name over contacts `c` (blank → null), or
/// `None` for names the sender supplies.
fn value_expr(q: &mut Sql, name: &str) -> Option<String> {
    let col = |c: &str| format!("nullif(btrim(c.{c}), '')");
    Some(match name {
        "contact.first_name" => col("first_name"),
        "contact.last_name" => col("last_name"),
        "contact.company" => col("company"),
        "contact.email" => col("email"),
        "contact.phone" => col("phone"),
        "contact.full_name" => format!(
            "coalesce({}, nullif(btrim(concat_ws(' ', c.first_name, c.last_name)), ''))",
            col("full_name")
        ),
        UNSUBSCRIBE_URL => return None,
        other => {
            let key = template::attribute_key(other)?;
            let n = q.bind(key.to_string());
            format!(
                "(case when jsonb_typeof(c.attributes -> {n}::text) in ('string', 'number') \
                 then nullif(btrim(c.attributes ->> {n}::text), '') end)"
            )
        }
    })
}

/// `select c.id as contact_id, <skip reason or null> as reason from contacts c where <segment>`.
pub fn audience_sql(plan: &Plan) -> Sql {
    let mut q = Sql::new("");
    let channel = q.bind(plan.channel.clone());
    // Opt-outs and the WhatsApp window are hash joins (opt_outs is unique
    // per contact and channel; the window subquery is distinct), so the
    // statement costs one pass over contacts.
    let mut from = format!(
        "contacts c left join opt_outs o on o.contact_id = c.id and o.channel = {channel}::text"
    );
    let mut reason = "case when o.contact_id is not null then 'opted_out'".to_string();
    let no_address = match plan.channel.as_str() {
        "email" => Some("c.email is null"),
        "sms" | "whatsapp" => Some("c.phone is null"),
        _ => None,
    };
    if let Some(cond) = no_address {
        reason.push_str(&format!(" when {cond} then 'no_address'"));
    }
    if plan.channel == "whatsapp" && plan.content_sid.is_none() {
        from.push_str(
            " left join (select distinct m.contact_id from messages m where m.direction = 'in' \
             and m.channel = 'whatsapp' and m.created_at > now() - interval '24 hours') w on w.contact_id = c.id",
        );
        reason.push_str(" when w.contact_id is null then 'window_closed'");
    }
    match plan.usable_names() {
        None => reason.push_str(" else 'invalid_template'"),
        Some(names) => {
            let missing: Vec<String> = names
                .iter()
                .filter_map(|n| value_expr(&mut q, n))
                .map(|e| format!("{e} is null"))
                .collect();
            if !missing.is_empty() {
                reason.push_str(&format!(
                    " when {} then 'invalid_template'",
                    missing.join(" or ")
                ));
            }
        }
    }
    reason.push_str(" end");
    q.text = format!("select c.id as contact_id, {reason} as reason from {from} where true");
    plan.filter.push_where(&mut q);
    q
}

/// Writes the ledger rows of the campaign's audience (see the module docs)
/// and sets `campaigns.recipients` (all ledger rows) and `snapshot_at`
/// (first snapshot). Idempotent: rows that exist are left alone.
pub async fn snapshot(
    db: &impl GenericClient,
    campaign_id: Uuid,
) -> anyhow::Result<SnapshotSummary> {
    let plan = load_plan(db, campaign_id).await?;
    let q = snapshot_sql(&plan);
    let rows = db
        .query(q.text.as_str(), &q.params())
        .await
        .context("snapshotting the segment into the ledger")?;
    let mut summary = SnapshotSummary::default();
    for row in rows {
        let n = row.get::<_, i64>(1) as u64;
        summary.inserted += n;
        match row.get::<_, Option<String>>(0) {
            None => summary.queued += n,
            Some(reason) => {
                summary.skipped.insert(reason, n);
            }
        }
    }
    let stmt = db
        .prepare_cached(
            "update campaigns set recipients = (select count(*) from campaign_deliveries where campaign_id = $1), \
                 snapshot_at = coalesce(snapshot_at, now()), updated_at = now() where id = $1",
        )
        .await
        .context("preparing the recipients update")?;
    db.execute(&stmt, &[&campaign_id])
        .await
        .context("recording the snapshot on the campaign")?;
    Ok(summary)
}

/// The snapshot statement: the audience inserted into the ledger, answering
/// `(skip_reason, count)` of the rows it inserted. Row ids are UUIDv7-shaped
/// (the statement's millisecond, 48 random bits, then a counter), so the
/// 100k-row insert appends to the primary key and ledger indexes instead of
/// splitting random pages, and ledger pages by id follow contact order.
pub fn snapshot_sql(plan: &Plan) -> Sql {
    let mut q = audience_sql(plan);
    let cid = q.bind(plan.campaign_id);
    q.text = format!(
        "with aud as ({}), \
         k as (select lpad(to_hex((extract(epoch from clock_timestamp()) * 1000)::bigint), 12, '0') as ms, \
                      md5(random()::text || clock_timestamp()::text) as r), \
         ins as (insert into campaign_deliveries (id, campaign_id, contact_id, status, skip_reason) \
                 select (k.ms || '7' || substr(k.r, 1, 3) || '8' || substr(k.r, 4, 9) \
                         || lpad(to_hex(row_number() over (order by a.contact_id)), 6, '0'))::uuid, \
                        {cid}, a.contact_id, case when a.reason is null then 'queued' else 'skipped' end, a.reason \
                 from aud a cross join k on conflict (campaign_id, contact_id) do nothing returning skip_reason) \
         select skip_reason, count(*) from ins group by skip_reason",
        q.text
    );
    q
}

/// The counts a snapshot taken now would write, and three rendered samples.
pub async fn dry_run(db: &impl GenericClient, campaign_id: Uuid) -> anyhow::Result<DryRun> {
    dry_run_for(db, campaign_id, None).await
}

/// [`dry_run`] for a caller: the counts cover the whole audience, the
/// samples only contacts `owner_scope` may read (`Principal::owner_scope`:
/// `None` for admins, else own and unowned contacts).
pub async fn dry_run_for(
    db: &impl GenericClient,
    campaign_id: Uuid,
    owner_scope: Option<&str>,
) -> anyhow::Result<DryRun> {
    let plan = load_plan(db, campaign_id).await?;
    let q = audience_sql(&plan);
    let counted = format!(
        "select reason, count(*) from ({}) a group by reason",
        q.text
    );
    let rows = db
        .query(counted.as_str(), &q.params())
        .await
        .context("counting the audience")?;
    let mut out = DryRun::default();
    for row in rows {
        let n = row.get::<_, i64>(1) as u64;
        out.recipients += n;
        match row.get::<_, Option<String>>(0) {
            None => out.queued += n,
            Some(reason) => {
                out.skipped.insert(reason, n);
            }
        }
    }
    let mut q = q;
    let scope = q.bind(owner_scope.map(str::to_string));
    let first = format!(
        "select a.contact_id from ({}) a join contacts sc on sc.id = a.contact_id \
         where a.reason is null and ({scope}::text is null or sc.owner_id = {scope} or sc.owner_id is null) \
         order by a.contact_id limit 3",
        q.text
    );
    let ids: Vec<Uuid> = db
        .query(first.as_str(), &q.params())
        .await
        .context("reading the sample recipients")?
        .iter()
        .map(|r| r.get(0))
        .collect();
    for contact_id in ids {
        let mut values: HashMap<String, String> = template::contact_values(db, contact_id).await?;
        values.insert(UNSUBSCRIBE_URL.into(), SAMPLE_UNSUBSCRIBE_URL.into());
        // The send worker's own rendering (with its unsubscribe line), so a
        // sample is the message that contact would get. The audience SQL
        // already required every value; a render failure left (e.g. a text
        // too long once the link is added) is shown on the sample, by reason.
        let sample = match delivery::render_all(
            &plan.channel,
            &plan.body,
            plan.subject.clone(),
            plan.content_sid.is_some(),
            &plan.variables,
            &values,
            SAMPLE_UNSUBSCRIBE_URL,
        ) {
            Ok(r) => Sample {
                contact_id,
                subject: r.subject,
                body: r.text,
                error: None,
            },
            Err(why) => Sample {
                contact_id,
                subject: None,
                body: String::new(),
                error: Some(why),
            },
        };
        out.samples.push(sample);
    }
    Ok(out)
}
