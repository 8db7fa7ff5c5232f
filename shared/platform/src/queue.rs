//! The queue port's adapters: SQS in AWS, an in-process channel locally.

use aws_sdk_sqs::types::MessageAttributeValue;
use crm_domain::outbox::{BoxFuture, Publisher, QueueName};
use std::collections::HashMap;
use tokio::sync::mpsc;
use uuid::Uuid;

/// Publishes to SQS; each queue's URL comes from configuration (`QUEUE_URL_<NAME>`).
pub struct SqsPublisher {
    client: aws_sdk_sqs::Client,
    urls: HashMap<QueueName, String>,
}

impl SqsPublisher {
    pub fn new(client: aws_sdk_sqs::Client, urls: HashMap<QueueName, String>) -> Self {
        Self { client, urls }
    }

    /// Reads `QUEUE_URL_SEND`, `QUEUE_URL_ENRICHMENT`, `QUEUE_URL_MEDIA` (those present).
    pub fn urls_from_env(env: &crate::config::Env) -> HashMap<QueueName, String> {
        QueueName::ALL
            .into_iter()
            .filter_map(|q| {
                let name = format!("QUEUE_URL_{}", q.as_str().to_ascii_uppercase());
                env.optional(&name).map(|url| (q, url.to_string()))
            })
            .collect()
    }
}

/// The after-commit publisher of an HTTP function: SQS when any
/// `QUEUE_URL_<NAME>` is configured, else `None` (the scheduled relay, or the
/// local runner's relay loop, publishes the outbox rows instead).
pub async fn publisher_from_env(env: &crate::config::Env) -> Option<std::sync::Arc<dyn Publisher>> {
    let urls = SqsPublisher::urls_from_env(env);
    if urls.is_empty() {
        return None;
    }
    let aws = aws_config::load_from_env().await;
    Some(std::sync::Arc::new(SqsPublisher::new(
        aws_sdk_sqs::Client::new(&aws),
        urls,
    )))
}

impl Publisher for SqsPublisher {
    fn publish<'a>(
        &'a self,
        queue: QueueName,
        message_id: Uuid,
        body: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            let url = self
                .urls
                .get(&queue)
                .ok_or_else(|| anyhow::anyhow!("no URL configured for queue {}", queue.as_str()))?;
            let attr = MessageAttributeValue::builder()
                .data_type("String")
                .string_value(message_id.to_string())
                .build()?;
            self.client
                .send_message()
                .queue_url(url)
                .message_body(body)
                .message_attributes("outbox_message_id", attr)
                .send()
                .await
                .map_err(|e| {
                    anyhow::anyhow!(
                        "SQS SendMessage to {}: {}",
                        queue.as_str(),
                        aws_sdk_sqs::error::DisplayErrorContext(e)
                    )
                })?;
            Ok(())
        })
    }
}

/// The consumer side of SQS: delays a received message's next delivery (a
/// retry with backoff) by changing its visibility timeout.
pub struct SqsVisibility {
    client: aws_sdk_sqs::Client,
    queue_url: String,
}

impl SqsVisibility {
    /// SQS's upper bound for a visibility timeout.
    pub const MAX: std::time::Duration = std::time::Duration::from_secs(12 * 60 * 60);

    pub fn new(client: aws_sdk_sqs::Client, queue_url: impl Into<String>) -> Self {
        Self {
            client,
            queue_url: queue_url.into(),
        }
    }

    /// The message becomes visible again after `delay` (whole seconds, at most 12 h).
    pub async fn delay(
        &self,
        receipt_handle: &str,
        delay: std::time::Duration,
    ) -> anyhow::Result<()> {
        let secs = delay.min(Self::MAX).as_secs() as i32;
        self.client
            .change_message_visibility()
            .queue_url(&self.queue_url)
            .receipt_handle(receipt_handle)
            .visibility_timeout(secs)
            .send()
            .await
            .map_err(|e| {
                anyhow::anyhow!(
                    "SQS ChangeMessageVisibility: {}",
                    aws_sdk_sqs::error::DisplayErrorContext(e)
                )
            })?;
        Ok(())
    }
}

/// A message as a local consumer sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalMessage {
    pub message_id: Uuid,
    pub body: String,
}

/// In-process queues for the local runner: one unbounded channel per queue.
pub struct InProcessQueue {
    senders: HashMap<QueueName, mpsc::UnboundedSender<LocalMessage>>,
}

impl InProcessQueue {
    /// Returns the publisher and, per queue, the receiving end a local worker consumes.
    pub fn new() -> (
        Self,
        HashMap<QueueName, mpsc::UnboundedReceiver<LocalMessage>>,
    ) {
        let mut senders = HashMap::new();
        let mut receivers = HashMap::new();
        for q in QueueName::ALL {
            let (tx, rx) = mpsc::unbounded_channel();
            senders.insert(q, tx);
            receivers.insert(q, rx);
        }
        (Self { senders }, receivers)
    }
}

impl Publisher for InProcessQueue {
    fn publish<'a>(
        &'a self,
        queue: QueueName,
        message_id: Uuid,
        body: &'a str,
    ) -> BoxFuture<'a, anyhow::Result<()>> {
        Box::pin(async move {
            self.senders[&queue]
                .send(LocalMessage {
                    message_id,
                    body: body.to_string(),
                })
                .map_err(|_| anyhow::anyhow!("local queue {} has no consumer", queue.as_str()))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_process_queue_delivers_to_the_named_queue_only() {
        let (q, mut rx) = InProcessQueue::new();
        let id = Uuid::now_v7();
        q.publish(QueueName::Send, id, "{\"k\":1}").await.unwrap();
        let got = rx.get_mut(&QueueName::Send).unwrap().recv().await.unwrap();
        assert_eq!(
            got,
            LocalMessage {
                message_id: id,
                body: "{\"k\":1}".into()
            }
        );
        assert!(rx.get_mut(&QueueName::Media).unwrap().try_recv().is_err());
    }
}
