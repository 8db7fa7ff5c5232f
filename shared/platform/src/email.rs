//! Amazon SES v2 behind the domain's e-mail port (`crm_domain::mail::Mailer`):
//! `SendEmail` with Simple content (subject, text body, optional HTML,
//! custom headers such as `List-Unsubscribe`), `FromEmailAddress` from
//! `SES_FROM_ADDRESS`, an optional configuration set.
//!
//! The SDK's own retries are off: the caller's ledger decides about retries
//! (backoff between receives, a maximum), so one `send` is one HTTP call.
//! Answers are classified by SES's error code, never by its message text
//! (a rejection message can quote the recipient's address):
//! only answers that prove SES did not take the e-mail are retryable:
//! throttling (`TooManyRequests`, `LimitExceeded`, 429), `SendingPaused`,
//! and connect-phase failures (DNS, connection refused, connect timeout:
//! the request never left). A timeout after the request was sent, a 5xx
//! and a transport error mid-request are *uncertain* (SES may have accepted
//! it and has no idempotency key: the caller must not resend).
//! `MessageRejected`, `BadRequest`, `AccountSuspended`,
//! `MailFromDomainNotVerified`, `NotFound` and any other 4xx are permanent.
//!
//! The client is built on first use (one `aws_config` load), so the send
//! worker's `Deps` stay synchronous to build.

use aws_sdk_sesv2::{
    Client,
    config::{http::HttpResponse, retry::RetryConfig, timeout::TimeoutConfig},
    error::SdkError,
    operation::send_email::SendEmailError,
    types::{Body, Content, Destination, EmailContent, Message, MessageHeader},
};
use crm_domain::{
    mail::{MailError, MailSent, Mailer, OutboundEmail},
    outbox::BoxFuture,
};
use std::{fmt, time::Duration};
use tokio::sync::OnceCell;

/// What SES needs from configuration.
#[derive(Clone, PartialEq, Eq)]
pub struct SesConfig {
    /// `SES_FROM_ADDRESS`, e.g. `Acme <news@mail.acme.com>`.
    pub from: String,
    /// `SES_CONFIGURATION_SET` (event publishing, suppression), optional.
    pub configuration_set: Option<String>,
    /// Whole-call timeout.
    pub timeout: Duration,
}

impl fmt::Debug for SesConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The sender is configuration, not a recipient; still, ids only in logs.
        f.debug_struct("SesConfig")
            .field("configuration_set", &self.configuration_set)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

pub struct SesMailer {
    config: SesConfig,
    client: OnceCell<Client>,
}

impl SesMailer {
    /// The client comes from the default AWS configuration (region,
    /// credentials, `AWS_ENDPOINT_URL`) on the first send.
    pub fn new(config: SesConfig) -> Self {
        Self {
            config,
            client: OnceCell::new(),
        }
    }

    /// With a ready client (tests point it at a mock endpoint).
    pub fn with_client(config: SesConfig, client: Client) -> Self {
        Self {
            config,
            client: OnceCell::new_with(Some(client)),
        }
    }

    /// An SES client on `conf` with the SDK's retries off and a call timeout.
    pub fn client(conf: &aws_config::SdkConfig, timeout: Duration) -> Client {
        let c = aws_sdk_sesv2::config::Builder::from(conf)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_timeout(timeout)
                    .connect_timeout(timeout.min(Duration::from_secs(5)))
                    .build(),
            )
            .build();
        Client::from_conf(c)
    }

    async fn get(&self) -> &Client {
        self.client
            .get_or_init(|| async {
                let conf = crate::aws::load().await;
                Self::client(&conf, self.config.timeout)
            })
            .await
    }

    async fn send_one(&self, email: &OutboundEmail) -> Result<MailSent, MailError> {
        let content = |data: &str| {
            Content::builder()
                .data(data)
                .charset("UTF-8")
                .build()
                .map_err(|_| MailError::Permanent("building the SES content failed".into()))
        };
        let mut body = Body::builder().text(content(&email.text)?);
        if let Some(html) = &email.html {
            body = body.html(content(html)?);
        }
        let mut message = Message::builder()
            .subject(content(&email.subject)?)
            .body(body.build());
        for (name, value) in &email.headers {
            let header = MessageHeader::builder()
                .name(name)
                .value(value)
                .build()
                .map_err(|_| MailError::Permanent("building an SES header failed".into()))?;
            message = message.headers(header);
        }
        let client = self.get().await;
        let sent = client
            .send_email()
            .from_email_address(&self.config.from)
            .destination(Destination::builder().to_addresses(&email.to).build())
            .content(EmailContent::builder().simple(message.build()).build())
            .set_configuration_set_name(self.config.configuration_set.clone())
            .send()
            .await;
        match sent {
            Ok(out) => match out.message_id() {
                Some(id) if !id.is_empty() => Ok(MailSent {
                    provider_id: id.to_string(),
                }),
                // Taken (2xx) but without an id: it went; not worth a resend.
                _ => Ok(MailSent {
                    provider_id: format!("ses-{}", email.reference.simple()),
                }),
            },
            Err(e) => Err(classify(&e)),
        }
    }
}

