//! Output strings: `%field` interpolation (`libs:userspace/libsinsp/eventformatter.cpp`).

use std::sync::Arc;

use super::OutputFields;
use crate::{
    compile::{self, Lhs},
    fields::{Ctx, Val},
    rules::condition,
};

/// A compiled output string.
#[derive(Debug, Clone)]
pub struct Format {
    parts: Vec<Part>,
    /// The fields it shows, by the name written in the rule (`proc.aname[2]`,
    /// `toupper(user.name)`), each once, in order: JSON `output_fields` keys.
    fields: Vec<(String, Lhs)>,
    /// `output_fields`' names in name order, each with where its value comes from: what every
    /// alert of the output shares instead of copying and sorting its own.
    json: Box<[(Arc<str>, JsonValue)]>,
    /// What the rendered text is first given room for: the literal text and a typical field's
    /// worth per field, so that most alerts are rendered without growing their string.
    capacity: usize,
}

/// Room given to each field of a rendered output (a process name, a path, a command line
/// run longer and grow the string once).
const FIELD_ROOM: usize = 24;

/// A value of `output_fields`.
#[derive(Debug, Clone, Copy)]
enum JsonValue {
    /// The output's field of this index.
    Field(usize),
    /// `evt.time`, which Falco adds to every alert's fields: the event's wall-clock time, a
    /// number even where the output shows it as text.
    Time,
}

#[derive(Debug, Clone)]
enum Part {
    Lit(String),
    Field { field: usize, width: usize },
}

/// An output that does not compile: byte offset in the output and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatError {
    pub at: usize,
    pub message: String,
}

impl Format {
    pub fn compile(text: &str) -> Result<Self, FormatError> {
        // A folded YAML block (`output: >`) ends with a newline that is no part of the alert.
        let text = text.trim_end();
        // Falco's leading `*` ("print even if values are missing") is what Osprey always does.
        let (text, base) = match text.strip_prefix('*') {
            Some(t) => (t, 1),
            None => (text, 0),
        };
        let mut parts = Vec::new();
        let mut fields: Vec<(String, Lhs)> = Vec::new();
        let mut lit = String::new();
        let mut i = 0;
        let b = text.as_bytes();
        while i < b.len() {
            let Some(rel) = text[i..].find('%') else {
                lit.push_str(&text[i..]);
                break;
            };
            lit.push_str(&text[i..i + rel]);
            let pct = i + rel;
            i = pct + 1;
            if b.get(i) == Some(&b'%') {
                lit.push('%');
                i += 1;
                continue;
            }
            let digits = text[i..].bytes().take_while(u8::is_ascii_digit).count();
            let width = text[i..i + digits].parse().unwrap_or(0);
            let Some((fe, used)) = condition::parse_output_field(&text[i + digits..]) else {
                // A lone `%` (as in "100%") stays as text.
                lit.push('%');
                continue;
            };
            let lhs = compile::compile_lhs(&fe).map_err(|e| FormatError {
                at: base + pct,
                message: e.message,
            })?;
            let key = fe.to_string();
            let idx = match fields.iter().position(|(k, _)| *k == key) {
                Some(ix) => ix,
                None => {
                    fields.push((key, lhs));
                    fields.len() - 1
                }
            };
            if !lit.is_empty() {
                parts.push(Part::Lit(std::mem::take(&mut lit)));
            }
            parts.push(Part::Field { field: idx, width });
            i += digits + used;
        }
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        let capacity = parts
            .iter()
            .map(|p| match p {
                Part::Lit(s) => s.len(),
                Part::Field { width, .. } => (*width).max(FIELD_ROOM),
            })
            .sum();
        let mut json: Vec<(Arc<str>, JsonValue)> = fields
            .iter()
            .enumerate()
            .filter(|(_, (name, _))| name != "evt.time")
            .map(|(i, (name, _))| (name.as_str().into(), JsonValue::Field(i)))
            .chain([("evt.time".into(), JsonValue::Time)])
            .collect();
        json.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Ok(Self {
            parts,
            fields,
            json: json.into(),
            capacity,
        })
    }

    /// Extracts every field once.
    pub fn values<'a>(&self, ctx: &Ctx<'a>) -> Vec<Option<Val<'a>>> {
        self.fields.iter().map(|(_, l)| l.extract(ctx)).collect()
    }

    /// The name and value of the `i`th field alone (the order of [`Self::field_names`]).
    pub(crate) fn field<'a>(&self, i: usize, ctx: &Ctx<'a>) -> (&str, Option<Val<'a>>) {
        let (name, lhs) = &self.fields[i];
        (name, lhs.extract(ctx))
    }

    /// The output text, with `<NA>` for unset fields.
    pub fn render(&self, values: &[Option<Val<'_>>]) -> String {
        let mut out = String::with_capacity(self.capacity);
        for p in &self.parts {
            match p {
                Part::Lit(s) => out.push_str(s),
                Part::Field { field, width } => {
                    let v = values.get(*field).and_then(Option::as_ref);
                    let text = v.map_or(std::borrow::Cow::Borrowed("<NA>"), Val::text);
                    out.push_str(&text);
                    // Counted only for a field with a width (`%5proc.pid`), rare in rules.
                    if *width > 0 {
                        for _ in text.chars().count()..*width {
                            out.push(' ');
                        }
                    }
                }
            }
        }
        out
    }

    /// `output_fields`: field name → typed value, null when unset, and `evt.time`, the
    /// event's wall-clock time (`time`).
    pub fn json_fields(&self, values: &[Option<Val<'_>>], time: u64) -> OutputFields {
        let fields = self.json.iter().map(|(name, value)| {
            let value = match *value {
                JsonValue::Field(i) => values[i]
                    .as_ref()
                    .map_or(serde_json::Value::Null, Val::to_json),
                JsonValue::Time => time.into(),
            };
            (name.clone(), value)
        });
        OutputFields::from_sorted(fields.collect())
    }

    pub fn field_names(&self) -> impl Iterator<Item = &str> {
        self.fields.iter().map(|(k, _)| k.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_widths_and_literals() {
        let f =
            Format::compile("*a=%proc.name b=%5proc.pid c=%toupper(user.name) 100%% %proc.name. %")
                .unwrap();
        let names: Vec<_> = f.field_names().collect();
        assert_eq!(names, ["proc.name", "proc.pid", "toupper(user.name)"]);
        let vals = vec![Some(Val::Str("sh".into())), Some(Val::Num(42)), None];
        assert_eq!(f.render(&vals), "a=sh b=42    c=<NA> 100% sh. %");
        let json = f.json_fields(&vals, 7);
        assert_eq!(
            serde_json::to_string(&json).unwrap(),
            r#"{"evt.time":7,"proc.name":"sh","proc.pid":42,"toupper(user.name)":null}"#
        );
    }

    #[test]
    fn folded_yaml_newline_is_not_part_of_the_output() {
        let f = Format::compile("file=%fd.name\n").unwrap();
        assert_eq!(f.render(&[Some(Val::Str("/x".into()))]), "file=/x");
    }

    #[test]
    fn unknown_field_is_an_error_with_offset() {
        let e = Format::compile("x %proc.nobody").unwrap_err();
        assert_eq!(e.at, 2);
        assert!(e.message.contains("proc.nobody"));
    }
}
