//! Alerts on standard output, Falco's text line or Falco's JSON: what `osprey run` prints and
//! what a DaemonSet's container log holds.

use std::io::{BufWriter, Stdout, Write};

use osprey_engine::output::{Alert, format_json, format_text};

use super::{Sink, SinkError};
use crate::config::Format;

pub struct StdoutSink {
    out: BufWriter<Stdout>,
    format: Format,
}

impl StdoutSink {
    pub fn new(format: Format) -> Self {
        Self {
            out: BufWriter::new(std::io::stdout()),
            format,
        }
    }
}

impl Sink for StdoutSink {
    fn name(&self) -> &'static str {
        "stdout"
    }

    fn write(&mut self, a: &Alert) -> Result<(), SinkError> {
        match self.format {
            Format::Json => writeln!(self.out, "{}", format_json(a))?,
            Format::Text => writeln!(self.out, "{}", format_text(a))?,
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), SinkError> {
        Ok(self.out.flush()?)
    }
}
