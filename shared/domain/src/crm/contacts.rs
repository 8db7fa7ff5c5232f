//! POST /crm/actions/contacts: create a contact, or update one when `id` is
//! given. Absent fields stay as they are; `null` clears a field.

use super::{
    Done, checked_owner,
    error::ApiError,
    input::{Fields, Patch},
    log_system, ownership, records,
};
use crate::{
    auth::Principal,
    db::GenericClient,
    phone::{PhoneE164, PhoneRegion},
    types::EmailAddress,
};
use serde_json::json;
use uuid::Uuid;

const FIELDS: &[&str] = &[
    "id",
    "email",
    "phone",
    "full_name",
    "company",
    "website",
    "owner_id",
];

/// A contact write, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactInput {
    pub id: Option<Uuid>,
    pub email: Patch<EmailAddress>,
    pub phone: Patch<PhoneE164>,
    pub full_name: Patch<String>,
    pub company: Patch<String>,
    pub website: Patch<String>,
    pub owner_id: Patch<String>,
}

impl ContactInput {
    pub fn parse(
        body: serde_json::Map<String, serde_json::Value>,
        region: PhoneRegion,
    ) -> Result<Self, ApiError> {
        let f = Fields::new(body, FIELDS)?;
        let id = match f.uuid("id")? {
            Patch::Set(id) => Some(id),
            _ => None,
        };
        let email = f
            .text("email", 254)?
            .try_map(|raw| EmailAddress::parse(&raw))
            .map_err(|r| ApiError::validation("email", r))?;
        let phone = f
            .text("phone", 40)?
            .try_map(|raw| PhoneE164::parse(&raw, region))
            .map_err(|r| ApiError::validation("phone", r))?;
        let website = f.text("website", 2048)?;
        if let Patch::Set(w) = &website
            && (w.chars().any(char::is_whitespace) || !w.contains('.'))
        {
            return Err(ApiError::validation("website", "is not a web address"));
        }
        let input = Self {
            id,
            email,
            phone,
            full_name: f.text("full_name", 200)?,
            company: f.text("company", 200)?,
            website,
            owner_id: f.text("owner_id", 200)?,
        };
        if input.id.is_none()
            && ![
                matches!(input.email, Patch::Set(_)),
                matches!(input.phone, Patch::Set(_)),
                matches!(input.full_name, Patch::Set(_)),
            ]
            .contains(&true)
        {
            return Err(ApiError::validation(
                "email",
                "is required unless phone or full_name is given",
            ));
        }
        Ok(input)
    }
}

pub async fn upsert(
    db: &impl GenericClient,
    who: &Principal,
    input: ContactInput,
) -> Result<Done, ApiError> {
    match input.id {
        None => create(db, who, input).await,
        Some(id) => update(db, who, id, input).await,
    }
}

async fn create(
    db: &impl GenericClient,
    who: &Principal,
    input: ContactInput,
) -> Result<Done, ApiError> {
    let owner = checked_owner(db, who, input.owner_id.clone()).await?;
    let stmt = db
        .prepare_cached(&format!(
            "insert into contacts as c (email, phone, full_name, company, website, owner_id, source) \
             values ($1, $2, $3, $4, $5, $6, 'api') returning {}",
            records::CONTACT_COLUMNS
        ))
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the contact insert"))?;
    let email = input.email.given().flatten();
    let phone = input.phone.given().flatten();
    let row = db
        .query_one(
            &stmt,
            &[
                &email.as_ref().map(EmailAddress::as_str),
                &phone.as_ref().map(PhoneE164::as_str),
                &input.full_name.given().flatten(),
                &input.company.given().flatten(),
                &input.website.given().flatten(),
                &owner,
            ],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "inserting a contact"))?;
    let contact_id: Uuid = row.get(0);
    log_system(
        db,
        contact_id,
        None,
        "Contact created",
        json!({"event": "contact_created"}),
        &who.actor(),
    )
    .await?;
    Ok(Done::new(201, records::contact(&row)))
}

