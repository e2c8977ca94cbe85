//! The field catalog (`osprey fields`) and field extraction from an [`Enriched`] event.
//!
//! Laid out as Falco's libsinsp keeps its filterchecks (`sinsp_filtercheck_event`, `_thread`,
//! `_user`, `_group`, `_fd`, `_container`, `_k8s`): one file per field class, each holding one
//! table whose [`FieldDef`]s carry a field's name, type, description and extractor together, so
//! that adding a field is one entry in one file. Names follow Falco's
//! (`libs:userspace/libsinsp/sinsp_filtercheck_*.cpp`).
//!
//! Rules reference a field by name once, at load time; evaluation calls the extractor of the
//! resolved [`FieldRef`] directly. Fields that Osprey defines but cannot derive yet (they need an
//! fd table, capabilities, overlayfs or the container runtime) are in the catalog so that rules
//! load, and read as unset.
//!
//! [`Enriched`]: osprey_model::event::Enriched

mod container;
mod ctx;
mod evt;
mod fd;
mod proc;
mod user;

#[cfg(test)]
mod tests;

use std::{borrow::Cow, fmt, net::IpAddr};

use serde::Serialize;

use osprey_model::time::format_time;

pub use ctx::{Ctx, EventCache, Services};
pub(crate) use fd::directory;

/// The type of a field, as `osprey fields` shows it (Falco's type names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum FieldType {
    Charbuf,
    Int64,
    Uint64,
    Uint32,
    Port,
    Bool,
    Ipaddr,
    Ipnet,
    Reltime,
    Abstime,
    /// An event argument: text, flags or a number depending on the syscall.
    Dynamic,
}

impl FieldType {
    pub fn as_str(self) -> &'static str {
        match self {
            FieldType::Charbuf => "CHARBUF",
            FieldType::Int64 => "INT64",
            FieldType::Uint64 => "UINT64",
            FieldType::Uint32 => "UINT32",
            FieldType::Port => "PORT",
            FieldType::Bool => "BOOL",
            FieldType::Ipaddr => "IPADDR",
            FieldType::Ipnet => "IPNET",
            FieldType::Reltime => "RELTIME",
            FieldType::Abstime => "ABSTIME",
            FieldType::Dynamic => "DYNAMIC",
        }
    }

    pub fn is_numeric(self) -> bool {
        matches!(
            self,
            FieldType::Int64
                | FieldType::Uint64
                | FieldType::Uint32
                | FieldType::Port
                | FieldType::Reltime
                | FieldType::Abstime
        )
    }
}

/// What a field takes between brackets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgSpec {
    None,
    /// `proc.aname[N]`: an optional ancestor index.
    Index,
    /// `evt.arg.NAME`, `evt.arg[NAME]` or `evt.arg[N]`.
    Name,
    /// `proc.env[NAME]`, `container.label[KEY]`: a required key.
    Key,
}

/// Reads one field of one event; None is unset. A plain function pointer rather than a trait
/// object or an id to match on: one indirect call per check, and the catalog stays a `static`.
pub type Extract = for<'a> fn(&Ctx<'a>, &FieldArg) -> Option<Val<'a>>;

/// One entry of the catalog: what `osprey fields` shows and how to read the field.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct FieldDef {
    pub name: &'static str,
    #[serde(rename = "type")]
    pub ty: FieldType,
    #[serde(skip)]
    pub arg: ArgSpec,
    pub desc: &'static str,
    /// Why the field is always unset for now, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unavailable: Option<&'static str>,
    /// Deprecated by Falco (warning `LOAD_DEPRECATED_ITEM`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub deprecated: bool,
    #[serde(skip)]
    pub extract: Extract,
}

/// Names are unique in the catalog (a test checks), so they identify a field; comparing the
/// extractors instead would depend on how the compiler merges functions.
impl PartialEq for FieldDef {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}

