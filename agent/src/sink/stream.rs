//! The gRPC alert stream as a sink: each alert is numbered on the node's alert bus, from which
//! gRPC subscribers (`osprey tail`) and the push to the collector read. The conversion to the
//! protobuf shape happens here, at the gRPC edge, and nowhere upstream.

use osprey_engine::output::Alert;

use super::{Sink, SinkError};
use crate::server::agent::AgentStream;

pub struct StreamSink {
    stream: AgentStream,
}

impl StreamSink {
    pub fn new(stream: AgentStream) -> Self {
        Self { stream }
    }
}

impl Sink for StreamSink {
    fn name(&self) -> &'static str {
        "grpc"
    }

    /// Never waits: each subscriber and the push have their own bounded queue on the bus,
    /// and what they miss reaches them as a counted gap.
    fn write(&mut self, a: &Alert) -> Result<(), SinkError> {
        self.stream.publish(a);
        Ok(())
    }
}
