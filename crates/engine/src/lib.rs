//! The rule engine: judges [`Enriched`] events against a loaded [`Ruleset`].
//!
//! Pure code: it sees events and, through [`env`] traits, user names, container identity and
//! process groups; never aya, tonic or tokio, and no I/O. Rules are indexed by event type, so an event is only matched
//! against the rules that can fire on it.

pub mod compile;
pub mod env;
pub mod fields;
pub mod flood;
pub mod output;
pub mod profile;
pub mod rules;
#[cfg(any(test, feature = "testing"))]
pub mod testing;

use std::{
    cell::{Cell, RefCell},
    collections::{BTreeSet, HashMap},
    io::BufRead,
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use self::{
    env::{
        ContainerLookup, DnsNames, NoContainers, NoDnsNames, NoProcessGroups, NoUsers,
        ProcessGroups, UserResolver,
    },
    fields::{Ctx, EventCache, Services},
    flood::{FloodControl, KeyRef},
};
use osprey_model::{
    Priority,
    event::{Enriched, EventKind},
};

use crate::{
    output::{Alert, AlertEvent},
    rules::{Compiled, Rule, Ruleset},
};

/// Falco's `rule_matching`: stop at the first matching rule (Falco's default) or report all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RuleMatching {
    #[default]
    First,
    All,
}

/// How the engine runs.
#[derive(Clone)]
pub struct EngineOptions {
    /// `hostname` of alerts and `evt.hostname`.
    pub hostname: Arc<str>,
    /// Rules less severe than this are not evaluated (Falco's `priority`).
    pub min_priority: Priority,
    pub rule_matching: RuleMatching,
    pub users: Arc<dyn UserResolver>,
    pub containers: Arc<dyn ContainerLookup>,
    /// `proc.vpgid` and `proc.env` of live processes.
    pub process_groups: Arc<dyn ProcessGroups>,
    /// `fd.sip.name`: names of the server addresses the rules ask about.
    pub dns: Arc<dyn DnsNames>,
}

impl Default for EngineOptions {
    /// No host lookups at all: empty hostname, no user names, no containers.
    fn default() -> Self {
        Self {
            hostname: Arc::from(""),
            min_priority: Priority::Debug,
            rule_matching: RuleMatching::First,
            users: Arc::new(NoUsers),
            containers: Arc::new(NoContainers),
            process_groups: Arc::new(NoProcessGroups),
            dns: Arc::new(NoDnsNames),
        }
    }
}

/// Which syscalls the enabled rules need: what the kernel interest filter lets through.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyscallInterest {
    /// Some rule has no event-type restriction: every syscall.
    All,
    Only(BTreeSet<String>),
}

impl SyscallInterest {
    pub fn contains(&self, syscall: &str) -> bool {
        match self {
            SyscallInterest::All => true,
            SyscallInterest::Only(s) => s.contains(syscall),
        }
    }
}

struct Active {
    rule: usize,
    /// The rule's name, source and tags, as its alerts share them.
    name: Arc<str>,
    source: Arc<str>,
    tags: Arc<[String]>,
    compiled: Arc<Compiled>,
    /// The output's fields that flood control keys by ([`flood::target_field`]), as indices
    /// into its fields, in name order: the order it hashes a rendered alert's in.
    targets: Box<[usize]>,
}

impl Active {
    /// The flood-control key of a match of `rule` (this entry's), from the event and the
    /// output's target fields alone: the key [`FloodControl::admit`] finds in the rendered
    /// alert.
    fn flood_key<'k, 'c: 'k>(
        &self,
        rule: &'k Rule,
        ctx: &Ctx<'c>,
        flood: &FloodControl,
    ) -> KeyRef<'k> {
        let mut target = flood.target_hasher();
        for &field in &self.targets {
            let (name, value) = self.compiled.output.field(field, ctx);
            target.field_val(name, value.as_ref());
        }
        KeyRef {
            rule: &rule.name,
            container: ctx.container().map_or("", |c| &c.id),
            pid: ctx.en.event.tgid,
            target: target.finish(),
        }
    }
}

/// A rule the event-type index offers for one type.
struct Candidate {
    /// Index into `active`.
    active: u32,
    /// The rule's condition specialized to the type (see [`compile::Node::specialize`]),
    /// its shared checks numbered (see [`compile::Node::share_checks`]).
    matcher: compile::Node,
}

/// The rules the index offers for one type, and what narrows them per event.
#[derive(Default)]
struct Candidates {
    list: Box<[Candidate]>,
    /// Each candidate's matcher as the program that judges it, in the order of `list`.
    programs: Box<[compile::Program]>,
    prefilter: compile::Prefilter,
}

impl Candidates {
    /// From candidates whose shared checks are numbered.
    fn new(list: Box<[Candidate]>) -> Self {
        let prefilter = compile::Prefilter::new(list.iter().map(|c| &c.matcher));
        let programs = list
            .iter()
            .map(|c| compile::Program::new(&c.matcher))
            .collect();
        Self {
            list,
            programs,
            prefilter,
        }
    }
}