impl FieldDef {
    /// A field Osprey derives.
    pub const fn new(
        name: &'static str,
        ty: FieldType,
        desc: &'static str,
        extract: Extract,
    ) -> Self {
        FieldDef {
            name,
            ty,
            arg: ArgSpec::None,
            desc,
            unavailable: None,
            deprecated: false,
            extract,
        }
    }

    /// A field rules may name but that always reads as unset, and why.
    pub const fn unset(
        name: &'static str,
        ty: FieldType,
        desc: &'static str,
        why: &'static str,
    ) -> Self {
        FieldDef {
            unavailable: Some(why),
            ..FieldDef::new(name, ty, desc, unset_value)
        }
    }

    /// The field takes `arg` between brackets.
    pub const fn with_arg(self, arg: ArgSpec) -> Self {
        FieldDef { arg, ..self }
    }

    /// Falco deprecated the field: loading a rule that uses it warns.
    pub const fn deprecated(self) -> Self {
        FieldDef {
            deprecated: true,
            ..self
        }
    }
}

fn unset_value<'a>(_: &Ctx<'a>, _: &FieldArg) -> Option<Val<'a>> {
    None
}

/// Why some fields are unset, shared by the class tables.
mod why {
    pub const FD_TABLE: &str = "not kept by the fd table yet";
    pub const CAPS: &str = "only the effective and permitted sets are captured";
    pub const CONTAINER: &str = "not read from the container runtime yet";
    pub const NOT_CAPTURED: &str = "not captured by the sensor yet";
    pub const DNS: &str = "needs DNS name tracking";
}

/// The class tables in `osprey fields` order.
const CLASSES: [&[FieldDef]; 5] = [
    evt::FIELDS,
    proc::FIELDS,
    user::FIELDS,
    fd::FIELDS,
    container::FIELDS,
];

const COUNT: usize = {
    let mut n = 0;
    let mut c = 0;
    while c < CLASSES.len() {
        n += CLASSES[c].len();
        c += 1;
    }
    n
};

/// The class tables laid end to end at compile time, so that [`CATALOG`] stays one `static`
/// slice that [`FieldRef`]s point into.
const fn concat_classes() -> [FieldDef; COUNT] {
    let mut out = [CLASSES[0][0]; COUNT];
    let mut k = 0;
    let mut c = 0;
    while c < CLASSES.len() {
        let mut i = 0;
        while i < CLASSES[c].len() {
            out[k] = CLASSES[c][i];
            k += 1;
            i += 1;
        }
        c += 1;
    }
    out
}

static ALL: [FieldDef; COUNT] = concat_classes();

/// Every field Osprey knows, in `osprey fields` order.
pub static CATALOG: &[FieldDef] = &ALL;

/// A field resolved at load time.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldRef {
    pub def: &'static FieldDef,
    pub arg: FieldArg,
}

#[derive(Clone, Debug, PartialEq)]
pub enum FieldArg {
    None,
    Index(usize),
    /// An argument name with the kernel names it may go by (`evt.arg.target` is `oldname`).
    Name(Box<str>, &'static [&'static str]),
    Key(Box<str>),
}

impl FieldRef {
    /// The field's catalog name, which identifies it.
    pub fn name(&self) -> &'static str {
        self.def.name
    }

    pub fn ty(&self) -> FieldType {
        self.def.ty
    }

    /// `proc.aname` and friends without an index: true if any ancestor matches.
    pub fn is_any_ancestor(&self) -> bool {
        self.def.arg == ArgSpec::Index && self.arg == FieldArg::None
    }
}

