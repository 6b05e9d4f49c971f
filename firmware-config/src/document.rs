//! Reads a TOML file into a raw config while collecting **every** problem, not just the
//! first one serde meets.
//!
//! serde stops at the first error. So the document is parsed once into toml's spanned
//! tree, then deserialised repeatedly: after each error, the offending key (unknown, or
//! with a value of the wrong type) is reported with its location and taken out of the
//! tree, and the next attempt finds the next problem. Syntax errors are all reported by
//! toml's recovering parser. The tree also maps field paths back to positions for the
//! checks that run after deserialisation.

use std::path::Path;

use serde::de::DeserializeOwned;
use serde_spanned::Spanned;
use toml::de::{DeTable, DeValue};

use crate::problem::{Problem, line_col, near_miss, problem};

/// A parsed document: its text and spanned tree.
#[derive(Debug)]
pub struct Document<'i> {
    text: &'i str,
    root: Spanned<DeTable<'i>>,
}

/// One step of a path into the tree.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
}

fn render(path: &[Step]) -> String {
    let mut out = String::new();
    for step in path {
        match step {
            Step::Key(k) => {
                if !out.is_empty() {
                    out.push('.');
                }
                out.push_str(k);
            }
            Step::Index(i) => out.push_str(&format!("[{i}]")),
        }
    }
    out
}

/// The deepest entry whose key or value span contains `offset`: its path, and the start
/// of its key (or of the value, for array items). The whole tree is searched: a table
/// opened by a `[header]` has a value span that does not cover its body.
fn locate(
    table: &DeTable<'_>,
    offset: usize,
    prefix: &mut Vec<Step>,
) -> Option<(Vec<Step>, usize)> {
    for (key, value) in table.iter() {
        prefix.push(Step::Key(key.get_ref().to_string()));
        if let Some(found) = locate_value(value.get_ref(), offset, prefix) {
            prefix.pop();
            return Some(found);
        }
        let (ks, vs) = (key.span(), value.span());
        let here =
            ks.contains(&offset) || vs.contains(&offset) || (vs.start == offset && vs.is_empty());
        let found = here.then(|| (prefix.clone(), ks.start));
        prefix.pop();
        if found.is_some() {
            return found;
        }
    }
    None
}

fn locate_value(
    value: &DeValue<'_>,
    offset: usize,
    prefix: &mut Vec<Step>,
) -> Option<(Vec<Step>, usize)> {
    match value {
        DeValue::Table(t) => locate(t, offset, prefix),
        DeValue::Array(items) => {
            for (i, item) in items.iter().enumerate() {
                prefix.push(Step::Index(i));
                let found = locate_value(item.get_ref(), offset, prefix).or_else(|| {
                    item.span()
                        .contains(&offset)
                        .then(|| (prefix.clone(), item.span().start))
                });
                prefix.pop();
                if found.is_some() {
                    return found;
                }
            }
            None
        }
        _ => None,
    }
}

/// Removes the entry at `path`; an array item takes its whole array with it (toml's
/// arrays cannot be rebuilt with their table-array flag).
fn remove(table: &mut DeTable<'_>, path: &[Step]) -> bool {
    match path {
        [Step::Key(k)] => table.remove(k.as_str()).is_some(),
        [Step::Key(k), Step::Index(_), ..] => table.remove(k.as_str()).is_some(),
        [Step::Key(k), rest @ ..] => match table.get_mut(k.as_str()).map(|v| v.get_mut()) {
            Some(DeValue::Table(t)) => remove(t, rest),
            _ => false,
        },
        _ => false,
    }
}

/// `unknown field `x`, expected one of `a`, `b`` → ("x", ["a", "b"]).
fn unknown_field(message: &str) -> Option<(String, Vec<String>)> {
    let rest = message.strip_prefix("unknown field `")?;
    let (name, rest) = rest.split_once('`')?;
    let expected = rest
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect();
    Some((name.to_owned(), expected))
}

/// Follows `$ref` (and the one non-null branch of an `Option`'s `anyOf`).
fn resolve<'a>(root: &'a serde_json::Value, node: &'a serde_json::Value) -> &'a serde_json::Value {
    let mut node = node;
    for _ in 0..8 {
        if let Some(r) = node["$ref"].as_str() {
            let name = r.rsplit('/').next().unwrap_or_default();
            node = &root["$defs"][name];
        } else if let Some(branch) = node["anyOf"]
            .as_array()
            .and_then(|b| b.iter().find(|v| v["type"] != "null"))
        {
            node = branch;
        } else {
            break;
        }
    }
    node
}

impl<'i> Document<'i> {
    /// Parses `text`; syntax errors are returned all at once.
    ///
    /// # Errors
    /// Every syntax error, with its position.
    pub fn parse(file: &Path, text: &'i str) -> Result<Self, Vec<Problem>> {
        let (root, errors) = DeTable::parse_recoverable(text);
        if errors.is_empty() {
            return Ok(Self { text, root });
        }
        Err(errors
            .into_iter()
            .map(|e| {
                let at = e.span().map(|s| line_col(text, s.start));
                problem(file, at, "", format!("TOML syntax: {}", e.message().trim()))
            })
            .collect())
    }

