//! Benchmark (prints, asserts nothing): what the "deal never more visible
//! than its contact" check adds to a member's board read. Seeds a few
//! thousand deals, then times the board's two statements (the per-stage
//! counts and the first page of every column) as they were before the
//! check and as they are now, interleaved, in one run.
//!
//! `cargo test -p crm-read --release --test bench_board_access -- --ignored --nocapture`

use crm_testkit::TestDb;
use std::time::{Duration, Instant};

const DEALS: i64 = 5000;
const ROUNDS: usize = 300;

const COUNTS_BEFORE: &str = "select d.stage_id, count(*) from deals d where d.pipeline_id = $1 \
     and ($2::text is null or d.owner_id = $2 or d.owner_id is null) group by d.stage_id";
const COUNTS_AFTER: &str = "select d.stage_id, count(*) from deals d join contacts c on c.id = d.contact_id \
     where d.pipeline_id = $1 and ($2::text is null or ((d.owner_id = $2 or d.owner_id is null) \
     and (c.owner_id = $2 or c.owner_id is null))) group by d.stage_id";
const PAGE_BEFORE: &str = "select d.id, c.full_name, c.email, c.company from pipeline_stages s \
     cross join lateral ( \
       select * from deals d where d.pipeline_id = $1 and d.stage_id = s.id \
         and ($2::text is null or d.owner_id = $2 or d.owner_id is null) \
       order by d.created_at desc, d.id desc limit $3) d \
     join contacts c on c.id = d.contact_id \
     where s.pipeline_id = $1 order by s.position, d.created_at desc, d.id desc";
const PAGE_AFTER: &str = "select d.id, c.full_name, c.email, c.company from pipeline_stages s \
     cross join lateral ( \
       select d.* from deals d join contacts vc on vc.id = d.contact_id \
       where d.pipeline_id = $1 and d.stage_id = s.id \
         and ($2::text is null or ((d.owner_id = $2 or d.owner_id is null) \
           and (vc.owner_id = $2 or vc.owner_id is null))) \
       order by d.created_at desc, d.id desc limit $3) d \
     join contacts c on c.id = d.contact_id \
     where s.pipeline_id = $1 order by s.position, d.created_at desc, d.id desc";

fn summary(name: &str, mut t: Vec<Duration>) {
    t.sort();
    let us = |d: Duration| d.as_secs_f64() * 1e6;
    let mean = t.iter().map(|d| us(*d)).sum::<f64>() / t.len() as f64;
    println!(
        "{name:<34} mean {mean:>8.0} µs  p50 {:>8.0} µs  p99 {:>8.0} µs",
        us(t[t.len() / 2]),
        us(t[t.len() * 99 / 100])
    );
}

#[tokio::test]
#[ignore = "benchmark: run with --ignored --nocapture"]
async fn board_access_check_cost() {
    let db = TestDb::new().await;
    let pg = db.client().await;
    // 10 owners (member-0 is the reader), 20% of contacts unowned; deals
    // spread over the default pipeline's open stages; one deal in ten owned
    // by someone other than its contact's owner.
    pg.batch_execute(&format!(
        "insert into contacts (full_name, email, company, owner_id) \
         select 'Person ' || g, 'p' || g || '@example.com', 'Co ' || (g % 97), \
                case when g % 5 = 0 then null else 'member-' || (g % 10) end \
         from generate_series(1, {DEALS}) g;
         insert into deals (contact_id, pipeline_id, stage_id, owner_id, title, created_at) \
         select c.id, s.pipeline_id, s.id, \
                case when row_number() over () % 10 = 0 then 'member-0' else c.owner_id end, \
                'Deal', now() - make_interval(secs => row_number() over ()) \
         from contacts c join lateral ( \
           select s.* from pipeline_stages s join pipelines p on p.id = s.pipeline_id \
           where p.is_default and s.kind = 'open' \
           order by s.position offset (abs(hashtext(c.id::text)) % 4) limit 1) s on true;
         analyze contacts; analyze deals;"
    ))
    .await
    .unwrap();
    let pipeline: uuid::Uuid = pg
        .query_one("select id from pipelines where is_default", &[])
        .await
        .unwrap()
        .get(0);
    let member = Some("member-0".to_string());
    let limit: i64 = 51;
    let statements = [
        ("counts, before", COUNTS_BEFORE),
        ("counts, after", COUNTS_AFTER),
        ("first page of every column, before", PAGE_BEFORE),
        ("first page of every column, after", PAGE_AFTER),
    ];
    let mut prepared = Vec::new();
    for (_, sql) in statements {
        prepared.push(pg.prepare(sql).await.unwrap());
    }
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); statements.len()];
    let mut board_before = Vec::new();
    let mut board_after = Vec::new();
    for round in 0..ROUNDS + 20 {
        let mut per_board = [Duration::ZERO; 2];
        for (i, stmt) in prepared.iter().enumerate() {
            let start = Instant::now();
            let rows = if i < 2 {
                pg.query(stmt, &[&pipeline, &member]).await.unwrap()
            } else {
                pg.query(stmt, &[&pipeline, &member, &limit]).await.unwrap()
            };
            let took = start.elapsed();
            assert!(!rows.is_empty());
            if round >= 20 {
                times[i].push(took);
                per_board[i % 2] += took;
            }
        }
        if round >= 20 {
            board_before.push(per_board[0]);
            board_after.push(per_board[1]);
        }
    }
    println!("\nboard read as a member, {DEALS} deals, {ROUNDS} rounds (after 20 warm-up):");
    for ((name, _), t) in statements.iter().zip(times) {
        summary(name, t);
    }
    summary("board statements, before", board_before);
    summary("board statements, after", board_after);
}
