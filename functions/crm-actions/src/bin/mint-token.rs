//! DEVELOPMENT TOOL. Prints a bearer token for the CRM API, signed with
//! `JWT_SECRET`, for any `sub` and role, without a `users` row or a password.
//!
//!     JWT_SECRET=dev-jwt-secret-0123456789abcdef0123 cargo run -q -p crm-actions --bin mint-token -- \
//!         --sub alice --role admin --caps can_use_crm --ttl 900
//!
//! Defaults: `--sub dev-user --role member --ttl 900` (seconds; at most
//! 900, the verifier's maximum lifetime), no caps. Refuses to run with
//! `APP_ENV=production`, and prints a notice on stderr. Real tokens come from `POST /api/v1/auth/login`
//! (docs/accounts.md) or the configured external identity provider.

use crm_domain::{
    Secret,
    auth::{self, Claims, DEFAULT_MAX_LIFETIME_SECONDS, Role, mint},
};

fn main() {
    let app_env = std::env::var("APP_ENV").unwrap_or_default();
    if matches!(
        app_env.trim().to_ascii_lowercase().as_str(),
        "production" | "prod"
    ) {
        eprintln!(
            "mint-token: refused: this is a development tool and APP_ENV=production. \
             Sign in with POST /api/v1/auth/login instead."
        );
        std::process::exit(2);
    }
    eprintln!(
        "mint-token: development token (no users row, no password): sign in with POST /api/v1/auth/login for real ones."
    );
    match run(std::env::args().skip(1).collect()) {
        Ok(token) => println!("{token}"),
        Err(msg) => {
            eprintln!("mint-token: {msg}");
            eprintln!(
                "usage: JWT_SECRET=… mint-token [--sub ID] [--role admin|member] [--caps a,b] [--ttl SECONDS≤900]  (development only)"
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
    let (mut sub, mut role, mut caps, mut ttl) = (
        "dev-user".to_string(),
        Role::Member,
        Vec::new(),
        DEFAULT_MAX_LIFETIME_SECONDS,
    );
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
    if !(1..=DEFAULT_MAX_LIFETIME_SECONDS).contains(&ttl) {
        return Err(format!(
            "--ttl must be between 1 and {DEFAULT_MAX_LIFETIME_SECONDS} seconds (the verifier refuses longer tokens)"
        ));
    }
    Ok(mint(
        &secret,
        &Claims::access(sub, role, caps, auth::now(), ttl),
    ))
}