async fn update(
    db: &impl GenericClient,
    who: &Principal,
    id: Uuid,
    input: ContactInput,
) -> Result<Done, ApiError> {
    let lock = db
        .prepare_cached(
            "select email, phone, full_name, company, website, owner_id from contacts \
             where id = $1 for update",
        )
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the contact lock"))?;
    let current = db
        .query_opt(&lock, &[&id])
        .await
        .map_err(|e| ApiError::from_db(e, "locking the contact"))?
        .filter(|row| who.may_change(row.get::<_, Option<&str>>(5)))
        .ok_or(ApiError::NotFound("contact"))?;

    let owner = match &input.owner_id {
        Patch::Absent => None,
        other => Some(checked_owner(db, who, other.clone()).await?),
    };
    // In the order of the columns read above and of the update's parameters.
    let given = [
        (
            "email",
            input
                .email
                .given()
                .map(|v| v.map(|e| e.as_str().to_string())),
        ),
        (
            "phone",
            input
                .phone
                .given()
                .map(|v| v.map(|p| p.as_str().to_string())),
        ),
        ("full_name", input.full_name.given()),
        ("company", input.company.given()),
        ("website", input.website.given()),
        ("owner_id", owner),
    ];
    let mut changed: Vec<&str> = Vec::new();
    let mut values: Vec<(bool, Option<String>)> = Vec::with_capacity(given.len());
    for (idx, (name, value)) in given.into_iter().enumerate() {
        match value {
            Some(v) if v != current.get::<_, Option<String>>(idx) => {
                changed.push(name);
                values.push((true, v));
            }
            _ => values.push((false, None)),
        }
    }
    if changed.is_empty() {
        // Nothing to write: no update, no activity, the record as it is.
        let select = db
            .prepare_cached(&format!(
                "select {} from contacts c where c.id = $1",
                records::CONTACT_COLUMNS
            ))
            .await
            .map_err(|e| ApiError::from_db(e, "preparing the contact read"))?;
        let row = db
            .query_one(&select, &[&id])
            .await
            .map_err(|e| ApiError::from_db(e, "reading the contact"))?;
        return Ok(Done::new(200, records::contact(&row)));
    }
    let stmt = db
        .prepare_cached(&format!(
            "update contacts c set \
               email = case when $2 then $3 else email end, \
               phone = case when $4 then $5 else phone end, \
               full_name = case when $6 then $7 else full_name end, \
               company = case when $8 then $9 else company end, \
               website = case when $10 then $11 else website end, \
               owner_id = case when $12 then $13 else owner_id end, \
               updated_at = now() \
             where c.id = $1 returning {}",
            records::CONTACT_COLUMNS
        ))
        .await
        .map_err(|e| ApiError::from_db(e, "preparing the contact update"))?;
    let v = &values;
    let row = db
        .query_one(
            &stmt,
            &[
                &id, &v[0].0, &v[0].1, &v[1].0, &v[1].1, &v[2].0, &v[2].1, &v[3].0, &v[3].1,
                &v[4].0, &v[4].1, &v[5].0, &v[5].1,
            ],
        )
        .await
        .map_err(|e| ApiError::from_db(e, "updating a contact"))?;
    let mut enqueued = Vec::new();
    if changed.contains(&"owner_id") {
        // The open deals follow, with the timeline entry and event of an assignment.
        let from: Option<String> = current.get(5);
        let t = ownership::transfer(
            db,
            who,
            id,
            from,
            row.get::<_, Option<&str>>(9),
            ownership::Via::Assign,
        )
        .await?;
        enqueued.extend(t.message_id);
    }
    log_system(
        db,
        id,
        None,
        &format!("Contact updated: {}", changed.join(", ")),
        json!({"event": "contact_updated", "fields": changed}),
        &who.actor(),
    )
    .await?;
    Ok(Done {
        status: 200,
        body: records::contact(&row),
        enqueued,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn parse(v: Value) -> Result<ContactInput, ApiError> {
        ContactInput::parse(v.as_object().unwrap().clone(), PhoneRegion::default())
    }

    #[test]
    fn contact_fields_are_normalised() {
        let c = parse(
            json!({"email": " Ana@Example.COM ", "phone": "0532 123 45 67", "full_name": " Ana "}),
        )
        .unwrap();
        assert_eq!(
            c.email,
            Patch::Set(EmailAddress::parse("ana@example.com").unwrap())
        );
        assert_eq!(c.phone.given().flatten().unwrap().as_str(), "+905321234567");
        assert_eq!(c.full_name, Patch::Set("Ana".into()));
        assert_eq!(c.id, None);
    }

    #[test]
    fn invalid_fields_are_named() {
        for (body, field) in [
            (json!({"email": "nope"}), "email"),
            (json!({"phone": "+90 123"}), "phone"),
            (json!({"full_name": 5}), "full_name"),
            (
                json!({"full_name": "x", "website": "not a site"}),
                "website",
            ),
            (json!({"id": "42", "full_name": "x"}), "id"),
            (json!({"company": "Acme"}), "email"),
            (json!({"full_name": "x", "nickname": "y"}), "nickname"),
        ] {
            let e = parse(body.clone()).unwrap_err();
            assert_eq!(e.body()["field"], field, "{body}");
            assert_eq!(e.status(), 422);
        }
    }

    #[test]
    fn an_update_needs_only_its_id() {
        let id = Uuid::now_v7();
        let c = parse(json!({"id": id, "phone": null})).unwrap();
        assert_eq!(c.id, Some(id));
        assert_eq!(c.phone, Patch::Null);
        assert!(c.email.is_absent());
    }
}
