//! `make bench-campaigns`: 100,000 contacts (one set-based insert) in a fresh
//! migrated database, a segment of all of them, a template and a campaign;
//! times `audience::snapshot`, then fans the campaign out at the configured
//! rate through the real path — the campaign worker's release loop, the
//! in-process send queue, the send worker's `process` with its local sink —
//! until the campaign is finished. Prints the snapshot time, messages/s at
//! rate R and the process's peak RSS (VmHWM). Figures, no assertions.
//!
//! BENCH_CONTACTS (100000), BENCH_RATE (1000 messages/s, the channels CHECK's
//! maximum), BENCH_CHANNEL (email | sms; default email), BENCH_BATCH_INTERVAL_MS (1000).

use campaign_worker::{RunOutcome, RunnerConfig};
use crm_domain::{
    campaigns::audience,
    outbox::{Publisher, QueueName},
};
use crm_platform::{
    config::{CommonConfig, DatabaseConfig, Env},
    db::build_pool,
    queue::InProcessQueue,
};
use crm_testkit::TestDb;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use uuid::Uuid;

fn var<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kb| kb.parse::<f64>().ok())
        })
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    // `cargo bench` passes --bench; `cargo test --all-targets` (make test)
    // runs bench binaries without it: build-checked there, not run.
    if !std::env::args().any(|a| a == "--bench") {
        println!("campaigns bench: run it with `make bench-campaigns`");
        return Ok(());
    }
    let contacts: i32 = var("BENCH_CONTACTS", 100_000);
    let rate: f64 = var("BENCH_RATE", 1000.0);
    let channel: String = var("BENCH_CHANNEL", "email".to_string());
    let interval: u64 = var("BENCH_BATCH_INTERVAL_MS", 1000);
    let db = TestDb::new().await;
    let c = db.client().await;

    let t = Instant::now();
    c.execute(
        "insert into contacts (email, phone, first_name, last_name, company) \
         select 'bench' || g || '@example.com', '+1555' || lpad(g::text, 7, '0'), 'First' || g, 'Last' || g, 'Co' \
         from generate_series(1, $1) g",
        &[&contacts],
    )
    .await?;
    c.batch_execute("analyze contacts").await?;
    let seed_secs = t.elapsed().as_secs_f64();
    c.execute(
        "update channels set enabled = true, rate_per_second = $2::float8::numeric where name = $1",
        &[&channel, &rate],
    )
    .await?;
    let template: Uuid = c
        .query_one(
            "insert into message_templates (name, channel, subject, body, variables, status, source, created_by) \
             values ('bench', $1, case when $1 = 'email' then 'Hello {{contact.first_name}}' end, \
                     'Hi {{contact.first_name}}, news from us.', '[]', 'approved', 'api', 'bench') returning id",
            &[&channel],
        )
        .await?
        .get(0);
    let segment: Uuid = c
        .query_one(
            "insert into segments (name, filter, created_by) values ('everyone', '{}', 'bench') returning id",
            &[],
        )
        .await?
        .get(0);
    let campaign: Uuid = c
        .query_one(
            "insert into campaigns (name, channel, segment_id, template_id, status, created_by, queued_at) \
             values ('bench', $1, $2, $3, 'queued', 'bench', now()) returning id",
            &[&channel, &segment, &template],
        )
        .await?
        .get(0);

    // The snapshot alone, as the runner takes it (one transaction).
    let pool = build_pool(&DatabaseConfig::from_url(&db.url, 16)?)?;
    let t = Instant::now();
    let summary = {
        let mut client = pool.get().await?;
        let tx = client.transaction().await?;
        let summary = audience::snapshot(&tx, campaign).await?;
        tx.execute(
            "update campaigns set status = 'sending' where id = $1",
            &[&campaign],
        )
        .await?;
        tx.commit().await?;
        summary
    };
    let snapshot_secs = t.elapsed().as_secs_f64();

    // The fan-out: campaign worker → in-process send queue → send worker (local sinks).
    let env = Env::from_pairs([
        ("DATABASE_URL", db.url.as_str()),
        ("APP_ENV", "development"),
        ("LOG_LEVEL", "error"),
        ("PG_POOL_MAX", "32"),
        (
            "UNSUBSCRIBE_SECRET",
            "bench-unsubscribe-secret-0123456789abcdef",
        ),
        ("PUBLIC_BASE_URL", "http://127.0.0.1:3000"),
    ]);
    let common = CommonConfig::from_env(&env)?;
    let (queue, mut receivers) = InProcessQueue::new();
    let queue = Arc::new(queue);
    let send = send_worker::Deps::new(&common, &env)?;
    let send_rx = receivers.remove(&QueueName::Send).expect("send queue");
    // BENCH_SEND_CONCURRENCY: messages the send worker processes at once
    // (Lambda's batch concurrency plays this part in AWS).
    let send_concurrency: usize = std::env::var("BENCH_SEND_CONCURRENCY")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(send_worker::local::CONCURRENCY);
    let sender = send_worker::local::spawn_with(send_rx, send, send_concurrency);
    let publisher: Arc<dyn Publisher> = queue.clone();
    let config = RunnerConfig {
        budget: Duration::from_secs(3600),
        batch_interval: Duration::from_millis(interval),
        ..RunnerConfig::default()
    };
    let deps = campaign_worker::Deps::with(pool.clone(), Some(publisher), config);
    let t = Instant::now();
    let watcher = {
        let pool = pool.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(100)).await;
                let Ok(client) = pool.get().await else {
                    continue;
                };
                let queued: i64 = client
                    .query_one(
                        "select count(*) from campaign_deliveries where campaign_id = $1 and status = 'queued'",
                        &[&campaign],
                    )
                    .await
                    .map_or(1, |r| r.get(0));
                if queued == 0 {
                    return t.elapsed().as_secs_f64();
                }
            }
        })
    };
    let outcome =
        campaign_worker::run_campaign(campaign, &deps, Instant::now() + Duration::from_secs(3600))
            .await?;
    let fanout_secs = t.elapsed().as_secs_f64();
    let released_secs = watcher.await?;
    sender.abort();
    let RunOutcome::Finished { counts } = outcome else {
        anyhow::bail!("the campaign did not finish: {outcome:?}");
    };
    let done: i64 = counts
        .iter()
        .filter(|(s, _)| matches!(s.as_str(), "sent" | "delivered"))
        .map(|(_, n)| n)
        .sum();
    let settings = c
        .query_one(
            "select current_setting('fsync'), current_setting('synchronous_commit')",
            &[],
        )
        .await?;

    println!();
    println!(
        "== make bench-campaigns: {contacts} contacts, channel {channel} at {rate} messages/s, batch interval {interval} ms, {} cores ==",
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("seed (generate_series insert)        {seed_secs:>8.2} s");
    println!(
        "audience::snapshot                    {snapshot_secs:>8.2} s   ({} queued, skipped {:?})",
        summary.queued, summary.skipped
    );
    println!(
        "fan-out to finished                   {fanout_secs:>8.2} s   {:.0} messages/s at rate {rate} (ideal {:.2} s)",
        done as f64 / fanout_secs,
        summary.queued as f64 / rate
    );
    println!("  send worker concurrency              {send_concurrency:>8}");
    println!(
        "  of which releasing every row        {released_secs:>8.2} s   {:.0} rows/s released (±0.1 s)",
        summary.queued as f64 / released_secs
    );
    println!("ledger at the end                     {counts:?}");
    println!(
        "peak RSS (VmHWM)                      {:>8.1} MiB",
        peak_rss_mib()
    );
    println!(
        "postgres: fsync={} synchronous_commit={}",
        settings.get::<_, String>(0),
        settings.get::<_, String>(1)
    );
    println!("targets: snapshot < 3 s; fan-out limited by the configured rate");
    Ok(())
}