thread_local! {
    /// The per-event results of shared checks, reused from event to event.
    static MEMO: RefCell<Vec<Cell<u8>>> = const { RefCell::new(Vec::new()) };
}

pub struct Engine {
    ruleset: Ruleset,
    active: Vec<Active>,
    /// Event type → rules in rule order (rules without types included).
    by_type: HashMap<Box<str>, Candidates, compile::FastBuild>,
    /// Rules without an event-type restriction.
    any_type: Candidates,
    /// How many checks the candidates share (slots of [`Ctx::memo`]).
    memo_slots: usize,
    opts: EngineOptions,
    evt_num: AtomicU64,
    /// Alerts built so far: what the flood-control tests count.
    #[cfg(test)]
    rendered: AtomicU64,
}

/// A replay input line that is not an event.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("reading the recording: {0}")]
    Io(#[from] std::io::Error),
    #[error("line {line}: not a recorded event: {source}")]
    Parse {
        line: usize,
        source: serde_json::Error,
    },
}

impl Engine {
    pub fn new(ruleset: Ruleset, opts: EngineOptions) -> Self {
        let mut active = Vec::new();
        for (i, r) in ruleset.rules.iter().enumerate() {
            if let Some(c) = &r.compiled
                && r.enabled
                && r.priority <= opts.min_priority
            {
                let mut targets: Vec<(&str, usize)> = c
                    .output
                    .field_names()
                    .enumerate()
                    .filter(|(_, name)| flood::target_field(name))
                    .map(|(i, name)| (name, i))
                    .collect();
                targets.sort_unstable();
                active.push(Active {
                    rule: i,
                    name: r.name.as_str().into(),
                    source: r.source.as_str().into(),
                    tags: r.tags.as_slice().into(),
                    compiled: c.clone(),
                    targets: targets.into_iter().map(|(_, i)| i).collect(),
                });
            }
        }
        let mut by_type: HashMap<Box<str>, Vec<u32>> = HashMap::new();
        let mut any_type = Vec::new();
        for (ai, a) in active.iter().enumerate() {
            match &ruleset.rules[a.rule].evttypes {
                Some(types) => {
                    for t in types {
                        by_type
                            .entry(t.as_str().into())
                            .or_default()
                            .push(ai as u32);
                    }
                }
                None => any_type.push(ai as u32),
            }
        }
        let mut by_type = by_type
            .into_iter()
            .map(|(k, mut v)| {
                v.extend(&any_type);
                v.sort_unstable();
                v.dedup();
                let cands: Box<[Candidate]> = v
                    .into_iter()
                    .map(|ai| {
                        let own = &active[ai as usize].compiled.matcher;
                        Candidate {
                            active: ai,
                            matcher: own.specialize(&k).unwrap_or_else(|| own.clone()),
                        }
                    })
                    .collect();
                (k, cands)
            })
            .collect::<HashMap<_, _, compile::FastBuild>>();
        let mut any_type: Box<[Candidate]> = any_type
            .into_iter()
            .map(|ai| Candidate {
                active: ai,
                matcher: active[ai as usize].compiled.matcher.clone(),
            })
            .collect();
        let memo_slots = compile::Node::share_checks(
            by_type
                .values_mut()
                .flat_map(|c| c.iter_mut())
                .chain(any_type.iter_mut())
                .map(|c| &mut c.matcher),
        );
        let by_type = by_type
            .into_iter()
            .map(|(k, list)| (k, Candidates::new(list)))
            .collect();
        Self {
            ruleset,
            active,
            by_type,
            any_type: Candidates::new(any_type),
            memo_slots,
            opts,
            evt_num: AtomicU64::new(0),
            #[cfg(test)]
            rendered: AtomicU64::new(0),
        }
    }

    /// Every loaded rule, enabled or not, in definition order (`osprey rules list`).
    pub fn rules(&self) -> &[Rule] {
        &self.ruleset.rules
    }

    pub fn ruleset(&self) -> &Ruleset {
        &self.ruleset
    }

    /// The syscall names the active rules can match.
    /// The DNS names the enabled rules compare `fd.sip.name` with (`=`, `!=`, `in`): what the
    /// host resolves for [`EngineOptions::dns`], as Falco resolves the names in its rules.
    pub fn dns_names(&self) -> std::collections::BTreeSet<String> {
        let mut out = std::collections::BTreeSet::new();
        for r in self.rules() {
            if let Some(c) = &r.compiled {
                c.matcher.literals_of("fd.sip.name", &mut out);
            }
        }
        out
    }

    pub fn syscall_interest(&self) -> SyscallInterest {
        if !self.any_type.list.is_empty() {
            return SyscallInterest::All;
        }
        SyscallInterest::Only(
            self.by_type
                .keys()
                .filter(|k| &***k != "procexit")
                .map(|k| k.to_string())
                .collect(),
        )
    }

    /// Which opens the kernel may pass over: those no active rule can match
    /// (see [`compile::KernelFilter`]).
    pub fn kernel_filter(&self) -> compile::KernelFilter {
        compile::KernelFilter::derive(|ty| {
            self.by_type
                .get(ty)
                .unwrap_or(&self.any_type)
                .list
                .iter()
                .map(|c| &c.matcher)
        })
    }

