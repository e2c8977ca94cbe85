//! `fd.sip.name`: the DNS names the loaded rules compare `fd.sip.name` with, resolved by the
//! host's resolver (getaddrinfo: /etc/hosts, then DNS, as nsswitch.conf says) and refreshed,
//! as Falco does for its rules' domain lists. A connection's server address then has the name
//! it resolved from. Bounded: at most [`MAX_NAMES`] names and [`MAX_ADDRS`] addresses each;
//! lookups run on their own thread, so a slow or absent DNS server never holds events up.

use std::{
    collections::{BTreeSet, HashMap},
    net::{IpAddr, ToSocketAddrs},
    sync::{Arc, Mutex, RwLock},
    time::Duration,
};

use osprey_engine::env::DnsNames;

/// Most names resolved; rule files naming more have the first ones (in name order) resolved.
pub const MAX_NAMES: usize = 4096;
/// Most addresses kept per name.
pub const MAX_ADDRS: usize = 64;
/// How often every name is looked up again.
pub const REFRESH: Duration = Duration::from_secs(30);

/// Address → name, shared between the resolver thread and the engine.
#[derive(Debug, Default)]
pub struct ResolvedNames {
    names: Mutex<Arc<BTreeSet<String>>>,
    by_ip: RwLock<HashMap<IpAddr, Arc<str>>>,
    wake: std::sync::Condvar,
}

impl DnsNames for ResolvedNames {
    fn name_of(&self, ip: IpAddr) -> Option<Arc<str>> {
        self.by_ip.read().ok()?.get(&ip).cloned()
    }
}

impl ResolvedNames {
    /// Starts resolving `names` on a thread of its own, now and every [`REFRESH`].
    pub fn spawn(names: BTreeSet<String>) -> std::io::Result<Arc<Self>> {
        let me = Arc::new(Self::default());
        me.set_names(names);
        let worker = me.clone();
        std::thread::Builder::new()
            .name("osprey-dns".into())
            .spawn(move || worker.run())?;
        Ok(me)
    }

    /// The names of a reloaded rule set; looked up at once.
    pub fn set_names(&self, names: BTreeSet<String>) {
        let names: BTreeSet<String> = names
            .into_iter()
            .filter(|n| !n.is_empty() && n.parse::<IpAddr>().is_err())
            .take(MAX_NAMES)
            .collect();
        if let Ok(mut cur) = self.names.lock() {
            *cur = Arc::new(names);
        }
        self.wake.notify_all();
    }

    fn run(&self) {
        loop {
            let names = match self.names.lock() {
                Ok(n) => n.clone(),
                Err(_) => return,
            };
            let map = resolve_all(&names);
            if let Ok(mut m) = self.by_ip.write() {
                *m = map;
            }
            let Ok(guard) = self.names.lock() else { return };
            // Sleep until the refresh, or until new names arrive.
            let _ = self
                .wake
                .wait_timeout_while(guard, REFRESH, |cur| Arc::ptr_eq(cur, &names));
        }
    }
}

fn resolve_all(names: &BTreeSet<String>) -> HashMap<IpAddr, Arc<str>> {
    let mut map = HashMap::new();
    for name in names {
        let Ok(addrs) = (name.as_str(), 0).to_socket_addrs() else {
            continue;
        };
        let name: Arc<str> = Arc::from(name.as_str());
        for a in addrs.take(MAX_ADDRS) {
            map.entry(a.ip()).or_insert_with(|| name.clone());
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `localhost` comes from /etc/hosts, without any DNS server.
    #[test]
    fn names_resolve_through_the_hosts_file() {
        let r = ResolvedNames::spawn(BTreeSet::from(["localhost".to_string(), "10.0.0.1".into()]))
            .unwrap();
        let lo = IpAddr::from([127, 0, 0, 1]);
        for _ in 0..100 {
            if r.name_of(lo).is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(r.name_of(lo).as_deref(), Some("localhost"));
        // Addresses written as addresses are not names.
        assert!(r.names.lock().unwrap().iter().all(|n| n == "localhost"));
    }
}
