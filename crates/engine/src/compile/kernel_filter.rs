//! What the kernel may pass over: the opens no loaded rule can match, and the mprotect, mmap,
//! pkey_mprotect and fcntl calls none can match on their argument and result
//! (`open_filter::CALLS`).
//!
//! At an open's exit the sensor knows, before it walks the path or builds a record, which
//! syscall it was, its flags and whether it succeeded: the open's *class*
//! (`agent_common::open_filter::class`). After the walk it knows the path the kernel resolved,
//! which is what `fd.name` is for a successful open. For each class this module decides, from
//! the candidates' conditions, whether some rule can match an open of that class at all, and
//! when every rule that can needs a particular path, which names the path's first component,
//! its directory's own name or its file name must have.
//!
//! Sound by construction: a condition is evaluated in three values (true, false, unknown),
//! where only what the class fixes is known (`evt.type`, `evt.is_open_read`/`write`, the
//! class's flags by name, `fd.num`, `evt.res`, `evt.rawres`, `evt.failed`, and
//! `evt.is_ia32` and `evt.is_ia32_from_64bit`, false for every call the kernel judges) and
//! every other check is unknown. A class is dropped only when every candidate's condition is false for it
//! whatever the unknown checks say; the path names come from checks every true evaluation
//! needs (the branches of an `or` united, one conjunct of an `and` chosen), so a path with none
//! of them makes the condition false. A check the derivation does not understand constrains
//! nothing: the filter then lets more through, never less. The tests replay opens of every
//! path the rules name under both rulesets and check that the filter passes every open a rule
//! matches.

use std::collections::BTreeSet;

use agent_common::open_filter::{self, ATOM_LEAF, ATOM_PARENT, ATOM_TOP, CLASSES, NAME_LEN};
use osprey_model::{
    process::base,
    syscalls::flags::{PROT_FLAGS, push_flag_names, push_open_flag_names},
};

use super::{
    Lhs, Node, NumOp, StrOp, Test,
    prefilter::{glob_literal, glob_name, prefix_key, suffix_key},
};
use crate::fields::Val;

/// Names of one path component, as the kernel compares them (at most `NAME_LEN - 1` bytes).
pub type Names = BTreeSet<Box<[u8]>>;

/// Path component names, by component: an open passes when its path has one of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct PathKeys {
    /// The first component (`etc` of `/etc/pam.d/sshd`).
    pub top: Names,
    /// The directory's own name (`pam.d`); "" for a file right under the root.
    pub parent: Names,
    /// The file's name (`sshd`).
    pub leaf: Names,
}

impl PathKeys {
    fn one(atom: u8, names: Names) -> Self {
        let mut k = PathKeys::default();
        *k.atom_mut(atom) = names;
        k
    }

    fn atom_mut(&mut self, atom: u8) -> &mut Names {
        match atom {
            ATOM_TOP => &mut self.top,
            ATOM_PARENT => &mut self.parent,
            _ => &mut self.leaf,
        }
    }

    /// The components and their names, for the kernel's key map.
    pub fn atoms(&self) -> [(u8, &Names); 3] {
        [
            (ATOM_TOP, &self.top),
            (ATOM_PARENT, &self.parent),
            (ATOM_LEAF, &self.leaf),
        ]
    }

    fn len(&self) -> usize {
        self.top.len() + self.parent.len() + self.leaf.len()
    }

    /// How much of a file system the names admit, roughly: a first component all below it, a
    /// directory name one level of files, a file name those files alone. An `and` keeps the
    /// narrower side.
    fn breadth(&self) -> usize {
        1000 * self.top.len() + 30 * self.parent.len() + self.leaf.len()
    }

    /// The one component this constrains, if only one.
    fn single_atom(&self) -> Option<u8> {
        let mut used = self.atoms().into_iter().filter(|(_, n)| !n.is_empty());
        match (used.next(), used.next()) {
            (Some((a, _)), None) => Some(a),
            _ => None,
        }
    }

    /// Whether a path with these components has one of the names (the kernel's check).
    pub fn admits(&self, top: &[u8], parent: &[u8], leaf: &[u8]) -> bool {
        self.top.contains(&key_name(top))
            || self.parent.contains(&key_name(parent))
            || self.leaf.contains(&key_name(leaf))
    }
}

