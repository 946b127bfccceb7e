//! Searching event payloads for a piece of text: what is matched ([`SearchText`]), and the
//! shape of a bounded search ([`PayloadSearch`], [`SearchedEvents`]); the scan itself is
//! [`super::Store::search_events`].

use crate::model::Millis;

/// Most candidate events one search reads, so that a page costs the same whatever the size of
/// the store. Measured on a store of a million events (SQLite, payloads of 1.3 KB, a debug
/// build on a busy 2-core machine): a search that reads all 5,000 took 40-70 ms of CPU; a
/// listing without search about 5 ms. Past it the search says how far back it went and
/// offers to go on from there.
pub const MAX_SEARCH_SCAN: i64 = 5_000;

/// The longest search text, in bytes.
pub const MAX_SEARCH_TEXT: usize = 256;

/// Candidates read per query during a search: enough to make each round trip worth it, few
/// enough that a page found early reads little more than it shows.
pub(super) const SCAN_CHUNK: i64 = 500;

/// Text to find in payloads: a case-insensitive substring of the payload's JSON text as it was
/// received (keys, values and punctuation alike; escapes as the sender wrote them). Letters
/// match whatever their case (Unicode simple case folding); everything else must match
/// exactly.
#[derive(Debug, Clone)]
pub struct SearchText {
    text: String,
    finder: regex::Regex,
}

/// A search text that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SearchTextError {
    #[error("the search text is empty")]
    Empty,
    #[error("the search text is {0} bytes long; at most {MAX_SEARCH_TEXT} are searched for")]
    TooLong(usize),
}

impl SearchText {
    /// `text` as a search, or why it cannot be one. Leading and trailing whitespace is not
    /// part of the search.
    pub fn new(text: &str) -> Result<SearchText, SearchTextError> {
        let text = text.trim();
        if text.is_empty() {
            return Err(SearchTextError::Empty);
        }
        if text.len() > MAX_SEARCH_TEXT {
            return Err(SearchTextError::TooLong(text.len()));
        }
        // A literal, so the regex crate runs a substring search (with case folding); the
        // escaped text of 256 bytes compiles far below the default size limit.
        let finder = regex::RegexBuilder::new(&regex::escape(text))
            .case_insensitive(true)
            .build()
            .map_err(|_| SearchTextError::TooLong(text.len()))?;
        Ok(SearchText {
            text: text.to_string(),
            finder,
        })
    }

    /// The text searched for (trimmed).
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Whether `payload` holds the text.
    pub fn matches(&self, payload: &str) -> bool {
        self.finder.is_match(payload)
    }
}

/// How [`super::Store::search_events`] picks events among the candidates.
pub struct PayloadSearch<'a> {
    /// Keeps an event when this is true of its payload text.
    pub keep: &'a (dyn Fn(&str) -> bool + Send + Sync),
    /// Most candidates read (see [`MAX_SEARCH_SCAN`]).
    pub max_scanned: i64,
}

/// Where a bounded search stopped: the last candidate it read. A search with this `seq` as
/// its `before_seq` goes on from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScanStop {
    pub seq: i64,
    pub received_at: Millis,
}

/// What a search found.
#[derive(Debug, Clone)]
pub struct SearchedEvents {
    /// The kept events, newest first, at most the filter's limit.
    pub events: Vec<crate::store::ListedEvent>,
    /// Candidates read.
    pub scanned: i64,
    /// The sequence number of the newest candidate read.
    pub newest_seen: Option<i64>,
    /// Set when the scan reached its bound before finding a page's worth while older
    /// candidates were left: they were not read.
    pub stopped_at: Option<ScanStop>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_text_is_a_case_insensitive_literal() {
        let s = SearchText::new("  Refs/Heads/MAIN ").unwrap();
        assert_eq!(s.as_str(), "Refs/Heads/MAIN");
        assert!(s.matches(r#"{"ref":"refs/heads/main"}"#));
        assert!(!s.matches(r#"{"ref":"refs/heads/mai"}"#));
        // Regex syntax is text.
        let dots = SearchText::new("a.c(").unwrap();
        assert!(dots.matches("xa.c(y"));
        assert!(!dots.matches("abc("));
        // Letters beyond ASCII fold too; the JSON text is matched, quotes included.
        assert!(SearchText::new("ÉTÉ").unwrap().matches(r#"{"s":"été"}"#));
        assert!(SearchText::new(r#""n":1"#).unwrap().matches(r#"{"n":1}"#));
        assert!(!SearchText::new(r#""n": 1"#).unwrap().matches(r#"{"n":1}"#));
    }

    #[test]
    fn search_text_is_refused_when_empty_or_too_long() {
        assert_eq!(SearchText::new("   ").unwrap_err(), SearchTextError::Empty);
        let longest = "x".repeat(MAX_SEARCH_TEXT);
        assert!(SearchText::new(&longest).is_ok());
        let long = "é".repeat(MAX_SEARCH_TEXT / 2 + 1);
        assert_eq!(
            SearchText::new(&long).unwrap_err(),
            SearchTextError::TooLong(MAX_SEARCH_TEXT + 2)
        );
    }
}
