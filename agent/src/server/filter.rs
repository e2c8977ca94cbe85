//! A Subscribe request's include/exclude filters, compiled once per stream.

use regex::Regex;

use super::pb;

/// One `Filter` message, compiled: fields ANDed, each list ORed.
struct Part {
    min_priority: i32,
    rule: Vec<Regex>,
    tag: Vec<String>,
    node: Vec<String>,
    namespace: Vec<String>,
    pod: Vec<String>,
    container: Vec<String>,
    image: Vec<Regex>,
}

#[derive(Debug, thiserror::Error)]
#[error("bad glob {glob:?}: {source}")]
pub struct FilterError {
    glob: String,
    #[source]
    source: regex::Error,
}

/// A shell-style glob (`*`, `?`) as an anchored regex.
pub fn glob(g: &str) -> Result<Regex, FilterError> {
    let mut re = String::from("^");
    for c in g.chars() {
        match c {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            c => re.push_str(&regex::escape(&c.to_string())),
        }
    }
    re.push('$');
    Regex::new(&re).map_err(|source| FilterError {
        glob: g.into(),
        source,
    })
}

impl Part {
    fn compile(f: &pb::Filter) -> Result<Option<Part>, FilterError> {
        let p = Part {
            min_priority: f.min_priority,
            rule: f.rule.iter().map(|g| glob(g)).collect::<Result<_, _>>()?,
            tag: f.tag.clone(),
            node: f.node.clone(),
            namespace: f.namespace.clone(),
            pod: f.pod.clone(),
            container: f.container.clone(),
            image: f.image.iter().map(|g| glob(g)).collect::<Result<_, _>>()?,
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
            && (self.rule.is_empty() || self.rule.iter().any(|r| r.is_match(&a.rule)))
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
                        .any(|r| r.is_match(&c.image) || r.is_match(&c.image_repository))
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
}
