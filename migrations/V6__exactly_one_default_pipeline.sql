-- Exactly one default pipeline, not just at most one: the webhook flows put
-- new deals there. Checked at commit, so a transaction may switch the default
-- from one pipeline to another.
create function pipelines_exactly_one_default() returns trigger
language plpgsql as $$
begin
    if (select count(*) from pipelines where is_default) <> 1 then
        raise exception 'exactly one pipeline must be the default'
            using errcode = 'check_violation', constraint = 'pipelines_exactly_one_default';
    end if;
    return null;
end
$$;

create constraint trigger pipelines_exactly_one_default
    after insert or update of is_default or delete on pipelines
    deferrable initially deferred
    for each row execute function pipelines_exactly_one_default();
