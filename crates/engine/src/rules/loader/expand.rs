//! Expansion: macros and lists into conditions, exceptions into conditions, and what the
//! expanded condition says about event types (Falco's `rule_loader_compiler`, first half).

use std::collections::{BTreeSet, HashMap, HashSet};

use super::*;

/// Moves every offset of a parsed expression from text-relative to global.
pub(super) fn globalize(e: &mut Expr, t: &Text) {
    fn field(f: &mut FieldExpr, t: &Text) {
        match f {
            FieldExpr::Field { at, .. } => *at = t.at(*at),
            FieldExpr::Transform { inner, at, .. } => {
                *at = t.at(*at);
                field(inner, t);
            }
        }
    }
    match e {
        Expr::And(v) | Expr::Or(v) => v.iter_mut().for_each(|x| globalize(x, t)),
        Expr::Not(x) => globalize(x, t),
        Expr::Ident { at, .. } => *at = t.at(*at),
        Expr::Check(c) => {
            c.at = t.at(c.at);
            field(&mut c.lhs, t);
            match &mut c.rhs {
                Rhs::None => {}
                Rhs::Value(v) => v.at = t.at(v.at),
                Rhs::List { items, at } => {
                    *at = t.at(*at);
                    for v in items {
                        v.at = t.at(v.at);
                    }
                }
                Rhs::ListRef { at, .. } => *at = t.at(*at),
                Rhs::Field(f) => field(f, t),
            }
        }
    }
}

/// Most nodes (operators, checks and list items) one rule's condition may have once its
/// macros and lists are expanded. Macros that use each other twice per level double at every
/// level; Falco's largest upstream rule expands to a few thousand.
pub const MAX_EXPANDED_NODES: usize = 200_000;

/// Expansion state: lists already flattened, macros parsed, what was used.
pub(super) struct Expander<'a> {
    pub(super) lists: &'a HashMap<&'a str, Vec<String>>,
    pub(super) macros: &'a HashMap<&'a str, Result<Expr, (GPos, String)>>,
    pub(super) used_macros: HashSet<String>,
    pub(super) used_lists: HashSet<String>,
    /// Nodes the current rule may still grow by; reset for each rule.
    pub(super) budget: usize,
}

impl Expander<'_> {
    /// Takes `n` nodes from the rule's budget; an error at `at` once it is spent.
    fn spend(&mut self, n: usize, at: GPos) -> Result<(), (GPos, String)> {
        match self.budget.checked_sub(n) {
            Some(left) => {
                self.budget = left;
                Ok(())
            }
            None => Err((
                at,
                format!(
                    "The condition expands to more than {MAX_EXPANDED_NODES} nodes through its \
                     macros and lists; refused"
                ),
            )),
        }
    }

    pub(super) fn expand(
        &mut self,
        e: &Expr,
        stack: &mut Vec<String>,
    ) -> Result<Expr, (GPos, String)> {
        self.spend(1, first_pos(e))?;
        Ok(match e {
            Expr::And(v) => Expr::And(
                v.iter()
                    .map(|x| self.expand(x, stack))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Or(v) => Expr::Or(
                v.iter()
                    .map(|x| self.expand(x, stack))
                    .collect::<Result<_, _>>()?,
            ),
            Expr::Not(x) => Expr::Not(Box::new(self.expand(x, stack)?)),
            Expr::Ident { name, at } => {
                let Some(m) = self.macros.get(name.as_str()) else {
                    return Err((*at, format!("Undefined macro '{name}' used in filter.")));
                };
                if stack.contains(name) {
                    return Err((
                        *at,
                        format!(
                            "Macro '{name}' is defined in terms of itself ({} -> {name})",
                            stack.join(" -> ")
                        ),
                    ));
                }
                self.used_macros.insert(name.clone());
                let m = match m {
                    Ok(m) => m,
                    Err((_, msg)) => {
                        return Err((*at, format!("Macro '{name}' does not compile: {msg}")));
                    }
                };
                stack.push(name.clone());
                let x = self.expand(m, stack)?;
                stack.pop();
                x
            }
            Expr::Check(c) => {
                let mut c: Check = (**c).clone();
                match &c.rhs {
                    Rhs::List { items, at } => {
                        let mut out = Vec::with_capacity(items.len());
                        for v in items {
                            match self.lists.get(v.text.as_str()).filter(|_| !v.quoted) {
                                Some(l) => {
                                    self.spend(l.len(), v.at)?;
                                    self.used_lists.insert(v.text.clone());
                                    out.extend(l.iter().map(|s| Value {
                                        text: s.clone(),
                                        quoted: true,
                                        at: v.at,
                                    }));
                                }
                                None => out.push(v.clone()),
                            }
                        }
                        c.rhs = Rhs::List {
                            items: out,
                            at: *at,
                        };
                    }
                    Rhs::ListRef { name, at } => match self.lists.get(name.as_str()) {
                        Some(l) => {
                            self.spend(l.len(), *at)?;
                            self.used_lists.insert(name.clone());
                            c.rhs = Rhs::List {
                                items: l
                                    .iter()
                                    .map(|s| Value {
                                        text: s.clone(),
                                        quoted: true,
                                        at: *at,
                                    })
                                    .collect(),
                                at: *at,
                            };
                        }
                        None => {
                            return Err((*at, format!("Undefined list '{name}' used in filter.")));
                        }
                    },
                    _ => {}
                }
                Expr::Check(Box::new(c))
            }
        })
    }
}

