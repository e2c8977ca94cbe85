//! The hash maps the pipeline looks up for every event: processes and their ancestor chains,
//! descriptors, containers, the per-kind event counters.
//!
//! std's default hasher (SipHash-1-3) was about 7% of the agent's CPU per event in
//! `pipeline/hot_path_open_close`, for keys of four to sixteen bytes. foldhash hashes those in
//! a few multiplications. Like std's, it is seeded at random per process, so that a key set
//! that collides cannot be worked out ahead of time; and these keys are numbers the kernel
//! hands out (process ids, descriptors, cgroup ids, namespace inodes), which a workload can
//! steer only by spending a fork or an open per try.

use std::collections::{HashMap, HashSet};

/// A `HashMap` hashed with foldhash.
pub type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A `HashSet` hashed with foldhash.
pub type FastSet<K> = HashSet<K, foldhash::fast::RandomState>;
