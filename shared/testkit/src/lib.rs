//! Test support. `TestDb::new()` gives each test its own PostgreSQL
//! database, copied from a template that was migrated once (named after the
//! migrations' fingerprint, so a new migration makes a new template).
//! The server is the one at `TEST_DATABASE_URL`, else `DATABASE_URL`, else
//! 127.0.0.1:5432 as `postgres`; `make test` makes sure one answers.

use anyhow::Context;
use std::path::PathBuf;
use tokio_postgres::NoTls;

pub fn admin_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// `url` with its database name replaced.
fn with_db(url: &str, db: &str) -> String {
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let after_scheme = base.find("://").map_or(0, |i| i + 3);
    let base = match base[after_scheme..].find('/') {
        Some(i) => &base[..after_scheme + i],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{db}?{q}"),
        None => format!("{base}/{db}"),
    }
}

async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, conn) = tokio_postgres::connect(url, NoTls).await.with_context(|| {
        "connecting to the test PostgreSQL (is it running? `make test` starts one)".to_string()
    })?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// Arbitrary constant: serialises template creation across test processes.
const TEMPLATE_LOCK: i64 = 0x0C0F_FEE0_7E57_0001;

async fn ensure_template(admin: &tokio_postgres::Client) -> anyhow::Result<String> {
    let name = format!("crmt_tpl_{}", crm_domain::migrations::fingerprint());
    admin
        .execute("select pg_advisory_lock($1)", &[&TEMPLATE_LOCK])
        .await?;
    let result = async {
        let row = admin
            .query_opt(
                "select datistemplate from pg_database where datname = $1",
                &[&name],
            )
            .await?;
        match row.map(|r| r.get::<_, bool>(0)) {
            Some(true) => return Ok(()),
            // Half-built by a run that died: rebuild.
            Some(false) => {
                admin
                    .batch_execute(&format!("drop database if exists {name} with (force)"))
                    .await?;
            }
            None => {}
        }
        admin
            .batch_execute(&format!("create database {name}"))
            .await?;
        {
            let mut client = connect(&with_db(&admin_url(), &name)).await?;
            crm_domain::migrations::run(&mut client).await?;
        }
        admin
            .batch_execute(&format!("alter database {name} is_template true"))
            .await?;
        anyhow::Ok(())
    }
    .await;
    admin
        .execute("select pg_advisory_unlock($1)", &[&TEMPLATE_LOCK])
        .await?;
    result.map(|()| name)
}

/// A fresh, migrated database, dropped when the value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
}

impl TestDb {
    pub async fn new() -> Self {
        Self::try_new().await.expect("creating a test database")
    }

    async fn try_new() -> anyhow::Result<Self> {
        let admin = connect(&admin_url()).await?;
        let template = ensure_template(&admin).await?;
        let name = format!("crmt_{}", uuid::Uuid::new_v4().simple());
        admin
            .batch_execute(&format!("create database {name} template {template}"))
            .await
            .context("creating the test database from the template")?;
        Ok(Self {
            url: with_db(&admin_url(), &name),
            name,
        })
    }

    /// An empty database (no migrations), for testing the migration runner itself.
    pub async fn empty() -> Self {
        let admin = connect(&admin_url())
            .await
            .expect("connecting to the test PostgreSQL");
        let name = format!("crmt_{}", uuid::Uuid::new_v4().simple());
        admin
            .batch_execute(&format!("create database {name}"))
            .await
            .expect("creating an empty test database");
        Self {
            url: with_db(&admin_url(), &name),
            name,
        }
    }

    pub async fn client(&self) -> tokio_postgres::Client {
        connect(&self.url)
            .await
            .expect("connecting to the test database")
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async; use a short-lived runtime on its own thread.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let admin = connect(&admin_url()).await.ok()?;
                admin
                    .batch_execute(&format!("drop database if exists {name} with (force)"))
                    .await
                    .ok()
            })
        })
        .join();
    }
}

/// Inserts an active `users` row (no password) and returns its id: owners
/// are users, so tests that assign records make their owners this way.
pub async fn insert_user(db: &tokio_postgres::Client, name: &str, role: &str) -> uuid::Uuid {
    let email = format!(
        "{}-{}@example.test",
        name.to_lowercase().replace(' ', "."),
        uuid::Uuid::new_v4().simple()
    );
    db.query_one(
        "insert into users (email, name, role, caps) values ($1, $2, $3, '{can_use_crm}') returning id",
        &[&email, &name, &role],
    )
    .await
    .expect("inserting a test user")
    .get(0)
}

/// The repository root (for loading `events/*.json`).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Reads `events/<path>` as text.
pub fn event(path: &str) -> String {
    let full = repo_root().join("events").join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {}: {e}", full.display()))
}

/// A local AWS-compatible server (`moto_server`, from PyPI) on a free port,
/// stopped when dropped. `make test` installs it; `MOTO_SERVER` overrides the binary.
pub struct MotoServer {
    child: std::process::Child,
    pub endpoint: String,
}

impl MotoServer {
    pub async fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let bin = std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
        let child = std::process::Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "starting {bin} ({e}); `make test` installs it with pip install 'moto[server]'"
                )
            });
        let server = Self {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return server;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("moto_server did not start listening on port {port} within 10 s");
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_name_is_replaced_keeping_the_query() {
        assert_eq!(
            with_db("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            with_db("postgres://u@h/postgres?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(with_db("postgres://u@h:1", "x"), "postgres://u@h:1/x");
    }
}
