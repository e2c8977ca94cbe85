//! Compiling: every enabled rule's expanded condition and output into matchers, once all
//! files are read (Falco's `rule_loader_compiler`, second half).

use std::collections::{HashMap, HashSet};

use super::{expand::*, *};

/// Most items a list may hold once the lists it names are spliced in. Lists that name each
/// other level after level grow geometrically; Falco's largest upstream list has a few hundred.
pub const MAX_LIST_ITEMS: usize = 100_000;

/// A list with the lists it names spliced in, each computed once; `None` past
/// [`MAX_LIST_ITEMS`], found without building more than that many items.
fn flatten(
    name: &str,
    by_name: &HashMap<&str, &ListDef>,
    stack: &mut Vec<String>,
    used: &mut HashSet<String>,
    memo: &mut HashMap<String, Option<Vec<String>>>,
) -> Option<Vec<String>> {
    if let Some(done) = memo.get(name) {
        return done.clone();
    }
    let l = by_name.get(name)?;
    stack.push(name.to_string());
    let mut out = Vec::new();
    let mut whole = true;
    for it in &l.items {
        if by_name.contains_key(it.as_str()) && !stack.contains(it) {
            used.insert(it.clone());
            match flatten(it, by_name, stack, used, memo) {
                Some(items) if out.len() + items.len() <= MAX_LIST_ITEMS => out.extend(items),
                _ => {
                    whole = false;
                    break;
                }
            }
        } else if out.len() < MAX_LIST_ITEMS {
            out.push(condition::unquote_item(it).0);
        } else {
            whole = false;
            break;
        }
    }
    stack.pop();
    let r = whole.then_some(out);
    memo.insert(name.to_string(), r.clone());
    r
}

