//! A Subscribe request's include/exclude filters, checked once per stream: rule and image
//! patterns are globs (`osprey_model::glob`, the same matcher as the rule language's `glob`).
//! A filter is bounded in size, since it runs for every alert of every subscriber.

use osprey_model::glob::glob_match;

use super::pb;

/// Most values in one list of a filter (rules, tags, nodes, ...).
pub const MAX_FILTER_VALUES: usize = 64;
/// Longest pattern or value in a filter, in bytes.
pub const MAX_FILTER_VALUE_LEN: usize = 256;

/// One `Filter` message, compiled: fields ANDed, each list ORed.
struct Part {
    min_priority: i32,
    rule: Vec<String>,
    tag: Vec<String>,
    node: Vec<String>,
    namespace: Vec<String>,
    pod: Vec<String>,
    container: Vec<String>,
    image: Vec<String>,
}

/// A filter larger than a subscriber may ask for.
#[derive(Debug, thiserror::Error)]
pub enum FilterError {
    #[error("a filter's `{field}` lists {n} values; at most {MAX_FILTER_VALUES} are allowed")]
    TooMany { field: &'static str, n: usize },
    #[error(
        "a filter's `{field}` value is {n} bytes long; at most {MAX_FILTER_VALUE_LEN} are allowed"
    )]
    TooLong { field: &'static str, n: usize },
}

fn bounded(field: &'static str, v: &[String]) -> Result<Vec<String>, FilterError> {
    if v.len() > MAX_FILTER_VALUES {
        return Err(FilterError::TooMany { field, n: v.len() });
    }
    if let Some(long) = v.iter().find(|x| x.len() > MAX_FILTER_VALUE_LEN) {
        return Err(FilterError::TooLong {
            field,
            n: long.len(),
        });
    }
    Ok(v.to_vec())
}

impl Part {
    fn compile(f: &pb::Filter) -> Result<Option<Part>, FilterError> {
        let p = Part {
            min_priority: f.min_priority,
            rule: bounded("rule", &f.rule)?,
            tag: bounded("tag", &f.tag)?,
            node: bounded("node", &f.node)?,
            namespace: bounded("namespace", &f.namespace)?,
            pod: bounded("pod", &f.pod)?,
            container: bounded("container", &f.container)?,
            image: bounded("image", &f.image)?,
        };
        let empty = p.min_priority == 0
            && p.rule.is_empty()
            && p.tag.is_empty()
            && p.node.is_empty()
            && p.namespace.is_empty()
            && p.pod.is_empty()
            && p.container.is_empty()
            && p.image.is_empty();
        Ok((!empty).then_some(p))
    }

    fn matches(&self, a: &pb::Alert) -> bool {
        let any = |list: &[String], v: &str| list.is_empty() || list.iter().any(|x| x == v);
        let pod = a.pod.as_ref();
        let c = a.container.as_ref();
        a.priority >= self.min_priority
            && (self.rule.is_empty() || self.rule.iter().any(|r| glob_match(r, &a.rule)))
            && (self.tag.is_empty() || a.tags.iter().any(|t| self.tag.contains(t)))
            && any(&self.node, &a.node)
            && any(&self.namespace, pod.map_or("", |p| &p.namespace))
            && any(&self.pod, pod.map_or("", |p| &p.name))
            && (self.container.is_empty()
                || c.is_some_and(|c| {
                    self.container.iter().any(|x| {
                        (!c.id.is_empty() && c.id.starts_with(x.as_str()))
                            || (!c.full_id.is_empty() && c.full_id.starts_with(x.as_str()))
                            || c.name == *x
                    })
                }))
            && (self.image.is_empty()
                || c.is_some_and(|c| {
                    // The reference (`repo:tag`) or the repository alone.
                    self.image
                        .iter()
                        .any(|r| glob_match(r, &c.image) || glob_match(r, &c.image_repository))
                }))
    }
}

/// What a subscriber asked to see.
pub struct AlertFilter {
    include: Option<Part>,
    exclude: Option<Part>,
}