impl Mailer for SesMailer {
    fn send<'a>(&'a self, email: &'a OutboundEmail) -> BoxFuture<'a, Result<MailSent, MailError>> {
        Box::pin(self.send_one(email))
    }
}

/// SES's answer as retryable, uncertain or permanent, in words that quote
/// nothing of it but the error code and HTTP status.
pub fn classify(err: &SdkError<SendEmailError, HttpResponse>) -> MailError {
    match err {
        SdkError::ServiceError(ctx) => {
            let status = ctx.raw().status().as_u16();
            let e = ctx.err();
            let code = aws_sdk_sesv2::error::ProvideErrorMetadata::code(e)
                .unwrap_or("unknown")
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .take(64)
                .collect::<String>();
            let why = format!("SES {code} (HTTP {status})");
            match e {
                SendEmailError::TooManyRequestsException(_)
                | SendEmailError::LimitExceededException(_)
                | SendEmailError::SendingPausedException(_) => MailError::Retryable(why),
                SendEmailError::MessageRejected(_)
                | SendEmailError::BadRequestException(_)
                | SendEmailError::AccountSuspendedException(_)
                | SendEmailError::MailFromDomainNotVerifiedException(_)
                | SendEmailError::NotFoundException(_) => MailError::Permanent(why),
                _ if status == 429 || code == "Throttling" => MailError::Retryable(why),
                // A 5xx does not say whether the e-mail was queued first.
                _ if status >= 500 => MailError::Uncertain(why),
                _ => MailError::Permanent(why),
            }
        }
        SdkError::ResponseError(ctx) => {
            let status = ctx.raw().status().as_u16();
            if status == 429 {
                MailError::Retryable(format!("SES answered HTTP {status}"))
            } else if status >= 500 || (200..300).contains(&status) {
                // A 2xx we could not read may well be a taken e-mail.
                MailError::Uncertain(format!("SES answered HTTP {status} (unreadable)"))
            } else {
                MailError::Permanent(format!("SES answered HTTP {status} (unreadable)"))
            }
        }
        SdkError::DispatchFailure(_) if before_sending(err) => {
            MailError::Retryable("the SES call failed to connect".into())
        }
        SdkError::TimeoutError(_) if before_sending(err) => {
            MailError::Retryable("the SES call timed out while connecting".into())
        }
        SdkError::TimeoutError(_) => {
            MailError::Uncertain("the SES call timed out after sending".into())
        }
        SdkError::DispatchFailure(_) => {
            MailError::Uncertain("the SES call failed mid-request".into())
        }
        SdkError::ConstructionFailure(_) => {
            MailError::Permanent("the SES request could not be built".into())
        }
        _ => MailError::Uncertain("the SES call failed".into()),
    }
}

/// Whether the failure happened while connecting (DNS, refused, TLS, connect
/// timeout), i.e. before any byte of the request went out: the HTTP
/// client's connect-phase error is somewhere in the error's source chain.
fn before_sending(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(e) = next {
        if let Some(h) = e.downcast_ref::<hyper_util::client::legacy::Error>() {
            return h.is_connect();
        }
        next = e.source();
    }
    false
}
