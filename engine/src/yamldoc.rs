//! YAML documents with source positions, and diagnostics that name file, line and column.
//!
//! Config and rule files are parsed twice: once by `serde_yaml` into a JSON value (the data), and
//! once by `yaml-rust2`'s event parser to learn where every node starts (the positions). Problems
//! found later, by a JSON Schema or by semantic checks, are reported against a JSON pointer, which
//! this module turns back into a line and column.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

use crate::units::{DURATION_PATTERN, DurationError, parse_duration};

/// A 1-based line and column in a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub line: usize,
    pub column: usize,
}

/// One problem in one file, at one place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub file: PathBuf,
    pub position: Position,
    /// JSON pointer of the offending node (empty for the whole document).
    pub pointer: String,
    pub message: String,
}

impl fmt::Display for Diagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file.display(),
            self.position.line,
            self.position.column,
            self.message
        )
    }
}

/// A parsed YAML document: its data as JSON plus where each node was written.
#[derive(Debug, Clone)]
pub struct Document {
    pub file: PathBuf,
    pub value: Value,
    positions: HashMap<String, Position>,
    key_positions: HashMap<String, Position>,
}

impl Document {
    /// Parses `text` (the contents of `file`). A syntax error comes back as one diagnostic.
    pub fn parse(file: &Path, text: &str) -> Result<Document, Diagnostic> {
        let mut collector = PositionCollector::default();
        let mut parser = Parser::new_from_str(text);
        if let Err(err) = parser.load(&mut collector, false) {
            return Err(Diagnostic {
                file: file.to_path_buf(),
                position: from_marker(err.marker()),
                pointer: String::new(),
                message: format!("invalid YAML: {}", err.info()),
            });
        }
        if let Some((pointer, position)) = collector.duplicates.first() {
            let key = pointer.rsplit('/').next().unwrap_or_default();
            let key = key.replace("~1", "/").replace("~0", "~");
            return Err(Diagnostic {
                file: file.to_path_buf(),
                position: *position,
                pointer: pointer.clone(),
                message: format!("invalid YAML: duplicate key `{key}`"),
            });
        }
        let value: Value = match serde_yaml::from_str::<Option<Value>>(text) {
            Ok(value) => value.unwrap_or(Value::Null),
            Err(err) => {
                let position = err
                    .location()
                    .map(|l| Position {
                        line: l.line(),
                        column: l.column(),
                    })
                    .unwrap_or(Position { line: 1, column: 1 });
                return Err(Diagnostic {
                    file: file.to_path_buf(),
                    position,
                    pointer: String::new(),
                    message: format!("invalid YAML: {err}"),
                });
            }
        };
        Ok(Document {
            file: file.to_path_buf(),
            value,
            positions: collector.positions,
            key_positions: collector.key_positions,
        })
    }

    /// Where the node at `pointer` starts; falls back to the nearest ancestor that was written.
    pub fn position(&self, pointer: &str) -> Position {
        let mut p = pointer;
        loop {
            if let Some(pos) = self.positions.get(p) {
                return *pos;
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => return Position { line: 1, column: 1 },
            }
        }
    }

    /// Where the key of the mapping entry at `pointer` is written (the value's place otherwise).
    pub fn key_position(&self, pointer: &str) -> Position {
        self.key_positions
            .get(pointer)
            .copied()
            .unwrap_or_else(|| self.position(pointer))
    }

    /// A diagnostic at the node `pointer`.
    pub fn error_at(&self, pointer: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            position: self.position(pointer),
            pointer: pointer.to_string(),
            message: message.into(),
        }
    }

    /// A diagnostic at the key of the mapping entry `pointer` (for unknown or misplaced keys).
    pub fn error_at_key(&self, pointer: &str, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            file: self.file.clone(),
            position: self.key_position(pointer),
            pointer: pointer.to_string(),
            message: message.into(),
        }
    }

    /// Every way the document breaks `schema`, each at its place, sorted by position. The
    /// offending value is quoted in the message unless `hide_value(pointer)` says it may be a
    /// secret.
    pub fn schema_errors(
        &self,
        schema: &jsonschema::Validator,
        hide_value: fn(&str) -> bool,
    ) -> Vec<Diagnostic> {
        let mut out = Vec::new();
        for err in schema.iter_errors(&self.value) {
            let pointer = err.instance_path().as_str().to_string();
            match err.kind() {
                jsonschema::error::ValidationErrorKind::AdditionalProperties { unexpected } => {
                    for key in unexpected {
                        let key_pointer = format!("{pointer}/{}", escape_pointer_token(key));
                        out.push(self.error_at_key(&key_pointer, format!("unknown key `{key}`")));
                    }
                }
                // A regex is no answer to a person who wrote `1h2d`: the parser says what is
                // wrong, also from inside the `anyOf` that an optional section becomes.
                _ if !duration_mistakes(&err).is_empty() => {
                    for (pointer, e) in duration_mistakes(&err) {
                        let at = display_pointer(&pointer);
                        out.push(self.error_at(&pointer, format!("{at}: {e}")));
                    }
                }
                _ => {
                    let at = display_pointer(&pointer);
                    let message = if hide_value(&pointer) {
                        err.masked().to_string()
                    } else {
                        err.to_string()
                    };
                    out.push(self.error_at(&pointer, format!("{at}: {message}")));
                }
            }
        }
        out.sort_by_key(|d| d.position);
        out.dedup();
        out
    }
}