/// A name as the kernel compares it: its first `NAME_LEN - 1` bytes.
pub fn key_name(name: &[u8]) -> Box<[u8]> {
    name[..name.len().min(NAME_LEN - 1)].into()
}

/// What must hold of a successful open's path for a condition to be true.
#[derive(Clone, Debug, PartialEq)]
enum Need {
    /// Nothing known: any path.
    Any,
    /// One of these names; none at all when the condition cannot be true.
    Keys(PathKeys),
}

impl Need {
    fn none() -> Self {
        Need::Keys(PathKeys::default())
    }

    fn names(atom: u8, texts: impl IntoIterator<Item = impl AsRef<str>>) -> Self {
        let mut names = Names::new();
        for t in texts {
            let t = t.as_ref();
            // A component that is not UTF-8 reads with U+FFFD in `fd.name`: such a name
            // could equal a key with U+FFFD in it, and the kernel compares the raw bytes.
            if t.contains('\u{fffd}') {
                return Need::Any;
            }
            names.insert(key_name(t.as_bytes()));
        }
        Need::Keys(PathKeys::one(atom, names))
    }

    /// Either holds.
    fn or(self, other: Need) -> Need {
        match (self, other) {
            (Need::Keys(mut a), Need::Keys(b)) => {
                a.top.extend(b.top);
                a.parent.extend(b.parent);
                a.leaf.extend(b.leaf);
                Need::Keys(a)
            }
            _ => Need::Any,
        }
    }

