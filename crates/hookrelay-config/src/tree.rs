//! The YAML document as a tree of values that remember their line and column.
//!
//! The file is parsed once into [`Node`]s (with `serde_saphyr::Spanned`), so every later
//! problem, including the ones found long after parsing, can name its YAML path and line.
//! The typed model is then read from the tree converted to JSON values, one piece at a
//! time, so one bad endpoint does not hide the problems of the others.

use std::collections::BTreeMap;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::Value;
use serde_saphyr::Spanned;

use crate::error::{ConfigError, Pos};

/// A YAML value with the position of each of its parts.
#[derive(Debug, Clone)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Located>),
    Map(Vec<(Key, Located)>),
}

/// A node and where it is.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    pub(crate) node: Node,
    pub(crate) pos: Pos,
}

/// A mapping key (as text) and where it is.
#[derive(Debug, Clone)]
pub(crate) struct Key {
    pub(crate) text: String,
    pub(crate) pos: Pos,
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct NodeVisitor;
        impl<'de> Visitor<'de> for NodeVisitor {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E: de::Error>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Int(v.into()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
                Ok(Node::Int(v.into()))
            }
            fn visit_i128<E: de::Error>(self, v: i128) -> Result<Node, E> {
                Ok(Node::Int(v))
            }
            fn visit_u128<E: de::Error>(self, v: u128) -> Result<Node, E> {
                i128::try_from(v)
                    .map(Node::Int)
                    .map_err(|_| E::custom("integer too large"))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Float(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Str(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Node, E> {
                Ok(Node::Str(v))
            }
            fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<Node, E> {
                Ok(Node::Str(String::from_utf8_lossy(v).into_owned()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Node, A::Error> {
                let mut out = Vec::new();
                while let Some(item) = seq.next_element::<Spanned<Node>>()? {
                    out.push(Located::from(item));
                }
                Ok(Node::Seq(out))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<Spanned<Node>>()? {
                    let pos = Pos::from(key.referenced);
                    let text = match key.value {
                        Node::Str(s) => s,
                        Node::Int(i) => i.to_string(),
                        Node::Bool(b) => b.to_string(),
                        Node::Float(f) => f.to_string(),
                        Node::Null => String::new(),
                        Node::Seq(_) | Node::Map(_) => {
                            return Err(de::Error::custom(
                                "a mapping key must be a plain value, not a list or a mapping",
                            ));
                        }
                    };
                    let value = map.next_value::<Spanned<Node>>()?;
                    out.push((Key { text, pos }, Located::from(value)));
                }
                Ok(Node::Map(out))
            }
        }
        deserializer.deserialize_any(NodeVisitor)
    }
}

impl From<Spanned<Node>> for Located {
    fn from(s: Spanned<Node>) -> Self {
        Located {
            pos: Pos::from(s.referenced),
            node: s.value,
        }
    }
}

/// Parses YAML text into a located tree. An empty document is an empty mapping.
pub(crate) fn parse(text: &str) -> Result<Located, ConfigError> {
    if text.trim().is_empty() {
        return Ok(Located {
            node: Node::Map(Vec::new()),
            pos: Pos { line: 1, column: 1 },
        });
    }
    serde_saphyr::from_str::<Spanned<Node>>(text)
        .map(Located::from)
        .map_err(|e| {
            let pos = e.location().map(Pos::from);
            let mut message = plain_message(&e);
            let line = pos.and_then(|p| text.lines().nth(p.line.checked_sub(1)?));
            if line.is_some_and(|l| l.contains("${") && l.contains('{')) && message.contains("flow")
            {
                message.push_str(" (inside { } or [ ], quote references: \"${VAR}\")");
            }
            ConfigError::new("", message).at(pos)
        })
}

/// The parser's message without its snippet or its location suffix (we print those).
fn plain_message(e: &serde_saphyr::Error) -> String {
    let opts = serde_saphyr::render_options! { snippets: serde_saphyr::SnippetMode::Off };
    let text = e.without_snippet().render_with_options(opts);
    let first = text.lines().next().unwrap_or_default().trim();
    let first = match first.rfind(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    first.trim_end_matches(['.', ',']).to_owned()
}

/// Positions of every path in the tree (`endpoints[1].url`), for values and for keys.
#[derive(Debug, Default, Clone)]
pub(crate) struct Index {
    values: BTreeMap<String, Pos>,
    keys: BTreeMap<String, Pos>,
}

impl Index {
    /// Indexes every node of `root`.
    pub(crate) fn build(root: &Located) -> Self {
        let mut index = Index::default();
        index.walk("", root);
        index
    }

    fn walk(&mut self, path: &str, n: &Located) {
        self.values.insert(path.to_owned(), n.pos);
        match &n.node {
            Node::Seq(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.walk(&format!("{path}[{i}]"), item);
                }
            }
            Node::Map(entries) => {
                for (k, v) in entries {
                    let p = join(path, &k.text);
                    self.keys.insert(p.clone(), k.pos);
                    self.walk(&p, v);
                }
            }
            _ => {}
        }
    }

    /// Where the value at `path` is, or else its nearest ancestor that exists.
    pub(crate) fn value(&self, path: &str) -> Option<Pos> {
        let mut p = path;
        loop {
            if let Some(pos) = self.values.get(p) {
                return Some(*pos);
            }
            p = parent(p)?;
        }
    }

    /// Where the key of `path` is (for unknown keys), else where its value is.
    pub(crate) fn key(&self, path: &str) -> Option<Pos> {
        self.keys.get(path).copied().or_else(|| self.value(path))
    }
}

/// `parent.child`, or `child` at the root.
pub(crate) fn join(parent: &str, child: &str) -> String {
    if parent.is_empty() {
        child.to_owned()
    } else {
        format!("{parent}.{child}")
    }
}

fn parent(path: &str) -> Option<&str> {
    if path.is_empty() {
        return None;
    }
    let cut = path.rfind(['.', '[']).unwrap_or(0);
    Some(&path[..cut])
}

impl Located {
    /// The node as a JSON value (keys in file order).
    pub(crate) fn to_json(&self) -> Value {
        match &self.node {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => i64::try_from(*i)
                .map(Value::from)
                .or_else(|_| u64::try_from(*i).map(Value::from))
                .unwrap_or_else(|_| Value::String(i.to_string())),
            Node::Float(f) => serde_json::Number::from_f64(*f)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(f.to_string())),
            Node::Str(s) => Value::String(s.clone()),
            Node::Seq(items) => Value::Array(items.iter().map(Located::to_json).collect()),
            Node::Map(entries) => Value::Object(
                entries
                    .iter()
                    .map(|(k, v)| (k.text.clone(), v.to_json()))
                    .collect(),
            ),
        }
    }

    /// Applies `f` to every string scalar, with its path; `f` may replace the string.
    pub(crate) fn map_strings(
        &mut self,
        path: &str,
        f: &mut dyn FnMut(&str, &str, Pos) -> Option<String>,
    ) {
        let pos = self.pos;
        match &mut self.node {
            Node::Str(s) => {
                if let Some(new) = f(path, s, pos) {
                    *s = new;
                }
            }
            Node::Seq(items) => {
                for (i, item) in items.iter_mut().enumerate() {
                    item.map_strings(&format!("{path}[{i}]"), f);
                }
            }
            Node::Map(entries) => {
                for (k, v) in entries {
                    let p = join(path, &k.text);
                    v.map_strings(&p, f);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_of_values_and_keys() {
        let text = "listen: 0.0.0.0:8080\nendpoints:\n  - name: a\n    url: http://x\n  - name: b\n    bogus: 1\n";
        let root = parse(text).expect("parses");
        let ix = Index::build(&root);
        assert_eq!(ix.value("listen").map(|p| p.line), Some(1));
        assert_eq!(ix.value("endpoints[0].url").map(|p| p.line), Some(4));
        assert_eq!(
            ix.key("endpoints[1].bogus").map(|p| (p.line, p.column)),
            Some((6, 5))
        );
        // A missing path falls back to its nearest ancestor.
        assert_eq!(ix.value("endpoints[1].url").map(|p| p.line), Some(5));
    }

    #[test]
    fn syntax_errors_have_a_line() {
        let e = parse("a: [1, 2\nb: 3\n").expect_err("bad yaml");
        assert!(e.line.is_some(), "{e:?}");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let e = parse("a: 1\na: 2\n").expect_err("duplicate");
        assert_eq!(e.line, Some(2), "{e:?}");
    }

    #[test]
    fn scalars_keep_their_types() {
        let root = parse("a: 5\nb: \"5\"\nc: 10s\nd: true\ne: ~\n").expect("parses");
        let j = root.to_json();
        assert_eq!(j["a"], 5);
        assert_eq!(j["b"], "5");
        assert_eq!(j["c"], "10s");
        assert_eq!(j["d"], true);
        assert!(j["e"].is_null());
    }
}