    /// Position of the value (or key) at dotted `path` (`a.b`, `a.list[2].c`), or of the
    /// nearest existing parent.
    pub fn position(&self, path: &str) -> Option<(usize, usize)> {
        let mut table = self.root.get_ref();
        let mut at = None;
        let mut value: Option<&Spanned<DeValue<'_>>> = None;
        for part in path.split('.') {
            let (name, index) = match part.split_once('[') {
                Some((n, i)) => (n, i.trim_end_matches(']').parse::<usize>().ok()),
                None => (part, None),
            };
            let Some((k, v)) = table.get_key_value(name) else {
                break;
            };
            at = Some(k.span().start);
            value = Some(v);
            if let (Some(i), DeValue::Array(items)) = (index, v.get_ref())
                && let Some(item) = items.get(i)
            {
                at = Some(item.span().start);
                value = Some(item);
            }
            match value.map(Spanned::get_ref) {
                Some(DeValue::Table(t)) => table = t,
                _ => break,
            }
        }
        if let Some(v) = value
            && !matches!(v.get_ref(), DeValue::Table(_) | DeValue::Array(_))
        {
            at = Some(v.span().start);
        }
        at.map(|o| line_col(self.text, o))
    }

    /// Every required key missing from a table that is present (or required itself),
    /// read from `T`'s JSON Schema, so that all of them are reported at once.
    pub fn missing_required(&self, file: &Path, schema: &serde_json::Value) -> Vec<Problem> {
        let mut out = Vec::new();
        self.walk_required(
            file,
            schema,
            schema,
            self.root.get_ref(),
            "",
            self.root.span().start,
            &mut out,
        );
        out
    }

    #[allow(
        clippy::too_many_arguments,
        reason = "a recursive walk carrying its context"
    )]
    fn walk_required(
        &self,
        file: &Path,
        root: &serde_json::Value,
        node: &serde_json::Value,
        table: &DeTable<'_>,
        path: &str,
        header: usize,
        out: &mut Vec<Problem>,
    ) {
        let node = resolve(root, node);
        let join = |k: &str| {
            if path.is_empty() {
                k.to_owned()
            } else {
                format!("{path}.{k}")
            }
        };
        for key in node["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k.as_str())
        {
            if table.get(key).is_none() {
                let what = if resolve(root, &node["properties"][key])["properties"].is_object() {
                    format!("required section [{}] is missing", join(key))
                } else {
                    "required key is missing".to_owned()
                };
                out.push(problem(
                    file,
                    Some(line_col(self.text, header)),
                    &join(key),
                    what,
                ));
            }
        }
        for (key, value) in table.iter() {
            let name: &str = key.get_ref();
            if let (Some(child), DeValue::Table(t)) =
                (node["properties"].get(name), value.get_ref())
            {
                self.walk_required(file, root, child, t, &join(name), key.span().start, out);
            }
        }
    }

    /// Deserialises the document into `T`, collecting every unknown key and every value of
    /// the wrong type (each removed before the next attempt). `T` is returned only when
    /// nothing was wrong.
    pub fn deserialize<T: DeserializeOwned>(&self, file: &Path) -> (Option<T>, Vec<Problem>) {
        let mut root = self.root.clone();
        let mut problems: Vec<Problem> = Vec::new();
        // Each attempt removes one entry, so the loop ends; the bound is a safety net.
        for _ in 0..1000 {
            let err = match T::deserialize(toml::de::Deserializer::from(root.clone())) {
                Ok(value) if problems.is_empty() => return (Some(value), problems),
                Ok(_) => return (None, problems),
                Err(e) => e,
            };
            let message = err.message().trim().to_owned();
            let offset = err.span().map_or(0, |s| s.start);
            let located = locate(root.get_ref(), offset, &mut Vec::new());
            if let Some(missing) = message
                .strip_prefix("missing field `")
                .and_then(|r| r.split_once('`'))
                .map(|(m, _)| m)
            {
                // The span is the enclosing table: name the key there, unless its bad
                // value was reported (and removed) already.
                // A span of the whole document is the root table, even where the first
                // table's header starts at its first byte.
                let at_root = err.span() == Some(root.span());
                let parent = located
                    .as_ref()
                    .filter(|_| !at_root)
                    .map(|(p, _)| render(p))
                    .unwrap_or_default();
                let path = if parent.is_empty() {
                    missing.to_owned()
                } else {
                    format!("{parent}.{missing}")
                };
                if !problems.iter().any(|p| p.path == path) {
                    let at = err.span().map(|s| line_col(self.text, s.start));
                    problems.push(problem(file, at, &path, "required key is missing"));
                }
                return (None, problems);
            }
            let Some((path, key_offset)) = located else {
                let at = err.span().map(|s| line_col(self.text, s.start));
                problems.push(problem(file, at, "", message));
                return (None, problems);
            };
            let at = Some(line_col(self.text, key_offset));
            let mut p = match unknown_field(&message) {
                Some((name, expected)) => {
                    let mut p = problem(
                        file,
                        at,
                        &render(&path),
                        format!(
                            "unknown key `{name}` (allowed here: {})",
                            expected.join(", ")
                        ),
                    );
                    p.suggestion = near_miss(&name, expected.iter().map(String::as_str));
                    p
                }
                None => problem(file, at, &render(&path), message),
            };
            p.message = p.message.replace('\n', " ");
            problems.push(p);
            if !remove(root.get_mut(), &path) {
                return (None, problems);
            }
        }
        (None, problems)
    }
}
