//! Prints a development bearer token for the CRM API, signed with `JWT_SECRET`.
//!
//!     JWT_SECRET=dev-jwt-secret-0123456789abcdef0123 cargo run -q -p crm-actions --bin mint-token -- \
//!         --sub alice --role admin --caps can_use_crm --ttl 3600
//!
//! Defaults: `--sub dev-user --role member --ttl 3600` (seconds), no caps.
//! For development and tests only: production tokens come from your identity provider.

use crm_domain::{
    Secret,
    auth::{Claims, Role, mint},
};

fn main() {
    match run(std::env::args().skip(1).collect()) {
        Ok(token) => println!("{token}"),
        Err(msg) => {
            eprintln!("mint-token: {msg}");
            eprintln!(
                "usage: JWT_SECRET=… mint-token [--sub ID] [--role admin|member] [--caps a,b] [--ttl SECONDS]"
            );
            std::process::exit(2);
        }
    }
}

fn run(args: Vec<String>) -> Result<String, String> {
    let secret = std::env::var("JWT_SECRET")
        .ok()
        .and_then(Secret::new)
        .ok_or("JWT_SECRET is required")?;
    let (mut sub, mut role, mut caps, mut ttl) =
        ("dev-user".to_string(), Role::Member, Vec::new(), 3600i64);
    let mut it = args.into_iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--sub" => sub = value,
            "--role" => {
                role = match value.as_str() {
                    "admin" => Role::Admin,
                    "member" => Role::Member,
                    _ => return Err("--role must be admin or member".into()),
                }
            }
            "--caps" => {
                caps = value
                    .split(',')
                    .map(str::trim)
                    .filter(|c| !c.is_empty())
                    .map(str::to_owned)
                    .collect()
            }
            "--ttl" => {
                ttl = value
                    .parse()
                    .map_err(|_| "--ttl must be a number of seconds")?
            }
            other => return Err(format!("unknown option {other}")),
        }
    }
    let now = chrono::Utc::now().timestamp();
    Ok(mint(
        &secret,
        &Claims {
            sub,
            role,
            caps,
            exp: now + ttl,
            iat: Some(now),
        },
    ))
}
