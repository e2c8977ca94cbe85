//! The webhook as a sink: each alert POSTed in Falco's JSON shape (Falcosidekick reads it
//! unchanged). The HTTP client, its retries and its own counters are in
//! [`crate::output::webhook`].

use std::sync::Arc;

use osprey_engine::output::Alert;

use super::{Sink, SinkError};
use crate::output::webhook::{Webhook, WebhookConfig, WebhookError};

pub struct WebhookSink {
    inner: Webhook,
    reported: u64,
}

impl WebhookSink {
    /// Starts the posting task; needs the tokio runtime.
    pub fn start(cfg: WebhookConfig) -> Result<Self, WebhookError> {
        Ok(Self {
            inner: Webhook::start(cfg)?,
            reported: 0,
        })
    }
}

impl Sink for WebhookSink {
    fn name(&self) -> &'static str {
        "webhook"
    }

    fn write(&mut self, a: &Alert) -> Result<(), SinkError> {
        self.inner.send(Arc::new(a.clone()));
        Ok(())
    }

    /// Alerts the poster gave up on since the last flush are this sink's drops.
    fn flush(&mut self) -> Result<(), SinkError> {
        let dropped = self.inner.dropped();
        if dropped > self.reported {
            let n = dropped - self.reported;
            self.reported = dropped;
            return Err(SinkError::Lost {
                count: n,
                reason: "queue full or every attempt failed".into(),
            });
        }
        Ok(())
    }
}
