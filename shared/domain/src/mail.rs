//! The e-mail port: what the send worker hands to a mail provider (Amazon SES
//! v2 in AWS, a labelled local sink otherwise). Campaign e-mails and manager
//! notifications both go through it. Nothing here logs an address or a body.

use crate::outbox::BoxFuture;
use uuid::Uuid;

/// One e-mail to one recipient.
#[derive(Debug, Clone, PartialEq)]
pub struct OutboundEmail {
    pub to: String,
    pub subject: String,
    pub text: String,
    pub html: Option<String>,
    /// Extra headers, e.g. `List-Unsubscribe` and `List-Unsubscribe-Post`.
    pub headers: Vec<(String, String)>,
    /// Our id of this send (a delivery or notification id): providers that
    /// support it deduplicate on it, and the local sink labels by it.
    pub reference: Uuid,
}

/// The provider accepted the e-mail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailSent {
    /// The provider's message id (`local-…` for the local sink).
    pub provider_id: String,
}

/// The provider did not accept it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MailError {
    /// The provider provably did not take it (throttled, or no connection
    /// was made): worth trying again later.
    Retryable(String),
    /// The request may have reached the provider but no answer says whether
    /// it was taken (timeout after sending, 5xx, a transport error
    /// mid-request): never resend it, flag it.
    Uncertain(String),
    /// Will never succeed as it is (rejected address, bad request, suppressed).
    Permanent(String),
}

impl std::fmt::Display for MailError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MailError::Retryable(r) => write!(f, "retryable: {r}"),
            MailError::Permanent(r) => write!(f, "permanent: {r}"),
            MailError::Uncertain(r) => write!(f, "uncertain: {r}"),
        }
    }
}

pub trait Mailer: Send + Sync {
    fn send<'a>(&'a self, email: &'a OutboundEmail) -> BoxFuture<'a, Result<MailSent, MailError>>;
    /// Whether this is the local sink (nothing leaves the machine).
    fn is_local(&self) -> bool {
        false
    }
}

/// The local sink: accepts every e-mail, sends nothing, logs only the reference.
#[derive(Debug, Default, Clone, Copy)]
pub struct LocalMailer;

impl Mailer for LocalMailer {
    fn send<'a>(&'a self, email: &'a OutboundEmail) -> BoxFuture<'a, Result<MailSent, MailError>> {
        Box::pin(async move {
            tracing::info!(reference = %email.reference, "LOCAL MAIL SINK: e-mail recorded, not sent");
            Ok(MailSent {
                provider_id: format!("local-{}", email.reference.simple()),
            })
        })
    }

    fn is_local(&self) -> bool {
        true
    }
}