/// The durations that `err` (or the alternatives it tried) rejects, with their pointers.
fn duration_mistakes(err: &jsonschema::ValidationError<'_>) -> Vec<(String, DurationError)> {
    match err.kind() {
        jsonschema::error::ValidationErrorKind::Pattern { pattern }
            if pattern == DURATION_PATTERN =>
        {
            let mistake = err.instance().as_str().map(parse_duration);
            match mistake {
                Some(Err(e)) => vec![(err.instance_path().as_str().to_string(), e)],
                _ => Vec::new(),
            }
        }
        jsonschema::error::ValidationErrorKind::AnyOf { context } => context
            .iter()
            .flatten()
            .flat_map(duration_mistakes)
            .collect(),
        _ => Vec::new(),
    }
}

/// `/sources/0/provider` -> `sources[0].provider`, the way people read paths in YAML.
pub fn display_pointer(pointer: &str) -> String {
    if pointer.is_empty() {
        return "(document)".to_string();
    }
    let mut out = String::new();
    for token in pointer.split('/').skip(1) {
        let token = token.replace("~1", "/").replace("~0", "~");
        if !token.is_empty() && token.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str(&format!("[{token}]"));
        } else {
            if !out.is_empty() {
                out.push('.');
            }
            out.push_str(&token);
        }
    }
    out
}

/// Escapes one JSON pointer reference token (RFC 6901).
pub fn escape_pointer_token(token: &str) -> String {
    token.replace('~', "~0").replace('/', "~1")
}

fn from_marker(m: &Marker) -> Position {
    // yaml-rust2 counts lines from 1 and columns from 0.
    Position {
        line: m.line().max(1),
        column: m.col() + 1,
    }
}

enum Frame {
    Sequence {
        pointer: String,
        next_index: usize,
    },
    Mapping {
        pointer: String,
        key: Option<String>,
        seen_key: bool,
    },
    /// Inside a complex (non-scalar) mapping key: nothing in it is addressable.
    Ignored {
        depth: usize,
    },
}

#[derive(Default)]
struct PositionCollector {
    stack: Vec<Frame>,
    positions: HashMap<String, Position>,
    key_positions: HashMap<String, Position>,
    /// Keys written twice in one mapping, at their second place.
    duplicates: Vec<(String, Position)>,
}

impl PositionCollector {
    /// Handles the start of a node; returns its pointer, or None when the node is a mapping key
    /// (or inside one), which has no pointer of its own.
    fn node(&mut self, ev: &Event, pos: Position) -> Option<String> {
        match self.stack.last_mut() {
            None => Some(String::new()),
            Some(Frame::Ignored { .. }) => None,
            Some(Frame::Sequence {
                pointer,
                next_index,
            }) => {
                let p = format!("{pointer}/{next_index}");
                *next_index += 1;
                Some(p)
            }
            Some(Frame::Mapping {
                pointer,
                key,
                seen_key,
            }) => match key.take() {
                Some(k) => Some(format!("{pointer}/{}", escape_pointer_token(&k))),
                None => {
                    if !*seen_key {
                        // yaml-rust2 marks a block mapping at its first `:`; people read it as
                        // starting at its first key.
                        *seen_key = true;
                        self.positions.insert(pointer.clone(), pos);
                    }
                    if let Event::Scalar(text, ..) = ev {
                        let entry = format!("{pointer}/{}", escape_pointer_token(text));
                        if self.key_positions.insert(entry.clone(), pos).is_some() {
                            self.duplicates.push((entry, pos));
                        }
                        *key = Some(text.clone());
                    } else {
                        // A complex key: its value gets no pointer either.
                        *key = Some(String::from("\u{0}complex-key"));
                    }
                    None
                }
            },
        }
    }
}

