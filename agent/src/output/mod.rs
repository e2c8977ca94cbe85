//! The webhook's HTTP client (retries, backoff, counters). The webhook's place in the alert
//! fan-out is [`crate::sink::webhook`].

pub mod webhook;
