//! Where alerts go besides the gRPC stream: a JSON-lines file with rotation and a
//! Falco-shaped webhook. The alert itself and its rendering live in `osprey_engine::output`.

pub mod file;
pub mod webhook;
