//! The enrichment stages: each decoded event gets its process (the process table) and then its
//! container (the container table, which may hold a new container's events a bounded time for
//! the runtime's metadata). Shared by `osprey run` ([`super::Pipeline`]) and `osprey trace`.

use std::{sync::Arc, time::Instant};

use osprey_model::event::{Enriched, Event};

use crate::{
    container::{Attach, ContainerTable},
    process::{ProcessTable, TableConfig, TableStats},
};

pub struct Enrich {
    table: ProcessTable,
    attach: Attach,
}

impl Enrich {
    pub fn new(table: TableConfig, containers: Arc<ContainerTable>) -> Self {
        Self {
            table: ProcessTable::new(table),
            attach: Attach::new(containers),
        }
    }

    /// Learns the processes already running from `/proc` (call after the sensor attached, so
    /// a process started in between is in both and its events are the newer truth).
    pub fn bootstrap(&mut self, proc_root: &std::path::Path) -> std::io::Result<usize> {
        self.table.bootstrap(proc_root)
    }

    /// One event through the process table; what is ready (its container known) goes to `out`.
    /// `now`: the clock, read once for the batch the event came in.
    pub fn push(&mut self, ev: Event, now: Instant, out: &mut Vec<Enriched>) {
        let e = self.table.observe(ev);
        self.attach.push_at(e, now, out);
    }

    /// Events whose container metadata arrived, or whose wait ran out.
    pub fn poll(&mut self, out: &mut Vec<Enriched>) {
        self.attach.poll(out);
    }

    /// Everything still held, with what is known (at shutdown).
    pub fn flush(&mut self, out: &mut Vec<Enriched>) {
        self.attach.flush(out);
    }

    pub fn is_holding(&self) -> bool {
        self.attach.is_holding()
    }

    /// How long until the oldest held event must go on.
    pub fn poll_in(&self) -> std::time::Duration {
        self.attach.poll_in()
    }

    pub fn table_stats(&self) -> TableStats {
        self.table.stats()
    }
}
