-- The board (GET /crm/deals) pages each column on (created_at, id), newest
-- first: keys that never change, whereas updated_at moves whenever a webhook
-- or an edit touches a deal, which made deals repeat or go missing between
-- pages. This index serves that order; the updated_at one served the old
-- order only, and dropping it lets touches of updated_at be HOT updates.
-- Forward-only: never edit once landed; add a new V<n>__*.sql instead.

create index deals_board_created_idx on deals (pipeline_id, stage_id, created_at desc, id desc);
drop index deals_board_idx;
