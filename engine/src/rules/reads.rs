//! Which members of an event's payload a rule can read, worked out once when the rule is
//! compiled from its conditions' paths and its templates' variables, so that an arriving
//! event's payload is parsed only as far as the rules selected for it read it.
//!
//! The analysis errs one way only: whatever it cannot place (a path that does not start with a
//! named member, a template that reads `payload` as a whole, by a computed key, or through
//! another template) counts as reading the whole payload.

use std::collections::{BTreeSet, HashSet};

/// The template variable the payload is in.
const PAYLOAD_VAR: &str = "payload";

/// Template functions that read the whole context, payload included (minijinja's `debug()`
/// prints it).
const CONTEXT_READERS: &[&str] = &["debug"];

/// Template tags that bring in another template, whose reads this analysis does not follow.
const TEMPLATE_LOADERS: &[&str] = &["include", "import", "extends", "from"];

/// The top-level members of a payload that a rule can read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PayloadReads {
    /// The rule reads the payload as a whole, or in a way not worked out: every member.
    all: bool,
    /// Members read by name.
    members: BTreeSet<String>,
}

impl PayloadReads {
    /// Whether the whole payload may be read.
    pub fn reads_all(&self) -> bool {
        self.all
    }

    /// Whether the top-level member `name` may be read.
    pub fn reads(&self, name: &str) -> bool {
        self.all || self.members.contains(name)
    }

    pub(super) fn add_whole(&mut self) {
        self.all = true;
        self.members.clear();
    }

    fn add_member(&mut self, name: &str) {
        if !self.all {
            self.members.insert(name.to_string());
        }
    }

    /// Adds what a JSONPath reads, from the canonical text serde_json_path prints for it
    /// (`$.name...`, `$['odd name']...`, `$..x`, `$[0]`): a path whose first segment is one
    /// member named in dotted form reads that member; any other reads the whole payload.
    pub(super) fn add_path(&mut self, canonical: &str) {
        let first = canonical
            .strip_prefix("$.")
            .and_then(|rest| {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                // The name ends where the next segment starts; `$.a-b` is no member `a`.
                let (name, after) = rest.split_at(end);
                (after.is_empty() || after.starts_with(['.', '['])).then_some(name)
            })
            .filter(|name| !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()));
        match first {
            Some(name) => self.add_member(name),
            None => self.add_whole(),
        }
    }

    /// Adds what a template or expression reads, from its undeclared variables as minijinja
    /// lists them with nested lookups (`payload.ref`, `payload.commits`, `payload`, `event.id`).
    pub(super) fn add_variables(&mut self, variables: &HashSet<String>) {
        for variable in variables {
            let mut parts = variable.split('.');
            match (parts.next(), parts.next()) {
                (Some(PAYLOAD_VAR), Some(member)) => self.add_member(member),
                (Some(PAYLOAD_VAR), None) => self.add_whole(),
                (Some(name), _) if CONTEXT_READERS.contains(&name) => self.add_whole(),
                _ => {}
            }
        }
    }

    /// Adds what a template's source reads beyond its own variables: a template that loads
    /// another (`{% include %}` and the like) may read anything.
    pub(super) fn add_template_source(&mut self, source: &str) {
        let loads = source.split("{%").skip(1).any(|tag| {
            let word = tag.trim_start_matches(['-', '+', ' ', '\t', '\n', '\r']);
            TEMPLATE_LOADERS.iter().any(|l| {
                word.strip_prefix(l)
                    .is_some_and(|rest| rest.starts_with(|c: char| c.is_whitespace()))
            })
        });
        if loads {
            self.add_whole();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn members(reads: &PayloadReads) -> Vec<&str> {
        reads.members.iter().map(String::as_str).collect()
    }

    #[test]
    fn a_path_reads_its_first_member_or_everything() {
        for (path, member) in [
            ("$.ref", Some("ref")),
            ("$.head_commit.id", Some("head_commit")),
            ("$.commits[*].message", Some("commits")),
            ("$.a_1[?@.x == 1]", Some("a_1")),
            ("$", None),
            ("$..id", None),
            ("$.*", None),
            ("$[0]", None),
            ("$['pull-request'].id", None),
            ("$[?@.x]", None),
            ("$.a-b", None),
            ("$.héllo", None),
        ] {
            let mut reads = PayloadReads::default();
            reads.add_path(path);
            match member {
                Some(m) => {
                    assert!(!reads.reads_all(), "{path}");
                    assert_eq!(members(&reads), [m], "{path}");
                }
                None => assert!(reads.reads_all(), "{path}"),
            }
        }
    }

    #[test]
    fn variables_read_their_payload_members() {
        let vars = |names: &[&str]| names.iter().map(|s| s.to_string()).collect();
        let mut reads = PayloadReads::default();
        reads.add_variables(&vars(&[
            "payload.ref",
            "event.id",
            "payload.commits.x",
            "source",
        ]));
        assert_eq!(members(&reads), ["commits", "ref"]);
        assert!(reads.reads("ref") && !reads.reads("after"));
        for whole in [
            &["payload"][..],
            &["debug"][..],
            &["payload.ref", "payload"][..],
        ] {
            let mut reads = PayloadReads::default();
            reads.add_variables(&vars(whole));
            assert!(reads.reads_all(), "{whole:?}");
            assert!(reads.reads("anything"));
        }
    }

    #[test]
    fn a_template_that_loads_another_reads_everything() {
        for source in [
            "{% include 'x' %}",
            "{%- import 'x' as y %}",
            "{% from 'x' import y %}",
            "{% extends 'x' %}",
        ] {
            let mut reads = PayloadReads::default();
            reads.add_template_source(source);
            assert!(reads.reads_all(), "{source}");
        }
        let mut reads = PayloadReads::default();
        reads.add_template_source("{% if payload.included %}{{ payload.from }}{% endif %}");
        assert!(!reads.reads_all());
    }
}
