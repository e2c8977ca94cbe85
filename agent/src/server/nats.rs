//! NATS JetStream: the collector publishes every alert to `osprey.alerts.<node>` in the stream
//! `OSPREY_ALERTS` (created when missing), and `osprey tail --nats` reads it back. Each message
//! is the protobuf `Alert`, with `Nats-Msg-Id` set to the alert's id so that JetStream drops
//! the copies an agent re-sends after a collector restart.

use async_nats::jetstream;
use prost::Message as _;

use super::pb;

pub const STREAM: &str = "OSPREY_ALERTS";
pub const SUBJECT_PREFIX: &str = "osprey.alerts";

#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    #[error("connecting to NATS at {url}: {reason}")]
    Connect { url: String, reason: String },
    #[error("JetStream stream {STREAM}: {0}")]
    Stream(String),
    #[error("JetStream publish: {0}")]
    Publish(String),
    #[error("JetStream consumer: {0}")]
    Consume(String),
}

/// `osprey.alerts.<node>`, with the characters NATS gives a meaning (`.`, `*`, `>`, space)
/// replaced.
pub fn subject(node: &str) -> String {
    let clean: String = node
        .chars()
        .map(|c| match c {
            '.' | '*' | '>' | ' ' | '\t' => '_',
            c => c,
        })
        .collect();
    format!("{SUBJECT_PREFIX}.{clean}")
}

pub async fn connect(url: &str) -> Result<jetstream::Context, NatsError> {
    let client = async_nats::ConnectOptions::new()
        .retry_on_initial_connect()
        .connection_timeout(std::time::Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|e| NatsError::Connect {
            url: url.into(),
            reason: e.to_string(),
        })?;
    Ok(jetstream::new(client))
}

pub struct NatsSink {
    js: jetstream::Context,
}

impl NatsSink {
    /// Connects and makes sure the stream exists.
    pub async fn start(url: &str) -> Result<Self, NatsError> {
        let js = connect(url).await?;
        js.get_or_create_stream(jetstream::stream::Config {
            name: STREAM.into(),
            subjects: vec![format!("{SUBJECT_PREFIX}.>")],
            duplicate_window: std::time::Duration::from_secs(600),
            ..Default::default()
        })
        .await
        .map_err(|e| NatsError::Stream(e.to_string()))?;
        Ok(NatsSink { js })
    }

    /// Publishes and waits until JetStream has stored it.
    pub async fn publish(&self, a: &pb::Alert) -> Result<(), NatsError> {
        let mut headers = async_nats::HeaderMap::new();
        headers.insert("Nats-Msg-Id", a.id.as_str());
        self.js
            .publish_with_headers(subject(&a.node), headers, a.encode_to_vec().into())
            .await
            .map_err(|e| NatsError::Publish(e.to_string()))?
            .await
            .map_err(|e| NatsError::Publish(e.to_string()))?;
        Ok(())
    }
}