    /// Both hold: intersected when both name the same one component, else the narrower.
    fn and(self, other: Need) -> Need {
        match (self, other) {
            (Need::Any, n) | (n, Need::Any) => n,
            (Need::Keys(a), Need::Keys(b)) => {
                if a.len() == 0 || b.len() == 0 {
                    return Need::none();
                }
                match (a.single_atom(), b.single_atom()) {
                    (Some(x), Some(y)) if x == y => {
                        let mut a = a;
                        let b_names = b.atoms()[x as usize].1.clone();
                        a.atom_mut(x).retain(|n| b_names.contains(n));
                        Need::Keys(a)
                    }
                    _ if b.breadth() < a.breadth() => Need::Keys(b),
                    _ => Need::Keys(a),
                }
            }
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tri {
    True,
    False,
    Unknown,
}

impl Tri {
    fn of(b: bool) -> Self {
        if b { Tri::True } else { Tri::False }
    }
}

/// What one class of one open or call fixes.
struct Known<'t> {
    ty: &'t str,
    ok: bool,
    what: What,
}

/// What a class fixes besides the syscall and its success.
enum What {
    Open {
        flags: u64,
        /// The flag names the decoder gives `flags`.
        names: Vec<std::borrow::Cow<'static, str>>,
    },
    /// mprotect, mmap, pkey_mprotect: PROT_READ, PROT_WRITE, PROT_EXEC as they are (other
    /// bits unknown).
    Prot {
        prot: u64,
        names: Vec<std::borrow::Cow<'static, str>>,
    },
    /// fcntl: the command when it is one of `FCNTL_CMDS` (else another one), and whether a
    /// success returned 0, 1 or 2.
    Fcntl {
        cmd: Option<(u32, &'static str)>,
        stdio: bool,
    },
}

/// The access-mode names, by `flags & 3`.
const ACCESS: [&str; 4] = ["O_RDONLY", "O_WRONLY", "O_RDWR", "O_RDWR"];
/// Flag names whose presence the class decides.
const DECIDED: [&str; 7] = [
    "O_CREAT",
    "O_EXCL",
    "O_TRUNC",
    "O_APPEND",
    "O_DIRECTORY",
    "O_TMPFILE",
    "O_PATH",
];
/// Protection names an mprotect class decides.
const PROT_DECIDED: [&str; 3] = ["PROT_READ", "PROT_WRITE", "PROT_EXEC"];

impl<'t> Known<'t> {
    fn new(ty: &'t str, class: u32) -> Self {
        let flags = if ty == "creat" {
            open_filter::CREAT_FLAGS
        } else {
            open_filter::class_flags(class)
        };
        let mut names = Vec::new();
        push_open_flag_names(&mut names, flags);
        Self {
            ty,
            ok: class & 1 != 0,
            what: What::Open { flags, names },
        }
    }

    /// A class of call `ty` (one of `open_filter::CALLS`).
    fn call(ty: &'t str, class: u32) -> Self {
        let what = if ty != "fcntl" {
            let prot = u64::from(class >> 1) & 7;
            let mut names = Vec::new();
            push_flag_names(&mut names, prot, PROT_FLAGS);
            What::Prot { prot, names }
        } else {
            What::Fcntl {
                cmd: match (class >> 1) & 3 {
                    0 => None,
                    k => Some(open_filter::FCNTL_CMDS[k as usize - 1]),
                },
                stdio: class & open_filter::FCNTL_STDIO != 0,
            }
        };
        Self {
            ty,
            ok: class & 1 != 0,
            what,
        }
    }

    /// The check's result for every open or call of the class, if the class decides it.
    fn check(&self, lhs: &Lhs, any_ancestor: bool, test: &Test) -> Tri {
        let Lhs::Field(f) = lhs else {
            return Tri::Unknown;
        };
        if any_ancestor {
            return Tri::Unknown;
        }
        let fixed = |v: Val<'_>| test.eval_const(&v).map_or(Tri::Unknown, Tri::of);
        match f.name() {
            "evt.type" => return fixed(Val::Str(self.ty.into())),
            "evt.failed" => return fixed(Val::Bool(!self.ok)),
            // The kernel judges no call made through the 32-bit entry: it passes them all
            // (agent-ebpf syscall.rs), so none of the calls judged here is one.
            "evt.is_ia32" | "evt.is_ia32_from_64bit" => return fixed(Val::Bool(false)),
            "evt.res" if self.ok => return fixed(Val::Str("SUCCESS".into())),
            "evt.res" => {
                return match test {
                    Test::Str(StrOp::Eq, s) if &**s == "SUCCESS" => Tri::False,
                    Test::Str(StrOp::Ne, s) if &**s == "SUCCESS" => Tri::True,
                    _ => Tri::Unknown,
                };
            }
            // An argument the syscall does not have is unset, and a check on an unset field is
            // false (`evt.arg.newpath` on an open).
            "evt.arg" | "evt.rawarg" if !has_arg(self.ty, &f.arg) => return Tri::False,
            // A failure's result is -4095..-1 (the decoder's errno).
            "evt.rawres" if !self.ok => return range(test, -4095, -1),
            _ => {}
        }
        match &self.what {
            What::Open { flags, names } => {
                let acc = flags & 3;
                match f.name() {
                    "evt.is_open_read" => fixed(Val::Bool(matches!(acc, 0 | 2))),
                    "evt.is_open_write" => fixed(Val::Bool(matches!(acc, 1 | 2))),
                    // fd numbers and results of a success are 0..2^31; a failure's fd.num -1.
                    "fd.num" if !self.ok => fixed(Val::Num(-1)),
                    "fd.num" | "evt.rawres" => range(test, 0, i64::from(i32::MAX)),
                    // creat has no flags argument: its flags are fixed, not named by the event.
                    "evt.arg"
                        if self.ty != "creat"
                            && named(&f.arg, "flags")
                            && decided(test, &|n| ACCESS.contains(&n) || DECIDED.contains(&n)) =>
                    {
                        fixed(Val::Flags { raw: *flags, names })
                    }
                    _ => Tri::Unknown,
                }
            }
            What::Prot { prot, names } => match f.name() {
                "evt.rawres" => range(test, 0, 0),
                "evt.arg"
                    if named(&f.arg, "prot") && decided(test, &|n| PROT_DECIDED.contains(&n)) =>
                {
                    fixed(Val::Flags { raw: *prot, names })
                }
                _ => Tri::Unknown,
            },
            What::Fcntl { cmd, stdio } => match (f.name(), cmd) {
                ("evt.rawres", _) if *stdio => range(test, 0, 2),
                // Any other success: 3 and up, or a negative process group (F_GETOWN).
                ("evt.rawres", _) => both(range(test, 3, i64::MAX), range(test, i64::MIN, -4096)),
                ("evt.arg", Some((_, name))) if named(&f.arg, "cmd") => {
                    fixed(Val::Str((*name).into()))
                }
                ("evt.rawarg", Some((v, _))) if named(&f.arg, "cmd") => {
                    fixed(Val::Num(i64::from(*v)))
                }
                ("evt.arg", None) if named(&f.arg, "cmd") => other_command(test),
                _ => Tri::Unknown,
            },
        }
    }

    /// A condition's value for the class, and what it needs of the path to be true.
    fn eval(&self, node: &Node) -> (Tri, Need) {
        match node {
            Node::Const(b) => (Tri::of(*b), Need::Any),
            Node::Not(inner) => {
                let (t, _) = self.eval(inner);
                let t = match t {
                    Tri::True => Tri::False,
                    Tri::False => Tri::True,
                    Tri::Unknown => Tri::Unknown,
                };
                (
                    t,
                    if t == Tri::False {
                        Need::none()
                    } else {
                        Need::Any
                    },
                )
            }
            Node::And(v) => {
                let mut tri = Tri::True;
                let mut need = Need::Any;
                for n in v.iter() {
                    let (t, k) = self.eval(n);
                    match t {
                        Tri::False => return (Tri::False, Need::none()),
                        Tri::Unknown => tri = Tri::Unknown,
                        Tri::True => {}
                    }
                    need = need.and(k);
                }
                (tri, need)
            }
            Node::Or(v) => {
                let mut tri = Tri::False;
                let mut need = Need::none();
                for n in v.iter() {
                    let (t, k) = self.eval(n);
                    match t {
                        Tri::False => continue,
                        Tri::True => tri = Tri::True,
                        Tri::Unknown if tri == Tri::False => tri = Tri::Unknown,
                        Tri::Unknown => {}
                    }
                    need = need.or(k);
                }
                (tri, need)
            }
            Node::Check(c) => match self.check(&c.lhs, c.any_ancestor, &c.test) {
                Tri::False => (Tri::False, Need::none()),
                t => (t, path_need(&c.lhs, c.any_ancestor, &c.test)),
            },
        }
    }
}

/// The arguments of the filtered syscalls, by name, as the sensor decodes them (the agent's
/// tests hold its syscall table to this).
pub const OPEN_ARGS: [(&str, &[&str]); 3] = [
    ("open", &["filename", "flags", "mode"]),
    ("openat", &["dfd", "filename", "flags", "mode"]),
    ("creat", &["pathname", "mode"]),
];

/// Whether an `evt.arg` reference can name an argument of `ty` (by position: any).
pub(super) fn has_arg(ty: &str, arg: &crate::fields::FieldArg) -> bool {
    let Some((_, args)) = OPEN_ARGS.iter().find(|(t, _)| *t == ty) else {
        return true;
    };
    match arg {
        crate::fields::FieldArg::Name(n, aliases) => {
            args.contains(&&**n) || aliases.iter().any(|a| args.contains(a))
        }
        _ => true,
    }
}

/// `evt.arg.NAME` / `evt.arg[NAME]`.
fn named(arg: &crate::fields::FieldArg, name: &str) -> bool {
    matches!(arg, crate::fields::FieldArg::Name(n, _) if &**n == name)
}

/// A test on flags the class decides: `contains` of names `decides` accepts, through the list
/// modifiers.
fn decided(test: &Test, decides: &dyn Fn(&str) -> bool) -> bool {
    match test {
        Test::FlagOrStr(StrOp::Contains, n) => decides(n),
        Test::Any(ts) | Test::All(ts) | Test::One(ts) => ts.iter().all(|t| decided(t, decides)),
        _ => false,
    }
}

/// A numeric test on a value somewhere in `lo..=hi`.
fn range(test: &Test, lo: i64, hi: i64) -> Tri {
    match test {
        Test::Num(op, n) => {
            let n = *n;
            let (at_lo, at_hi) = (op.apply(lo, n), op.apply(hi, n));
            match op {
                // Monotone in the value: decided when both ends agree.
                NumOp::Lt | NumOp::Le | NumOp::Gt | NumOp::Ge if at_lo == at_hi => Tri::of(at_lo),
                NumOp::Eq | NumOp::Ne if n < lo || n > hi => Tri::of(*op == NumOp::Ne),
                NumOp::Eq | NumOp::Ne if lo == hi => Tri::of(at_lo),
                _ => Tri::Unknown,
            }
        }
        // `in (0, 1, 2)`: false when every item is outside, true for a one-value range in it.
        Test::NumIn(set) if set.iter().all(|n| *n < lo || *n > hi) => Tri::False,
        Test::NumIn(set) if lo == hi && set.contains(&lo) => Tri::True,
        _ => Tri::Unknown,
    }
}

/// A value that is in one of two ranges: decided when both decide alike.
fn both(a: Tri, b: Tri) -> Tri {
    if a == b { a } else { Tri::Unknown }
}

/// `evt.arg.cmd` of an fcntl whose command is none of `FCNTL_CMDS`. The decoder names the
/// commands of its table (F_GETFD, F_GETFL, F_SETFL) and shows any other as its number. A
/// test whose every text has a letter in it cannot tell one number from another, so it is
/// decided when it agrees on those three names and one number; any other test is unknown.
fn other_command(test: &Test) -> Tri {
    fn texts_only(t: &Test) -> bool {
        let lettered = |s: &str| s.bytes().any(|b| b.is_ascii_alphabetic());
        match t {
            Test::Str(_, s) | Test::FlagOrStr(_, s) => lettered(s),
            Test::StrIn(set) => set.iter().all(lettered),
            Test::Any(ts) | Test::All(ts) | Test::One(ts) => ts.iter().all(texts_only),
            _ => false,
        }
    }
    if !texts_only(test) {
        return Tri::Unknown;
    }
    let mut seen = None;
    for v in [
        Val::Str("F_GETFD".into()),
        Val::Str("F_GETFL".into()),
        Val::Str("F_SETFL".into()),
        Val::Num(5),
    ] {
        let Some(b) = test.eval_const(&v) else {
            return Tri::Unknown;
        };
        if seen.is_some_and(|s| s != b) {
            return Tri::Unknown;
        }
        seen = Some(b);
    }
    seen.map_or(Tri::Unknown, Tri::of)
}

/// The last component of every text ending with `suffix`, if the suffix holds one: a walked
/// path never ends with `/`, so an empty one pins nothing.
fn suffix_last(suffix: &str) -> Option<&str> {
    suffix_key(suffix).filter(|k| !k.is_empty())
}

/// What a check on the path needs of it, for a successful open whose `fd.name` is the path
/// the kernel walked (absolute, clean).
fn path_need(lhs: &Lhs, any_ancestor: bool, test: &Test) -> Need {
    let Lhs::Field(f) = lhs else {
        return Need::Any;
    };
    if any_ancestor {
        return Need::Any;
    }
    match f.name() {
        // An exact name pins the file name (`/etc/shadow`: `shadow`), the narrowest of the
        // three; a prefix pins the first component.
        "fd.name" => test_need(test, &|t| match t {
            Test::Str(StrOp::Eq, s) => Need::names(ATOM_LEAF, [base(s)]),
            Test::StrIn(set) => Need::names(ATOM_LEAF, set.iter().map(base)),
            Test::Str(StrOp::StartsWith, p) => {
                prefix_key(p).map_or(Need::Any, |k| Need::names(ATOM_TOP, [k]))
            }
            // `*` may match `/`, so only the text after a pattern's last `/`, when it is
            // literal, pins a component (the file name); else its literal prefix the first.
            Test::Glob(p) => match glob_name(p) {
                Some(name) if !name.is_empty() => Need::names(ATOM_LEAF, [name]),
                _ => prefix_key(glob_literal(p)).map_or(Need::Any, |k| Need::names(ATOM_TOP, [k])),
            },
            Test::PMatch(trie) => trie
                .first_components()
                .map_or(Need::Any, |ks| Need::names(ATOM_TOP, ks)),
            Test::Str(StrOp::EndsWith, s) => {
                suffix_last(s).map_or(Need::Any, |k| Need::names(ATOM_LEAF, [k]))
            }
            _ => Need::Any,
        }),
        // The directory of `/x` is `/`, whose last component is not the path's parent.
        "fd.directory" => test_need(test, &|t| match t {
            Test::Str(StrOp::Eq, d) if d.trim_start_matches('/').is_empty() => Need::Any,
            Test::Str(StrOp::Eq, d) => Need::names(ATOM_PARENT, [base(d)]),
            Test::StrIn(set) if set.iter().any(|d| d.trim_start_matches('/').is_empty()) => {
                Need::Any
            }
            Test::StrIn(set) => Need::names(ATOM_PARENT, set.iter().map(base)),
            Test::Str(StrOp::StartsWith, p) => {
                prefix_key(p).map_or(Need::Any, |k| Need::names(ATOM_TOP, [k]))
            }
            Test::Glob(p) => {
                prefix_key(glob_literal(p)).map_or(Need::Any, |k| Need::names(ATOM_TOP, [k]))
            }
            Test::PMatch(trie) => match trie.first_components() {
                Some(ks) => {
                    let ks: Vec<&str> = ks.collect();
                    if ks.iter().any(|k| k.is_empty()) {
                        Need::Any
                    } else {
                        Need::names(ATOM_TOP, ks)
                    }
                }
                None => Need::Any,
            },
            Test::Str(StrOp::EndsWith, s) => {
                suffix_last(s).map_or(Need::Any, |k| Need::names(ATOM_PARENT, [k]))
            }
            _ => Need::Any,
        }),
        "fd.filename" => test_need(test, &|t| match t {
            Test::Str(StrOp::Eq, s) => Need::names(ATOM_LEAF, [&**s]),
            Test::StrIn(set) => Need::names(ATOM_LEAF, set.iter()),
            _ => Need::Any,
        }),
        _ => Need::Any,
    }
}

/// `leaf` for a test, through the list modifiers: some item (anyof, oneof) or every item
/// (allof) passes.
fn test_need(test: &Test, leaf: &dyn Fn(&Test) -> Need) -> Need {
    match test {
        Test::Any(ts) | Test::One(ts) => ts
            .iter()
            .fold(Need::none(), |acc, t| acc.or(test_need(t, leaf))),
        Test::All(ts) => ts
            .iter()
            .fold(Need::Any, |acc, t| acc.and(test_need(t, leaf))),
        t => leaf(t),
    }
}

/// One class's verdict.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Some rule can match whatever the path: capture.
    Pass,
    /// No rule can match: pass over it.
    Drop,
    /// Capture when the path has one of the names of this set (an index into
    /// [`KernelFilter::sets`]).
    Keys(usize),
}

/// The verdicts for every class of every filtered open syscall.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelFilter {
    /// By `open_filter::SYSCALLS` slot, then class.
    pub verdicts: Vec<Vec<Verdict>>,
    pub sets: Vec<PathKeys>,
    /// By `open_filter::CALLS` index, then class (`CALL_CLASSES`): whether the kernel
    /// captures the call.
    pub calls: Vec<Vec<bool>>,
}

impl KernelFilter {
    /// Passes everything (what the kernel does with no filter written).
    pub fn pass_all() -> Self {
        Self {
            verdicts: open_filter::SYSCALLS
                .iter()
                .map(|_| vec![Verdict::Pass; CLASSES as usize])
                .collect(),
            sets: Vec::new(),
            calls: open_filter::CALLS
                .iter()
                .map(|_| vec![true; open_filter::CALL_CLASSES as usize])
                .collect(),
        }
    }