/// Event types a condition can match: None means any (Falco's analysis, conservative for `not`).
pub fn evttypes(e: &Expr) -> Option<BTreeSet<String>> {
    match e {
        Expr::And(v) => {
            let mut acc: Option<BTreeSet<String>> = None;
            for x in v {
                if let Some(s) = evttypes(x) {
                    acc = Some(match acc {
                        None => s,
                        Some(a) => a.intersection(&s).cloned().collect(),
                    });
                }
            }
            acc
        }
        Expr::Or(v) => {
            let mut acc = BTreeSet::new();
            for x in v {
                acc.extend(evttypes(x)?);
            }
            Some(acc)
        }
        Expr::Not(_) | Expr::Ident { .. } => None,
        Expr::Check(c) => {
            if !matches!(&c.lhs, FieldExpr::Field { name, arg: None, .. } if name == "evt.type") {
                return None;
            }
            match (&c.op, &c.rhs) {
                (Op::Eq, Rhs::Value(v)) => Some(BTreeSet::from([v.text.clone()])),
                (Op::In, Rhs::List { items, .. }) => {
                    Some(items.iter().map(|v| v.text.clone()).collect())
                }
                _ => None,
            }
        }
    }
}

/// Deprecated fields and unsafe `<NA>` comparisons, for warnings.
pub(super) fn lint(e: &Expr, out: &mut Vec<(Code, GPos, String)>) {
    match e {
        Expr::And(v) | Expr::Or(v) => v.iter().for_each(|x| lint(x, out)),
        Expr::Not(x) => lint(x, out),
        Expr::Ident { .. } => {}
        Expr::Check(c) => {
            let name = c.lhs.base_name();
            if name == "evt.dir" || name.starts_with("evt.latency") {
                out.push((
                    Code::DeprecatedItem,
                    c.lhs.at(),
                    format!("Field '{name}' is deprecated: Osprey only sees completed syscalls"),
                ));
            }
            if matches!(c.op, Op::Eq | Op::Ne)
                && let Rhs::Value(v) = &c.rhs
                && v.text == "<NA>"
            {
                out.push((Code::UnsafeNaCheck, v.at, "Comparing a field with <NA> is unsafe and may be removed; use 'exists' instead".into()));
            }
        }
    }
}

