//! The one rule that links a Contact2Sale lead to a CRM contact (issue 12 §2).
//!
//! A lead is linked to the contact whose e-mail equals the lead's (both are
//! stored trimmed and lower-cased), else to the contact the first of the
//! lead's phones names (`customer_phone`, `phone2`, `phone_global`: the
//! numbers the contact hash covers), matched exactly as the Twilio webhook
//! matches a sender — `PhoneE164::parse_sender` then
//! `twilio::store::find_contact` (exact E.164, its other spellings, then the
//! last 10 digits when they name exactly one contact). Those two functions
//! are called, not copied, so a change to the Twilio rules applies here too.
//! Lead phones are read in Brazil (`+55`) when they carry no country code:
//! C2S is a Brazilian CRM and the enrichment worker reads them the same way.
//!
//! The link is computed when it is read, never stored: a contact created
//! after the lead arrived links too, and a corrected rule applies to old leads.

use crate::{
    db::GenericClient,
    phone::{PhoneE164, PhoneRegion},
    twilio::store::find_contact,
};
use anyhow::Context;
use serde::Serialize;
use uuid::Uuid;

/// Which datum linked the lead to the contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum LinkedBy {
    Email,
    Phone,
}

/// The contact data of a lead the rule reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LeadContactData<'a> {
    pub email: Option<&'a str>,
    /// `customer_phone`, `customer_phone2`, `customer_phone_global`, in that order.
    pub phones: [Option<&'a str>; 3],
}

/// The region a lead phone without `+<country code>` is read in.
pub fn lead_phone_region() -> PhoneRegion {
    PhoneRegion::parse("BR").expect("BR is a region")
}

/// The lead's phones as E.164, in rule order; unreadable ones are skipped.
pub fn lead_phones(lead: &LeadContactData<'_>) -> Vec<PhoneE164> {
    let region = lead_phone_region();
    lead.phones
        .iter()
        .flatten()
        .filter_map(|raw| PhoneE164::parse_sender(raw, region).ok())
        .collect()
}

/// The contact a lead is linked to, and by what: the rule above.
pub async fn contact_for_lead(
    db: &impl GenericClient,
    lead: &LeadContactData<'_>,
) -> anyhow::Result<Option<(Uuid, LinkedBy)>> {
    if let Some(email) = lead
        .email
        .map(|e| e.trim().to_lowercase())
        .filter(|e| !e.is_empty())
    {
        let stmt = db
            .prepare_cached("select id from contacts where email = $1")
            .await
            .context("preparing the contact lookup by e-mail")?;
        if let Some(row) = db
            .query_opt(&stmt, &[&email])
            .await
            .context("looking up the lead's contact by e-mail")?
        {
            return Ok(Some((row.get(0), LinkedBy::Email)));
        }
    }
    for phone in lead_phones(lead) {
        if let Some(id) = find_contact(db, &phone).await? {
            return Ok(Some((id, LinkedBy::Phone)));
        }
    }
    Ok(None)
}

/// How many candidate leads the reverse lookup checks (newest first).
pub const CONTACT_LEADS_LIMIT: i64 = 50;

/// The leads linked to a contact (newest first, at most
/// [`CONTACT_LEADS_LIMIT`] candidates): leads sharing the contact's e-mail
/// or the last 8 digits of its phone — a superset of what the rule can
/// match, since every spelling the Twilio matching tries (the number, its
/// Brazilian 9th-digit twin, its last 10 digits) ends in the same 8 — each
/// then checked with [`contact_for_lead`], so the forward rule alone decides.
pub async fn leads_for_contact(
    db: &impl GenericClient,
    contact_id: Uuid,
    email: Option<&str>,
    phone: Option<&str>,
) -> anyhow::Result<Vec<(String, LinkedBy)>> {
    let last8: Option<String> = phone.map(|p| {
        let digits: String = p.chars().filter(char::is_ascii_digit).collect();
        digits[digits.len().saturating_sub(8)..].to_string()
    });
    if email.is_none() && last8.is_none() {
        return Ok(Vec::new());
    }
    let stmt = db
        .prepare_cached(
            "select id, customer_email, customer_phone, customer_phone2, customer_phone_global \
             from c2s_leads l \
             where ($1::text is not null and l.customer_email = $1) \
                or ($2::text is not null and $2 in ( \
                      right(regexp_replace(coalesce(l.customer_phone, ''), '[^0-9]', '', 'g'), 8), \
                      right(regexp_replace(coalesce(l.customer_phone2, ''), '[^0-9]', '', 'g'), 8), \
                      right(regexp_replace(coalesce(l.customer_phone_global, ''), '[^0-9]', '', 'g'), 8))) \
             order by l.created_at desc, l.id desc limit $3",
        )
        .await
        .context("preparing the contact's lead candidates")?;
    let rows = db
        .query(&stmt, &[&email, &last8, &CONTACT_LEADS_LIMIT])
        .await
        .context("reading the contact's lead candidates")?;
    let mut out = Vec::new();
    for row in &rows {
        let lead = LeadContactData {
            email: row.get(1),
            phones: [row.get(2), row.get(3), row.get(4)],
        };
        if let Some((id, by)) = contact_for_lead(db, &lead).await?
            && id == contact_id
        {
            out.push((row.get(0), by));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lead_phones_are_read_in_brazil_in_rule_order() {
        let lead = LeadContactData {
            email: None,
            phones: [
                Some("(11) 98765-4321"),
                Some("not a phone"),
                Some("+90 532 123 45 67"),
            ],
        };
        let got: Vec<String> = lead_phones(&lead).iter().map(|p| p.to_string()).collect();
        assert_eq!(got, ["+5511987654321", "+905321234567"]);
    }
}