impl MarkedEventReceiver for PositionCollector {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        let pos = from_marker(&mark);
        match ev {
            Event::Scalar(..) | Event::Alias(..) => {
                if let Some(p) = self.node(&ev, pos) {
                    self.positions.entry(p).or_insert(pos);
                }
            }
            Event::SequenceStart(..) | Event::MappingStart(..) => {
                if let Some(Frame::Ignored { depth }) = self.stack.last_mut() {
                    *depth += 1;
                    return;
                }
                let is_key = matches!(self.stack.last(), Some(Frame::Mapping { key: None, .. }));
                let pointer = self.node(&ev, pos);
                match (pointer, is_key) {
                    (Some(p), _) => {
                        self.positions.entry(p.clone()).or_insert(pos);
                        self.stack.push(if matches!(ev, Event::SequenceStart(..)) {
                            Frame::Sequence {
                                pointer: p,
                                next_index: 0,
                            }
                        } else {
                            Frame::Mapping {
                                pointer: p,
                                key: None,
                                seen_key: false,
                            }
                        });
                    }
                    (None, _) => self.stack.push(Frame::Ignored { depth: 1 }),
                }
            }
            Event::SequenceEnd | Event::MappingEnd => {
                if let Some(Frame::Ignored { depth }) = self.stack.last_mut() {
                    *depth -= 1;
                    if *depth > 0 {
                        return;
                    }
                }
                self.stack.pop();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
listen: 0.0.0.0:8443
sources:
  - id: github
    provider: github
  - id: stripe
    provider: stripe
    secrets: [a, b]
nested:
  deep:
    key: value
";

    fn doc() -> Document {
        Document::parse(Path::new("hookwise.yaml"), TEXT).unwrap()
    }

    #[test]
    fn values_and_positions_agree() {
        let d = doc();
        assert_eq!(d.value["sources"][1]["provider"], "stripe");
        assert_eq!(d.position("/listen"), Position { line: 1, column: 9 });
        assert_eq!(
            d.position("/sources/1/provider"),
            Position {
                line: 6,
                column: 15
            }
        );
        assert_eq!(
            d.position("/sources/1/secrets/1"),
            Position {
                line: 7,
                column: 18
            }
        );
        assert_eq!(
            d.key_position("/sources/1/provider"),
            Position { line: 6, column: 5 }
        );
        assert_eq!(
            d.position("/nested/deep/key"),
            Position {
                line: 10,
                column: 10
            }
        );
    }

    #[test]
    fn unknown_pointer_falls_back_to_ancestor() {
        let d = doc();
        assert_eq!(d.position("/sources/1/missing"), d.position("/sources/1"));
        assert_eq!(d.position("/nope"), Position { line: 1, column: 1 });
    }

    #[test]
    fn syntax_error_has_a_position() {
        // The unclosed flow sequence runs on into the next line, where `b:` cannot stand.
        let err = Document::parse(Path::new("x.yaml"), "a: [1, 2\nb: c\n").unwrap_err();
        assert_eq!(err.position, Position { line: 2, column: 2 });
        assert!(err.message.starts_with("invalid YAML"), "{err}");
    }

    #[test]
    fn duplicate_keys_are_errors() {
        let err = Document::parse(Path::new("x.yaml"), "a: 1\na: 2\n").unwrap_err();
        assert!(err.message.contains("duplicate"), "{err}");
    }

    #[test]
    fn empty_document_is_null() {
        let d = Document::parse(Path::new("x.yaml"), "# nothing\n").unwrap();
        assert!(d.value.is_null());
    }

    #[test]
    fn complex_keys_do_not_confuse_positions() {
        let text = "? [a, b]\n: 1\nplain: 2\n";
        // serde_json cannot hold a sequence key, so this is an error, but never a panic.
        let _ = Document::parse(Path::new("x.yaml"), text);
    }

    #[test]
    fn display_pointer_reads_like_yaml() {
        assert_eq!(
            display_pointer("/sources/0/secrets/1"),
            "sources[0].secrets[1]"
        );
        assert_eq!(display_pointer(""), "(document)");
        assert_eq!(display_pointer("/a~1b"), "a/b");
    }
}