pub(super) fn exception_expr(e: &ExceptionDef) -> Result<Option<Expr>, (GPos, String)> {
    let at = e.pos;
    let parse_field = |f: &str| -> Result<FieldExpr, (GPos, String)> {
        let mut fe = condition::parse_field_expr(f).map_err(|er| {
            (
                at,
                format!(
                    "Exception '{}': invalid field '{f}': {}",
                    e.name, er.message
                ),
            )
        })?;
        fn set(f: &mut FieldExpr, at: usize) {
            match f {
                FieldExpr::Field { at: a, .. } => *a = at,
                FieldExpr::Transform { inner, at: a, .. } => {
                    *a = at;
                    set(inner, at);
                }
            }
        }
        set(&mut fe, at);
        Ok(fe)
    };
    let parse_comp = |c: &str| {
        condition::parse_op(c).map_err(|er| (at, format!("Exception '{}': {}", e.name, er.message)))
    };
    let rhs_for = |op: Op, v: &ExcValue| -> Rhs {
        match v {
            ExcValue::Many(items) => Rhs::List {
                items: items
                    .iter()
                    .map(|s| Value {
                        text: s.clone(),
                        quoted: false,
                        at,
                    })
                    .collect(),
                at,
            },
            ExcValue::One(s) if op.is_list() => {
                if condition::is_identifier(s) {
                    Rhs::List {
                        items: vec![Value {
                            text: s.clone(),
                            quoted: false,
                            at,
                        }],
                        at,
                    }
                } else {
                    Rhs::List {
                        items: vec![Value {
                            text: s.clone(),
                            quoted: true,
                            at,
                        }],
                        at,
                    }
                }
            }
            ExcValue::One(s) => Rhs::Value(Value {
                text: s.clone(),
                quoted: true,
                at,
            }),
        }
    };
    if e.values.is_empty() {
        return Ok(None);
    }
    let mut alts = Vec::new();
    if e.single {
        let field = parse_field(&e.fields[0])?;
        let (op, modifier) = parse_comp(e.comps.first().map_or("in", String::as_str))?;
        if !op.is_list() && modifier.is_none() {
            return Err((
                at,
                format!(
                    "Exception '{}': with a single field, comps must be in, pmatch or intersects",
                    e.name
                ),
            ));
        }
        let items: Vec<Value> = e
            .values
            .iter()
            .flat_map(|row| row.iter())
            .flat_map(|v| match v {
                ExcValue::One(s) => vec![s.clone()],
                ExcValue::Many(m) => m.clone(),
            })
            .map(|s| Value {
                quoted: !condition::is_identifier(&s),
                text: s,
                at,
            })
            .collect();
        alts.push(Expr::Check(Box::new(Check {
            lhs: field,
            op,
            modifier,
            rhs: Rhs::List { items, at },
            at,
        })));
    } else {
        if e.fields.is_empty() {
            return Err((
                at,
                format!("Exception '{}' has values but no fields", e.name),
            ));
        }
        let fields = e
            .fields
            .iter()
            .map(|f| parse_field(f))
            .collect::<Result<Vec<_>, _>>()?;
        let comps = if e.comps.is_empty() {
            vec![(Op::Eq, None); fields.len()]
        } else {
            e.comps
                .iter()
                .map(|c| parse_comp(c))
                .collect::<Result<Vec<_>, _>>()?
        };
        for row in &e.values {
            let checks: Vec<Expr> = fields
                .iter()
                .zip(&comps)
                .zip(row)
                .map(|((f, (op, m)), v)| {
                    let rhs = if m.is_some() {
                        match v {
                            ExcValue::Many(_) => rhs_for(Op::In, v),
                            ExcValue::One(s) => Rhs::List {
                                items: vec![Value {
                                    text: s.clone(),
                                    quoted: !condition::is_identifier(s),
                                    at,
                                }],
                                at,
                            },
                        }
                    } else {
                        rhs_for(*op, v)
                    };
                    Expr::Check(Box::new(Check {
                        lhs: f.clone(),
                        op: *op,
                        modifier: *m,
                        rhs,
                        at,
                    }))
                })
                .collect();
            alts.push(if checks.len() == 1 {
                checks.into_iter().next().unwrap_or(Expr::And(Vec::new()))
            } else {
                Expr::And(checks)
            });
        }
    }
    Ok(Some(if alts.len() == 1 {
        alts.pop().unwrap_or(Expr::Or(Vec::new()))
    } else {
        Expr::Or(alts)
    }))
}

/// Where an expression starts, for an error about all of it.
fn first_pos(e: &Expr) -> GPos {
    match e {
        Expr::And(v) | Expr::Or(v) => v.first().map_or(0, first_pos),
        Expr::Not(x) => first_pos(x),
        Expr::Check(c) => c.at,
        Expr::Ident { at, .. } => *at,
    }
}
