//! The one alert fan-out: every destination of alerts is a [`Sink`], and each sink runs on a
//! worker thread of its own behind one bounded queue ([`SinkHandle`]).
//!
//! The pipeline hands each alert to [`Fanout::deliver`], which never waits: a sink whose
//! queue is full (a stalled stdout reader, a slow disk, a webhook that times out) loses that
//! alert, and the loss is counted in `osprey_queue_dropped_total{queue="<sink>"}`. The sensor
//! loop is never held up by a destination, and nothing is lost without a count.
//!
//! Sinks are built from [`crate::config::Config`] ([`build`]), the way vector builds its sinks
//! from their config: adding a destination is a new file here and a line in [`build`], never a
//! change to the pipeline. The collector's NATS publisher is a sink of the same trait over the
//! protobuf alerts the collector relays.

pub mod file;
pub mod stdout;
pub mod stream;
pub mod webhook;

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{self, RecvTimeoutError, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::Duration,
};

use osprey_engine::output::Alert;

use crate::metrics::Metrics;

/// A destination of alerts (or, for the collector, of relayed protobuf alerts).
///
/// `write` runs on the sink's own thread and may block; `flush` is called whenever the queue
/// has been drained, so a quiet stream is never held in a buffer.
pub trait Sink<T = Alert>: Send + 'static {
    /// The queue name in metrics and logs (`stdout`, `file`, `webhook`, `grpc`, `nats`).
    fn name(&self) -> &'static str;
    fn write(&mut self, item: &T) -> Result<(), SinkError>;
    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(())
    }
}

/// Why a sink could not take an item.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// This item is lost (counted); later ones are tried.
    #[error("{0}")]
    Failed(String),
    /// The destination is gone for good (stdout's reader closed the pipe): every later item is
    /// counted as dropped without being tried.
    #[error("closed: {0}")]
    Closed(String),
    /// Items the sink had accepted were lost later (a webhook's retries ran out).
    #[error("{count} alerts lost: {reason}")]
    Lost { count: u64, reason: String },
}

impl From<std::io::Error> for SinkError {
    fn from(e: std::io::Error) -> Self {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            SinkError::Closed(e.to_string())
        } else {
            SinkError::Failed(e.to_string())
        }
    }
}

/// Items a sink has lost, however it lost them (queue full, write failed, destination closed).
#[derive(Clone, Default)]
pub struct DropCounter {
    total: Arc<AtomicU64>,
    metrics: Option<Arc<Metrics>>,
    name: &'static str,
}

impl DropCounter {
    pub fn new(name: &'static str, metrics: Option<Arc<Metrics>>) -> Self {
        Self {
            total: Arc::default(),
            metrics,
            name,
        }
    }

    pub fn add(&self, n: u64) {
        self.total.fetch_add(n, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.queue_drop(self.name, n);
        }
    }

    pub fn get(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }
}

/// The pipeline's end of one sink: a bounded queue to its worker thread.
pub struct SinkHandle<T = Alert> {
    name: &'static str,
    tx: Option<SyncSender<Arc<T>>>,
    dropped: DropCounter,
    worker: Option<JoinHandle<()>>,
    /// Closed by the worker when it has written out and flushed everything.
    done: mpsc::Receiver<()>,
}

/// How long stopping waits for a sink to write out its queue: a webhook in the middle of its
/// retries must not hold up a shutdown (the kubelet's grace period is 30 s).
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

impl<T: Send + Sync + 'static> SinkHandle<T> {
    /// Starts `sink` on its own thread behind a queue of `capacity` items.
    pub fn spawn<S: Sink<T>>(
        mut sink: S,
        capacity: usize,
        metrics: Option<Arc<Metrics>>,
    ) -> std::io::Result<Self> {
        let name = sink.name();
        let (tx, rx) = mpsc::sync_channel::<Arc<T>>(capacity.max(1));
        let dropped = DropCounter::new(name, metrics);
        let counter = dropped.clone();
        let (done_tx, done) = mpsc::channel::<()>();
        let worker = std::thread::Builder::new()
            .name(format!("sink-{name}"))
            .spawn(move || {
                let mut closed = false;
                loop {
                    // Blocks until an item comes: what was written is flushed below as soon as
                    // the queue is empty, so an idle sink has nothing to wake for.
                    let Ok(item) = rx.recv() else { break };
                    let mut wrote = false;
                    for item in std::iter::once(item).chain(rx.try_iter()) {
                        if closed {
                            counter.add(1);
                            continue;
                        }
                        if let Err(e) = sink.write(&item) {
                            counter.add(1);
                            report(name, &counter, Err(e), &mut closed);
                        }
                        wrote = true;
                    }
                    // The queue is empty: what was written goes out now.
                    if wrote && !closed {
                        report(name, &counter, sink.flush(), &mut closed);
                    }
                }
                if !closed {
                    report(name, &counter, sink.flush(), &mut closed);
                }
                drop(done_tx);
            })?;
        Ok(Self {
            name,
            tx: Some(tx),
            dropped,
            worker: Some(worker),
            done,
        })
    }

    /// Queues an item; never waits. A full queue loses the item and counts it.
    pub fn send(&self, item: Arc<T>) {
        let Some(tx) = &self.tx else { return };
        match tx.try_send(item) {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => self.dropped.add(1),
        }
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Items this sink lost so far.
    pub fn dropped(&self) -> u64 {
        self.dropped.get()
    }
}

