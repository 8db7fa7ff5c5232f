-- Pipelines and stages become editable through the CRM API (issue 12 §3),
-- and the Contact2Sale read API lists leads newest first (§2).

-- A stage can now be removed (once no deal is in it). Its history rows stay,
-- without the stage: the `system` activity of each move keeps both names.
alter table deal_stage_history alter column to_stage_id drop not null;
alter table deal_stage_history drop constraint deal_stage_history_from_stage_id_fkey;
alter table deal_stage_history add constraint deal_stage_history_from_stage_id_fkey
    foreign key (from_stage_id) references pipeline_stages (id) on delete set null;
alter table deal_stage_history drop constraint deal_stage_history_to_stage_id_fkey;
alter table deal_stage_history add constraint deal_stage_history_to_stage_id_fkey
    foreign key (to_stage_id) references pipeline_stages (id) on delete set null;

-- GET /api/v1/c2s/leads pages on (created_at, id), newest first.
create index c2s_leads_created_idx on c2s_leads (created_at desc, id desc);
-- The contact page finds a contact's leads by e-mail (crm_domain::c2s::link).
create index c2s_leads_email_idx on c2s_leads (customer_email) where customer_email is not null;