    /// Captures the classes of `call` that `keep` accepts whatever the rules say (what the
    /// agent's own tables follow).
    pub fn capture_calls(&mut self, call: &str, keep: impl Fn(u32) -> bool) {
        if let Some(i) = open_filter::CALLS.iter().position(|c| *c == call) {
            for (class, v) in self.calls[i].iter_mut().enumerate() {
                *v |= keep(class as u32);
            }
        }
    }

    /// Whether the kernel captures `call` (one of `open_filter::CALLS`) that returned `ret`
    /// with its class argument `arg`; any other syscall: true.
    pub fn captures_call(&self, call: &str, ret: i64, arg: u64) -> bool {
        match open_filter::CALLS.iter().position(|c| *c == call) {
            Some(i) => self.calls[i][open_filter::call_class(i as u32, ret, arg) as usize],
            None => true,
        }
    }

    /// The filter for the conditions each syscall's events are judged by.
    pub fn derive<'n, C>(candidates: impl Fn(&str) -> C) -> Self
    where
        C: IntoIterator<Item = &'n Node>,
    {
        let mut sets: Vec<PathKeys> = Vec::new();
        let verdicts = open_filter::SYSCALLS
            .iter()
            .map(|ty| {
                let nodes: Vec<&Node> = candidates(ty).into_iter().collect();
                (0..CLASSES)
                    .map(|class| {
                        let known = Known::new(ty, class);
                        let mut need: Option<Need> = None;
                        for n in &nodes {
                            let (t, k) = known.eval(n);
                            if t != Tri::False {
                                need = Some(match need {
                                    Some(acc) => acc.or(k),
                                    None => k,
                                });
                            }
                        }
                        match need {
                            None => Verdict::Drop,
                            Some(Need::Keys(k)) if k.len() == 0 => Verdict::Drop,
                            // A failed open's fd.name is the path it asked for, not one the
                            // kernel walked.
                            Some(Need::Any) => Verdict::Pass,
                            Some(Need::Keys(_)) if !known.ok => Verdict::Pass,
                            Some(Need::Keys(k)) => {
                                let i = sets.iter().position(|s| *s == k).unwrap_or_else(|| {
                                    sets.push(k);
                                    sets.len() - 1
                                });
                                Verdict::Keys(i)
                            }
                        }
                    })
                    .collect()
            })
            .collect();
        // A call no candidate can match in a class is dropped; one checked on a path (fd.name
        // of an fcntl) is captured: the filter judges no path but an open's.
        let calls = open_filter::CALLS
            .iter()
            .map(|ty| {
                let nodes: Vec<&Node> = candidates(ty).into_iter().collect();
                (0..open_filter::CALL_CLASSES)
                    .map(|class| {
                        let known = Known::call(ty, class);
                        nodes.iter().any(|n| known.eval(n).0 != Tri::False)
                    })
                    .collect()
            })
            .collect();
        Self {
            verdicts,
            sets,
            calls,
        }
    }