impl AlertFilter {
    pub fn compile(
        include: Option<&pb::Filter>,
        exclude: Option<&pb::Filter>,
    ) -> Result<Self, FilterError> {
        Ok(AlertFilter {
            include: include.map(Part::compile).transpose()?.flatten(),
            exclude: exclude.map(Part::compile).transpose()?.flatten(),
        })
    }

    pub fn matches(&self, a: &pb::Alert) -> bool {
        self.include.as_ref().is_none_or(|p| p.matches(a))
            && !self.exclude.as_ref().is_some_and(|p| p.matches(a))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alert(rule: &str, prio: pb::Priority, ns: &str, image: &str) -> pb::Alert {
        pb::Alert {
            rule: rule.into(),
            priority: prio as i32,
            node: "n1".into(),
            tags: vec!["mitre_execution".into()],
            pod: Some(pb::Pod {
                namespace: ns.into(),
                name: "web-1".into(),
                ..Default::default()
            }),
            container: Some(pb::Container {
                id: "ee97d9c4186f".into(),
                full_id: format!("ee97d9c4186f{}", "0".repeat(52)),
                name: "web".into(),
                image: format!("{image}:1.27"),
                image_repository: image.into(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn include_and_exclude_combine_as_documented() {
        let inc = pb::Filter {
            min_priority: pb::Priority::Warning as i32,
            rule: vec!["Read *".into()],
            ..Default::default()
        };
        let exc = pb::Filter {
            namespace: vec!["kube-system".into()],
            ..Default::default()
        };
        let f = AlertFilter::compile(Some(&inc), Some(&exc)).unwrap();
        let img = "docker.io/library/nginx";
        assert!(f.matches(&alert(
            "Read sensitive file",
            pb::Priority::Error,
            "prod",
            img
        )));
        assert!(!f.matches(&alert(
            "Read sensitive file",
            pb::Priority::Notice,
            "prod",
            img
        )));
        assert!(!f.matches(&alert("Write below etc", pb::Priority::Error, "prod", img)));
        assert!(!f.matches(&alert(
            "Read sensitive file",
            pb::Priority::Error,
            "kube-system",
            img
        )));
        // Empty filters match everything and exclude nothing.
        let all = AlertFilter::compile(Some(&pb::Filter::default()), Some(&pb::Filter::default()))
            .unwrap();
        assert!(all.matches(&alert("x", pb::Priority::Debug, "", "")));
        let by = |f: pb::Filter| AlertFilter::compile(Some(&f), None).unwrap();
        let a = alert("x", pb::Priority::Debug, "prod", img);
        assert!(
            by(pb::Filter {
                container: vec!["ee97".into()],
                ..Default::default()
            })
            .matches(&a)
        );
        assert!(
            by(pb::Filter {
                image: vec!["*/nginx".into()],
                ..Default::default()
            })
            .matches(&a)
        );
        assert!(
            !by(pb::Filter {
                image: vec!["*/redis".into()],
                ..Default::default()
            })
            .matches(&a)
        );
        assert!(
            by(pb::Filter {
                tag: vec!["mitre_execution".into()],
                ..Default::default()
            })
            .matches(&a)
        );
        assert!(
            !by(pb::Filter {
                node: vec!["n2".into()],
                ..Default::default()
            })
            .matches(&a)
        );
        assert!(
            by(pb::Filter {
                pod: vec!["web-1".into()],
                ..Default::default()
            })
            .matches(&a)
        );
    }

    #[test]
    fn oversized_filters_are_refused_with_what_is_too_big() {
        let many = pb::Filter {
            rule: (0..=MAX_FILTER_VALUES).map(|i| format!("r{i}")).collect(),
            ..Default::default()
        };
        let e = AlertFilter::compile(Some(&many), None)
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("`rule`") && e.contains("at most 64"), "{e}");
        let long = pb::Filter {
            image: vec!["*".repeat(MAX_FILTER_VALUE_LEN + 1)],
            ..Default::default()
        };
        let e = AlertFilter::compile(None, Some(&long))
            .err()
            .unwrap()
            .to_string();
        assert!(e.contains("`image`") && e.contains("at most 256"), "{e}");
    }
}