/// Resolves `name` (and its bracket argument) against the catalog.
pub fn resolve(name: &str, arg: Option<&str>) -> Result<FieldRef, String> {
    let unknown = || format!("filter_check called with nonexistent field {name}");
    let (def, arg) = match CATALOG.iter().find(|d| d.name == name) {
        Some(d) => (d, arg.map(str::to_string)),
        None => {
            // evt.arg.NAME / evt.rawarg.NAME
            let (base, rest) = name
                .strip_prefix("evt.arg.")
                .map(|r| ("evt.arg", r))
                .or_else(|| name.strip_prefix("evt.rawarg.").map(|r| ("evt.rawarg", r)))
                .ok_or_else(unknown)?;
            if arg.is_some() {
                return Err(format!("field {name} does not take an argument"));
            }
            let def = CATALOG
                .iter()
                .find(|d| d.name == base)
                .ok_or_else(unknown)?;
            (def, Some(rest.to_string()))
        }
    };
    let arg = match (def.arg, arg) {
        (ArgSpec::None, None) => FieldArg::None,
        (ArgSpec::None, Some(_)) => return Err(format!("field {name} does not take an argument")),
        (ArgSpec::Index, None) => FieldArg::None,
        (ArgSpec::Index, Some(a)) => FieldArg::Index(
            a.parse()
                .map_err(|_| format!("field {name}: argument '{a}' is not an ancestor number"))?,
        ),
        (ArgSpec::Name, None) => {
            return Err(format!("field {name} needs an argument name or index"));
        }
        (ArgSpec::Name, Some(a)) => match a.parse::<usize>() {
            Ok(i) => FieldArg::Index(i),
            Err(_) => {
                let aliases = evt::arg_aliases(&a);
                FieldArg::Name(a.into(), aliases)
            }
        },
        (ArgSpec::Key, None) => FieldArg::None,
        (ArgSpec::Key, Some(a)) => FieldArg::Key(a.into()),
    };
    Ok(FieldRef { def, arg })
}

/// A field's value for one event.
#[derive(Clone, Debug, PartialEq)]
pub enum Val<'a> {
    Str(Cow<'a, str>),
    Num(i64),
    Bool(bool),
    Ip(IpAddr),
    /// Nanoseconds since the epoch.
    Time(u64),
    Flags {
        raw: u64,
        names: &'a [Cow<'static, str>],
    },
}

impl<'a> Val<'a> {
    /// Borrowed text, for extractors.
    fn str(s: &'a str) -> Option<Self> {
        Some(Val::Str(Cow::Borrowed(s)))
    }

    /// Text made for this event, for extractors.
    fn owned(s: String) -> Option<Self> {
        Some(Val::Str(Cow::Owned(s)))
    }

    /// Text that is unset when empty.
    fn nonempty(s: &'a str) -> Option<Self> {
        (!s.is_empty()).then_some(Val::Str(Cow::Borrowed(s)))
    }
}

impl Val<'_> {
    /// The text Falco shows for the value.
    #[inline]
    pub fn text(&self) -> Cow<'_, str> {
        match self {
            Val::Str(s) => Cow::Borrowed(s),
            Val::Num(n) => Cow::Owned(n.to_string()),
            Val::Bool(b) => Cow::Borrowed(if *b { "true" } else { "false" }),
            Val::Ip(ip) => Cow::Owned(ip.to_string()),
            Val::Time(t) => Cow::Owned(format_time(*t)),
            Val::Flags { names, raw } => {
                if names.is_empty() {
                    Cow::Owned(raw.to_string())
                } else {
                    Cow::Owned(names.join("|"))
                }
            }
        }
    }

    pub fn num(&self) -> Option<i64> {
        match self {
            Val::Num(n) => Some(*n),
            Val::Time(t) => i64::try_from(*t).ok(),
            Val::Bool(b) => Some(i64::from(*b)),
            Val::Flags { raw, .. } => Some(*raw as i64),
            Val::Str(s) => s.parse().ok(),
            Val::Ip(_) => None,
        }
    }

    /// The value for JSON `output_fields`: numbers stay numbers.
    pub fn to_json(&self) -> serde_json::Value {
        match self {
            Val::Num(n) => (*n).into(),
            Val::Time(t) => (*t).into(),
            Val::Bool(b) => (*b).into(),
            other => other.text().into_owned().into(),
        }
    }
}

impl fmt::Display for Val<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}