    /// What field extraction asks the host, from the engine's options.
    fn services(&self) -> Services<'_> {
        Services {
            users: &*self.opts.users,
            containers: &*self.opts.containers,
            process_groups: &*self.opts.process_groups,
            dns: &*self.opts.dns,
            hostname: &self.opts.hostname,
        }
    }

    /// Judges one event. Exec and fork events only feed the process table: a successful
    /// execve arrives as its own syscall event. Profile verdicts are judged by their profile
    /// (`crate::profile::alert`), not by rules.
    pub fn evaluate(&self, en: &Enriched) -> Vec<Alert> {
        self.evaluate_with(en, None)
    }

    /// [`Self::evaluate`] through flood control: the alerts to emit now, as
    /// [`FloodControl::admit`] of each of `evaluate`'s alerts would give them (a summary of a
    /// window this event closes comes before the alert). A match flood control suppresses is
    /// not rendered, except the first of a window, the template of its summary.
    pub fn evaluate_gated(&self, en: &Enriched, flood: &mut FloodControl) -> Vec<Alert> {
        self.evaluate_with(en, Some(flood).filter(|f| f.enabled()))
    }

    fn evaluate_with(&self, en: &Enriched, flood: Option<&mut FloodControl>) -> Vec<Alert> {
        let ty: &str = match &en.event.kind {
            EventKind::Syscall(sc) => &sc.name,
            EventKind::Exit(_) => "procexit",
            EventKind::Exec(_) | EventKind::Fork(_) | EventKind::Profile(_) => return Vec::new(),
        };
        let candidates = self.by_type.get(ty).unwrap_or(&self.any_type);
        if candidates.list.is_empty() {
            return Vec::new();
        }
        let num = self.evt_num.fetch_add(1, Ordering::Relaxed) + 1;
        let svc = self.services();
        let judge = |memo: &[Cell<u8>]| {
            let cache = EventCache::default();
            let ctx = Ctx::new(en, num, &svc, &cache).with_memo(memo);
            self.judge(&ctx, candidates, ty, flood)
        };
        MEMO.with(|m| match m.try_borrow_mut() {
            Ok(mut memo) => {
                memo.clear();
                memo.resize_with(self.memo_slots, Cell::default);
                judge(&memo)
            }
            // Only if a lookup ever judged an event from within one.
            Err(_) => judge(&vec![Cell::new(0); self.memo_slots]),
        })
    }

    /// The alerts of the candidate rules that match, through `flood` when it is on.
    fn judge(
        &self,
        ctx: &Ctx<'_>,
        candidates: &Candidates,
        ty: &str,
        mut flood: Option<&mut FloodControl>,
    ) -> Vec<Alert> {
        let mut out = Vec::new();
        candidates.prefilter.for_each_possible(ctx, |i| {
            let cand = &candidates.list[i];
            if !candidates.programs[i].eval(ctx) {
                return true;
            }
            let a = &self.active[cand.active as usize];
            let rule = &self.ruleset.rules[a.rule];
            let render = || self.alert(a, rule.priority, ctx, ty);
            match flood.as_deref_mut() {
                Some(f) => {
                    let key = a.flood_key(rule, ctx, f);
                    let limit = f.limit(&rule.name, rule.priority);
                    f.admit_with(key, ctx.en.event.time, limit, render, &mut out);
                }
                None => out.push(render()),
            }
            self.opts.rule_matching == RuleMatching::All
        });
        out
    }

    fn alert(&self, a: &Active, priority: Priority, ctx: &Ctx<'_>, ty: &str) -> Alert {
        #[cfg(test)]
        self.rendered.fetch_add(1, Ordering::Relaxed);
        let output = &a.compiled.output;
        let values = output.values(ctx);
        let ev = &ctx.en.event;
        Alert {
            time: ev.time,
            rule: a.name.clone(),
            priority,
            source: a.source.clone(),
            tags: a.tags.clone(),
            output: output.render(&values),
            output_fields: output.json_fields(&values, ev.time),
            hostname: self.opts.hostname.clone(),
            event: AlertEvent {
                evt_type: ty.to_string(),
                evt_num: ctx.evt_num,
                ts: ev.ts,
                pid: ev.tgid,
                tid: ev.tid,
                comm: ev.comm.clone(),
                container: ctx.container_arc(),
            },
        }
    }

    /// Runs a recording (JSON lines of [`Enriched`]) through the engine.
    pub fn replay<R: BufRead>(&self, reader: R) -> Result<Vec<Alert>, ReplayError> {
        let mut out = Vec::new();
        for (i, line) in reader.lines().enumerate() {
            let line = line?;
            if line.trim().is_empty() {
                continue;
            }
            let en: Enriched =
                serde_json::from_str(&line).map_err(|source| ReplayError::Parse {
                    line: i + 1,
                    source,
                })?;
            out.extend(self.evaluate(&en));
        }
        Ok(out)
    }
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod evasion_tests;

#[cfg(test)]
mod flood_tests;
