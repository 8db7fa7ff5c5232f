//! An external identity provider's signing keys (JWKS), fetched once per
//! cold start (on the first external token) and refetched only when a token
//! names a `kid` the cached set does not hold — at most once per
//! [`JwksCache::MIN_REFETCH`], however many such tokens arrive, so a flood
//! of made-up `kid`s cannot turn into a flood of requests to the provider.

use crm_domain::auth::{
    AuthError, ExternalIdentity, ExternalPolicy, ExternalRefusal, external, now,
};
use jsonwebtoken::jwk::JwkSet;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};
use tokio::sync::{Mutex, RwLock};

/// An external provider: where its keys are, and what its tokens must say.
pub struct ExternalIdp {
    pub policy: ExternalPolicy,
    jwks: JwksCache,
}

impl std::fmt::Debug for ExternalIdp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExternalIdp")
            .field("issuer", &self.policy.issuer)
            .field("audience", &self.policy.audience)
            .finish_non_exhaustive()
    }
}

impl ExternalIdp {
    pub fn new(policy: ExternalPolicy, jwks_url: String, http: reqwest::Client) -> Self {
        Self {
            policy,
            jwks: JwksCache::new(jwks_url, http),
        }
    }

    /// Verifies an RS256/ES256 token against the provider's keys, fetching
    /// them on first use and once more when the token names an unknown key.
    pub async fn verify(&self, token: &str) -> Result<ExternalIdentity, AuthError> {
        let keys = self.jwks.current().await;
        let first = match &keys {
            Some(keys) => external::verify(token, keys, &self.policy, now()),
            None => Err(ExternalRefusal::UnknownKey),
        };
        match first {
            Ok(identity) => Ok(identity),
            Err(ExternalRefusal::Refused(e)) => Err(e),
            Err(ExternalRefusal::UnknownKey) => {
                let Some(keys) = self.jwks.refresh(keys.as_ref()).await else {
                    return Err(AuthError::Invalid);
                };
                match external::verify(token, &keys, &self.policy, now()) {
                    Ok(identity) => Ok(identity),
                    Err(ExternalRefusal::Refused(e)) => Err(e),
                    Err(ExternalRefusal::UnknownKey) => Err(AuthError::Invalid),
                }
            }
        }
    }

    /// The same provider with another pause between fetches (tests of key rotation).
    pub fn with_min_refetch(mut self, pause: Duration) -> Self {
        self.jwks.min_refetch = pause;
        self
    }

    /// How many times the key set was fetched (tests, diagnostics).
    pub async fn fetches(&self) -> u64 {
        self.jwks.state.lock().await.fetches
    }
}

struct FetchState {
    last_attempt: Option<Instant>,
    last_failed: bool,
    fetches: u64,
}

struct JwksCache {
    url: String,
    http: reqwest::Client,
    keys: RwLock<Option<Arc<JwkSet>>>,
    min_refetch: Duration,
    /// Held while fetching: one fetch at a time, and the rate limit's clock.
    state: Mutex<FetchState>,
}

impl JwksCache {
    /// Fewest seconds between two fetches of the key set.
    const MIN_REFETCH: Duration = Duration::from_secs(60);
    /// After a failed fetch (provider unreachable), try again sooner.
    const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(5);

    fn new(url: String, http: reqwest::Client) -> Self {
        Self {
            url,
            http,
            keys: RwLock::new(None),
            min_refetch: Self::MIN_REFETCH,
            state: Mutex::new(FetchState {
                last_attempt: None,
                last_failed: false,
                fetches: 0,
            }),
        }
    }

    async fn current(&self) -> Option<Arc<JwkSet>> {
        self.keys.read().await.clone()
    }

    /// A newer key set than `seen`: fetched now unless another request just
    /// did (then theirs), or the last attempt was under a minute ago (then
    /// whatever is cached, which may be `seen` itself).
    async fn refresh(&self, seen: Option<&Arc<JwkSet>>) -> Option<Arc<JwkSet>> {
        let mut state = self.state.lock().await;
        let cached = self.current().await;
        let changed = match (&cached, seen) {
            (Some(c), Some(s)) => !Arc::ptr_eq(c, s),
            (Some(_), None) => true,
            _ => false,
        };
        if changed {
            return cached;
        }
        let pause = if state.last_failed {
            Self::RETRY_AFTER_FAILURE.min(self.min_refetch)
        } else {
            self.min_refetch
        };
        if state.last_attempt.is_some_and(|t| t.elapsed() < pause) {
            return cached;
        }
        state.last_attempt = Some(Instant::now());
        state.fetches += 1;
        let fetched = self.fetch().await;
        state.last_failed = fetched.is_err();
        match fetched {
            Ok(set) => {
                let set = Arc::new(set);
                *self.keys.write().await = Some(set.clone());
                tracing::info!(keys = set.keys.len(), "identity provider keys fetched");
                Some(set)
            }
            Err(e) => {
                tracing::warn!(error = %e, "fetching the identity provider's keys failed");
                cached
            }
        }
    }

    async fn fetch(&self) -> anyhow::Result<JwkSet> {
        let resp = self
            .http
            .get(&self.url)
            .header("accept", "application/json")
            .send()
            .await?
            .error_for_status()?;
        Ok(resp.json::<JwkSet>().await?)
    }
}