impl Loader {
    pub(super) fn finish(mut self) -> LoadResult {
        let profiles = std::mem::take(&mut self.profiles).into_vec();
        // Lists: flatten references to other lists, unquote items.
        let mut flat: HashMap<&str, Vec<String>> = HashMap::new();
        let lists = std::mem::take(&mut self.lists).into_vec();
        let by_name: HashMap<&str, &ListDef> = lists.iter().map(|l| (l.name.as_str(), l)).collect();
        let mut used_lists: HashSet<String> = HashSet::new();
        let mut memo: HashMap<String, Option<Vec<String>>> = HashMap::new();
        for l in &lists {
            let items = match flatten(
                &l.name,
                &by_name,
                &mut Vec::new(),
                &mut used_lists,
                &mut memo,
            ) {
                Some(items) => items,
                None => {
                    self.diags.item(ListDef::KIND, &l.name, l.pos).error(
                        Code::ErrValidate,
                        format!(
                            "List '{}' expands to more than {MAX_LIST_ITEMS} items through the lists it names; refused",
                            l.name
                        ),
                    );
                    Vec::new()
                }
            };
            flat.insert(l.name.as_str(), items);
        }

        // Macros: parse each.
        let macros = std::mem::take(&mut self.macros).into_vec();
        let mut parsed: HashMap<&str, Result<Expr, (GPos, String)>> = HashMap::new();
        for m in &macros {
            let r = condition::parse(&m.cond.s).map(|mut e| {
                globalize(&mut e, &m.cond);
                e
            });
            if let Err(e) = &r {
                self.diags
                    .item(MacroDef::KIND, &m.name, m.pos)
                    .at_pos(m.cond.at(e.at))
                    .in_condition(&m.cond.s)
                    .error(Code::ErrCompileCondition, e.message.clone());
            }
            parsed.insert(m.name.as_str(), r.map_err(|e| (m.cond.at(e.at), e.message)));
        }

        let mut ex = Expander {
            lists: &flat,
            macros: &parsed,
            used_macros: HashSet::new(),
            used_lists,
            budget: MAX_EXPANDED_NODES,
        };
        let mut rules_out = Vec::new();
        let rules = std::mem::take(&mut self.rules).into_vec();
        for r in &rules {
            let rep = self.diags.item(RuleDef::KIND, &r.name, r.pos);
            let cond_text = r.cond.s.trim_end().to_string();
            let mut expr = match condition::parse(&r.cond.s) {
                Ok(mut e) => {
                    globalize(&mut e, &r.cond);
                    e
                }
                Err(e) => {
                    if r.enabled {
                        rep.at_pos(r.cond.at(e.at))
                            .in_condition(&cond_text)
                            .error(Code::ErrCompileCondition, e.message);
                    }
                    continue;
                }
            };
            let mut exc_err = None;
            let mut clauses = Vec::new();
            for e in &r.exceptions {
                match exception_expr(e) {
                    Ok(Some(x)) => clauses.push(x),
                    Ok(None) => {}
                    Err(er) => exc_err = Some(er),
                }
            }
            if let Some((at, msg)) = exc_err {
                rep.at_pos(at).error(Code::ErrValidate, msg);
                continue;
            }
            if !clauses.is_empty() {
                let not = Expr::Not(Box::new(if clauses.len() == 1 {
                    clauses.pop().unwrap_or(Expr::Or(Vec::new()))
                } else {
                    Expr::Or(clauses)
                }));
                expr = Expr::And(vec![expr, not]);
            }
            ex.budget = MAX_EXPANDED_NODES;
            let expanded = match ex.expand(&expr, &mut Vec::new()) {
                Ok(e) => e,
                Err((at, msg)) => {
                    if r.enabled {
                        rep.at_pos(at)
                            .in_condition(&cond_text)
                            .error(Code::ErrValidate, msg);
                    }
                    continue;
                }
            };
            if r.source != "syscall" {
                rep.warning(
                    Code::UnknownSource,
                    format!("Unknown source {}, skipping", r.source),
                );
                continue;
            }
            let mut lints = Vec::new();
            lint(&expanded, &mut lints);
            let types = evttypes(&expanded);
            let mut rule = Rule {
                name: r.name.clone(),
                desc: r.desc.trim_end().to_string(),
                condition: cond_text.clone(),
                output_text: r.output.s.trim_end().to_string(),
                priority: r.priority,
                tags: r.tags.clone(),
                source: r.source.clone(),
                enabled: r.enabled,
                evttypes: types.clone(),
                capture: r.capture,
                capture_duration: r.capture_duration,
                file: self.diags.position(r.pos),
                compiled: None,
            };
            if !r.enabled {
                rules_out.push(rule);
                continue;
            }
            for (code, at, msg) in lints {
                rep.at_pos(at).in_condition(&cond_text).warning(code, msg);
            }
            let matcher = match compile::compile(&expanded) {
                Ok(m) => m,
                Err(e) if e.unknown_field && r.skip_unknown => {
                    rep.at_pos(e.at).in_condition(&cond_text).warning(
                        Code::UnknownFilter,
                        format!(
                            "{}; the rule is skipped (skip-if-unknown-filter)",
                            e.message
                        ),
                    );
                    continue;
                }
                Err(e) => {
                    rep.at_pos(e.at)
                        .in_condition(&cond_text)
                        .error(Code::ErrCompileCondition, e.message);
                    continue;
                }
            };
            let output = match Format::compile(&r.output.s) {
                Ok(o) => o,
                Err(e) if r.skip_unknown => {
                    rep.at_pos(r.output.at(e.at)).warning(
                        Code::UnknownFilter,
                        format!(
                            "{}; the rule is skipped (skip-if-unknown-filter)",
                            e.message
                        ),
                    );
                    continue;
                }
                Err(e) => {
                    rep.at_pos(r.output.at(e.at))
                        .error(Code::ErrCompileOutput, e.message);
                    continue;
                }
            };
            if types.is_none() && r.warn_evttypes {
                rep.warning(Code::NoEvttype, "Rule matches too many evt.type values. This has a significant performance penalty.");
            }
            rule.compiled = Some(Arc::new(crate::rules::Compiled { matcher, output }));
            rules_out.push(rule);
        }
        let (used_macros, used_lists) = (ex.used_macros, ex.used_lists);
        for m in &macros {
            if !used_macros.contains(&m.name) {
                self.diags.item(MacroDef::KIND, &m.name, m.pos).warning(
                    Code::UnusedMacro,
                    format!("Macro '{}' not referred to by any other rule/macro", m.name),
                );
            }
        }
        for l in &lists {
            if !used_lists.contains(&l.name) {
                self.diags.item(ListDef::KIND, &l.name, l.pos).warning(
                    Code::UnusedList,
                    format!("List '{}' not referred to by any other rule/macro", l.name),
                );
            }
        }
        let ok = self.diags.ok();
        let ruleset = Ruleset {
            rules: if ok { rules_out } else { Vec::new() },
            macros: macros
                .iter()
                .map(|m| (m.name.clone(), m.cond.s.trim_end().to_string()))
                .collect(),
            lists: lists
                .iter()
                .map(|l| {
                    (
                        l.name.clone(),
                        flat.get(l.name.as_str()).cloned().unwrap_or_default(),
                    )
                })
                .collect(),
            required_engine_version: self.required_engine_version,
            profiles: if ok { profiles } else { Vec::new() },
        };
        LoadResult {
            ruleset,
            files: self.diags.into_results(),
        }
    }
}
