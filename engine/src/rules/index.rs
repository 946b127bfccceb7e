//! The rule index: (source, event type) -> candidate rules, with exact types in a hash map and
//! globs in a short list per source, so the cost per event follows the candidates, not the total.

use std::borrow::Cow;
use std::collections::HashMap;

/// An `events:` entry: an exact type or a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EventPattern {
    Exact(String),
    Glob(String),
}

impl EventPattern {
    pub fn new(text: &str) -> EventPattern {
        if text.contains(['*', '?']) {
            EventPattern::Glob(text.to_string())
        } else {
            EventPattern::Exact(text.to_string())
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            EventPattern::Exact(s) | EventPattern::Glob(s) => s,
        }
    }

    pub fn matches(&self, event_type: &str) -> bool {
        match self {
            EventPattern::Exact(s) => s == event_type,
            EventPattern::Glob(g) => glob_match(g, event_type),
        }
    }
}

pub use crate::model::glob_match;

#[derive(Debug, Default)]
struct SourceIndex {
    exact: HashMap<String, Vec<usize>>,
    globs: Vec<(String, usize)>,
}

/// Candidate rules by (source, event type). Rule numbers are positions in the rule set.
#[derive(Debug, Default)]
pub struct Index {
    by_source: HashMap<String, SourceIndex>,
}

impl Index {
    /// Adds rule `rule` for each of its sources and event patterns.
    pub fn insert(&mut self, rule: usize, sources: &[String], events: &[EventPattern]) {
        for source in sources {
            let entry = self.by_source.entry(source.clone()).or_default();
            for pattern in events {
                match pattern {
                    EventPattern::Exact(t) => {
                        // Kept sorted and without duplicates, so `candidates` can lend it.
                        let list = entry.exact.entry(t.clone()).or_default();
                        if let Err(at) = list.binary_search(&rule) {
                            list.insert(at, rule);
                        }
                    }
                    EventPattern::Glob(g) => entry.globs.push((g.clone(), rule)),
                }
            }
        }
    }

    /// The rules that apply to this source and event type, in rule-set order, each once.
    /// Borrowed from the index unless a glob adds rules to the exact ones.
    pub fn candidates(&self, source: &str, event_type: &str) -> Cow<'_, [usize]> {
        let Some(entry) = self.by_source.get(source) else {
            return Cow::Borrowed(&[]);
        };
        // Sorted and without duplicates: `insert` adds rules in increasing order, once each.
        let exact: &[usize] = entry.exact.get(event_type).map_or(&[], Vec::as_slice);
        let mut globbed = entry
            .globs
            .iter()
            .filter(|(g, _)| glob_match(g, event_type))
            .map(|(_, r)| *r)
            .peekable();
        if globbed.peek().is_none() {
            return Cow::Borrowed(exact);
        }
        let mut out = exact.to_vec();
        out.extend(globbed);
        out.sort_unstable();
        out.dedup();
        Cow::Owned(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let cases: &[(&str, &str, bool)] = &[
            ("pull_request.*", "pull_request.opened", true),
            ("pull_request.*", "pull_request", false),
            ("pull_request.*", "pull_request_review.submitted", false),
            ("*", "anything.at.all", true),
            ("*", "", true),
            ("invoice.*", "invoice.payment.failed", true),
            ("*.created", "customer.subscription.created", true),
            ("*.created", "customer.created.later", false),
            ("charge.?efunded", "charge.refunded", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxbyy", false),
            ("orders/*", "orders/create", true),
            ("é*", "été", true),
            ("**", "x", true),
            ("?", "é", true),
            ("a?c", "aéc", true),
            ("*é", "aéé", true),
            ("*é?", "éxéé", true),
            ("*.?", "a.é", true),
            ("*.?", "a.éé", false),
        ];
        for (g, t, want) in cases {
            assert_eq!(glob_match(g, t), *want, "{g} vs {t}");
        }
    }

    /// The matcher as it was written first, over vectors of characters.
    fn glob_match_by_chars(pattern: &str, text: &str) -> bool {
        let p: Vec<char> = pattern.chars().collect();
        let t: Vec<char> = text.chars().collect();
        let (mut pi, mut ti) = (0, 0);
        let mut star: Option<(usize, usize)> = None;
        while ti < t.len() {
            if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
                pi += 1;
                ti += 1;
            } else if pi < p.len() && p[pi] == '*' {
                star = Some((pi, ti));
                pi += 1;
            } else if let Some((sp, st)) = star {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            } else {
                return false;
            }
        }
        p[pi..].iter().all(|c| *c == '*')
    }

    #[test]
    fn globs_match_as_the_char_vector_matcher_did() {
        let alphabet = ["a", "é", "*", "?", ".", "日"];
        // Every word of up to `n` characters of the alphabet.
        let words = |n: usize| {
            let mut words = vec![String::new()];
            for _ in 0..n {
                let longer: Vec<String> = words
                    .iter()
                    .flat_map(|w| alphabet.iter().map(move |c| format!("{w}{c}")))
                    .collect();
                words.extend(longer);
                words.sort();
                words.dedup();
            }
            words
        };
        let texts = words(3);
        for p in &words(4) {
            for t in &texts {
                assert_eq!(glob_match(p, t), glob_match_by_chars(p, t), "{p} vs {t}");
            }
        }
    }

    #[test]
    fn index_selects_by_source_and_type() {
        let mut idx = Index::default();
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let e = |v: &[&str]| v.iter().map(|x| EventPattern::new(x)).collect::<Vec<_>>();
        idx.insert(0, &s(&["github"]), &e(&["push"]));
        idx.insert(
            1,
            &s(&["github"]),
            &e(&["pull_request.*", "pull_request.opened"]),
        );
        idx.insert(2, &s(&["stripe", "github"]), &e(&["*"]));
        idx.insert(
            3,
            &s(&["stripe"]),
            &e(&["invoice.paid", "invoice.payment_failed"]),
        );
        let cases: &[(&str, &str, &[usize])] = &[
            ("github", "push", &[0, 2]),
            ("github", "pull_request.opened", &[1, 2]),
            ("github", "pull_request.closed", &[1, 2]),
            ("stripe", "invoice.paid", &[2, 3]),
            ("stripe", "push", &[2]),
            ("slack", "push", &[]),
        ];
        for (source, ty, want) in cases {
            assert_eq!(&*idx.candidates(source, ty), *want, "{source} {ty}");
        }
    }
}
