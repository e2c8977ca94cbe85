//! An alert's `output_fields`, in the order Falco's JSON shows them.

use std::{ops::Index, sync::Arc};

use serde::{Serialize, Serializer, ser::SerializeMap};
use serde_json::Value;

/// Field name → typed value, in name order, each name once. The names of a rule's alerts are
/// shared with its compiled output ([`super::Format`]), which sorted them once: building an
/// alert's fields copies no name and sorts nothing.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct OutputFields(Vec<(Arc<str>, Value)>);

/// What [`Index`] gives for a name that is not there, as `serde_json::Map` does.
static NULL: Value = Value::Null;

impl OutputFields {
    /// Fields already in name order, each name once: what a compiled output builds.
    pub(crate) fn from_sorted(fields: Vec<(Arc<str>, Value)>) -> Self {
        debug_assert!(fields.is_sorted_by(|a, b| a.0 < b.0), "{fields:?}");
        Self(fields)
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.0.binary_search_by(|(k, _)| (**k).cmp(key))
    }

    pub fn get(&self, key: &str) -> Option<&Value> {
        self.find(key).ok().map(|i| &self.0[i].1)
    }

    pub fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    /// Sets `key` to `value` in its place by name; returns the value it replaces.
    pub fn insert(&mut self, key: Arc<str>, value: Value) -> Option<Value> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.0[i].1, value)),
            Err(i) => {
                self.0.insert(i, (key, value));
                None
            }
        }
    }

    /// The fields in name order.
    pub fn iter(&self) -> Iter<'_> {
        Iter(self.0.iter())
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Index<&str> for OutputFields {
    type Output = Value;

    /// The value of `key`, null when there is none.
    fn index(&self, key: &str) -> &Value {
        self.get(key).unwrap_or(&NULL)
    }
}

impl<K: Into<Arc<str>>> FromIterator<(K, Value)> for OutputFields {
    /// In name order; of a name given twice, the last value.
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Self {
        let mut fields = Self::default();
        for (k, v) in iter {
            fields.insert(k.into(), v);
        }
        fields
    }
}

/// [`OutputFields::iter`].
pub struct Iter<'a>(std::slice::Iter<'a, (Arc<str>, Value)>);

impl<'a> Iterator for Iter<'a> {
    type Item = (&'a str, &'a Value);

    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (&**k, v))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl ExactSizeIterator for Iter<'_> {}

impl<'a> IntoIterator for &'a OutputFields {
    type Item = (&'a str, &'a Value);
    type IntoIter = Iter<'a>;

    fn into_iter(self) -> Iter<'a> {
        self.iter()
    }
}

impl Serialize for OutputFields {
    /// A JSON object, in name order.
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(&**k, v)?;
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn keeps_name_order_and_one_value_per_name_as_falco_json_does() {
        let mut f: OutputFields = [
            ("proc.name", json!("cat")),
            ("evt.time", json!(7)),
            ("proc.name", json!("sh")),
        ]
        .into_iter()
        .collect();
        assert_eq!(f.insert("fd.name".into(), json!("/etc/shadow")), None);
        assert_eq!(f.insert("evt.time".into(), json!(8)), Some(json!(7)));
        assert_eq!(
            serde_json::to_string(&f).unwrap(),
            r#"{"evt.time":8,"fd.name":"/etc/shadow","proc.name":"sh"}"#
        );
        assert_eq!(f.len(), 3);
        assert_eq!(f["proc.name"], "sh");
        assert!(f["user.name"].is_null() && !f.contains_key("user.name"));
    }
}