impl<T> SinkHandle<T> {
    /// Stops taking items and lets the worker write what is queued and flush, waiting for it
    /// at most [`CLOSE_TIMEOUT`].
    pub fn close(&mut self) {
        self.close_within(CLOSE_TIMEOUT);
    }

    /// [`SinkHandle::close`] with another deadline. A worker still busy at the deadline is left
    /// to finish on its own while the process exits, and says so.
    pub fn close_within(&mut self, deadline: Duration) {
        self.tx = None;
        let Some(w) = self.worker.take() else { return };
        match self.done.recv_timeout(deadline) {
            Err(RecvTimeoutError::Timeout) => tracing::warn!(
                sink = self.name,
                "the {} output did not finish writing within {deadline:?}; what it still held \
                 may not have gone out",
                self.name
            ),
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                let _ = w.join();
            }
        }
    }
}

impl<T> Drop for SinkHandle<T> {
    fn drop(&mut self) {
        self.close();
    }
}

fn report(name: &str, dropped: &DropCounter, r: Result<(), SinkError>, closed: &mut bool) {
    match r {
        Ok(()) => {}
        Err(SinkError::Closed(e)) => {
            *closed = true;
            tracing::error!(
                "the {name} output is closed ({e}); alerts keep going to the other outputs, and \
                 those meant for {name} are counted in osprey_queue_dropped_total{{queue=\"{name}\"}}"
            );
        }
        Err(e @ SinkError::Lost { .. }) => {
            if let SinkError::Lost { count, .. } = &e {
                dropped.add(*count);
            }
            tracing::warn!(
                dropped = dropped.get(),
                "{name} output: {e}; counted in osprey_queue_dropped_total{{queue=\"{name}\"}}"
            )
        }
        Err(SinkError::Failed(e)) => tracing::warn!(
            dropped = dropped.get(),
            "{name} output: {e}; counted in osprey_queue_dropped_total{{queue=\"{name}\"}}"
        ),
    }
}

/// Every sink of the agent; the pipeline's one publish point.
#[derive(Default)]
pub struct Fanout {
    sinks: Vec<SinkHandle>,
}

impl Fanout {
    pub fn new(sinks: Vec<SinkHandle>) -> Self {
        Self { sinks }
    }

    pub fn push(&mut self, sink: SinkHandle) {
        self.sinks.push(sink);
    }

    /// Hands the alert to every sink; never waits.
    pub fn deliver(&self, alert: Alert) {
        let alert = Arc::new(alert);
        for s in &self.sinks {
            s.send(alert.clone());
        }
    }

    pub fn sinks(&self) -> &[SinkHandle] {
        &self.sinks
    }

    /// Writes out what every sink has queued and stops them.
    pub fn close(&mut self) {
        for s in &mut self.sinks {
            s.close();
        }
    }
}

/// The sinks [`crate::config::Config`] asks for, except the gRPC stream, which needs the async
/// runtime and is added by the caller ([`stream::StreamSink`]).
pub fn build(
    cfg: &crate::config::Config,
    metrics: Option<Arc<Metrics>>,
) -> Result<Fanout, BuildError> {
    let mut sinks = Vec::new();
    if cfg.stdout.enabled {
        sinks.push(SinkHandle::spawn(
            stdout::StdoutSink::new(cfg.stdout.format),
            cfg.stdout.queue,
            metrics.clone(),
        )?);
    }
    if let Some(p) = &cfg.file.path {
        let f = file::RotatingFile::open(p, cfg.file.max_bytes, cfg.file.keep).map_err(|e| {
            BuildError::File {
                path: p.clone(),
                source: e,
            }
        })?;
        sinks.push(SinkHandle::spawn(
            file::FileSink::new(f),
            cfg.file.queue,
            metrics.clone(),
        )?);
    }
    if !cfg.webhook.url.is_empty() {
        sinks.push(SinkHandle::spawn(
            webhook::WebhookSink::new(cfg.webhook.clone())?,
            cfg.webhook.queue,
            metrics.clone(),
        )?);
    }
    Ok(Fanout::new(sinks))
}

/// A sink the configuration asks for that cannot start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("opening the alert file {path}: {source}")]
    File {
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("webhook: {0}")]
    Webhook(#[from] webhook::WebhookError),
    #[error("starting a sink thread: {0}")]
    Thread(#[from] std::io::Error),
}

#[cfg(test)]
mod tests;