    /// Whether the kernel captures an open of `syscall` that succeeded (`ok`) or not, with
    /// `flags`, whose walked path (absolute, clean) is `path`: the kernel's decision, for tests
    /// and for `osprey rules kernel-filter`.
    pub fn captures(&self, syscall: &str, ok: bool, flags: u64, path: &str) -> bool {
        let Some(slot) = open_filter::SYSCALLS.iter().position(|s| *s == syscall) else {
            return true;
        };
        let flags = if syscall == "creat" {
            open_filter::CREAT_FLAGS
        } else {
            flags
        };
        match &self.verdicts[slot][open_filter::class(ok, flags) as usize] {
            Verdict::Pass => true,
            Verdict::Drop => false,
            Verdict::Keys(i) => {
                let comps: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
                let top = comps.first().copied().unwrap_or("");
                let leaf = comps.last().copied().unwrap_or("");
                let parent = if comps.len() >= 2 {
                    comps[comps.len() - 2]
                } else {
                    ""
                };
                self.sets[*i].admits(top.as_bytes(), parent.as_bytes(), leaf.as_bytes())
            }
        }
    }

    /// How many classes of all opens and calls are dropped, keyed, passed.
    pub fn counts(&self) -> (usize, usize, usize) {
        let all = self.verdicts.iter().flatten();
        let calls = self.calls.iter().flatten();
        let drop = all.clone().filter(|v| **v == Verdict::Drop).count()
            + calls.clone().filter(|c| !**c).count();
        let keys = all
            .clone()
            .filter(|v| matches!(v, Verdict::Keys(_)))
            .count();
        (drop, keys, all.count() + calls.count() - drop - keys)
    }
}

#[cfg(test)]
#[path = "kernel_filter/tests.rs"]
mod tests;
