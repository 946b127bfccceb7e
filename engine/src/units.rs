//! Human-written durations ("250ms", "5s", "10m") and sizes ("64MiB") in config and rule files.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The one duration grammar of config, rule files, the CLI and the admin API: whole numbers with
/// units `d`, `h`, `m`, `s`, `ms`, largest unit first, each unit at most once (`500ms`, `30s`,
/// `1m30s`, `2h`, `7d`, `2d12h`). Used as the JSON Schema `pattern` of every duration field.
pub const DURATION_PATTERN: &str = "^([0-9]+d([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?\
|[0-9]+h([0-9]+m)?([0-9]+s)?([0-9]+ms)?\
|[0-9]+m([0-9]+s)?([0-9]+ms)?\
|[0-9]+s([0-9]+ms)?\
|[0-9]+ms)$";

/// The units of [`DURATION_PATTERN`], largest first, with their length in milliseconds.
const DURATION_UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// The longest duration accepted: stored times are signed 64-bit milliseconds, so anything
/// longer could not be added to or subtracted from one (about 292 million years).
const MAX_DURATION_MS: u64 = i64::MAX as u64;

/// Why a text is not a duration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("empty duration: write e.g. 30s, 1m30s or 7d")]
    Empty,
    #[error("`{0}` is not a duration such as 500ms, 1m30s or 7d")]
    Malformed(String),
    #[error("`{text}` needs a unit after `{number}` (d, h, m, s or ms)")]
    MissingUnit { text: String, number: String },
    #[error("`{text}`: unknown unit `{unit}` (use d, h, m, s or ms)")]
    UnknownUnit { text: String, unit: String },
    #[error("`{text}`: write units largest first, each once (e.g. 1h30m), not `{unit}` there")]
    UnitOrder { text: String, unit: String },
    #[error("`{0}` is negative")]
    Negative(String),
    #[error("`{0}`: use whole numbers (1s500ms, not 1.5s)")]
    Fractional(String),
    #[error("`{0}` is too long")]
    TooLong(String),
}

/// Parses a duration written in the grammar of [`DURATION_PATTERN`].
pub fn parse_duration(text: &str) -> Result<Duration, DurationError> {
    if text.is_empty() {
        return Err(DurationError::Empty);
    }
    if text.starts_with('-') {
        return Err(DurationError::Negative(text.to_string()));
    }
    let too_long = || DurationError::TooLong(text.to_string());
    let mut rest = text;
    let mut total_ms: u64 = 0;
    // Index into DURATION_UNITS of the next unit allowed: units go strictly largest first.
    let mut next_unit = 0;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(DurationError::Malformed(text.to_string()));
        }
        let (number, after) = rest.split_at(digits);
        let unit_len = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(unit_len);
        if unit.is_empty() {
            return Err(unitless(text, number, after));
        }
        let Some(index) = DURATION_UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(DurationError::UnknownUnit {
                text: text.to_string(),
                unit: unit.to_string(),
            });
        };
        if index < next_unit {
            return Err(DurationError::UnitOrder {
                text: text.to_string(),
                unit: unit.to_string(),
            });
        }
        next_unit = index + 1;
        let count: u64 = number.parse().map_err(|_| too_long())?;
        total_ms = count
            .checked_mul(DURATION_UNITS[index].1)
            .and_then(|ms| total_ms.checked_add(ms))
            .filter(|ms| *ms <= MAX_DURATION_MS)
            .ok_or_else(too_long)?;
        rest = after;
    }
    Ok(Duration::from_millis(total_ms))
}

/// The error for a number with no unit after it, where `after` is what follows the number.
fn unitless(text: &str, number: &str, after: &str) -> DurationError {
    if after.is_empty() {
        DurationError::MissingUnit {
            text: text.to_string(),
            number: number.to_string(),
        }
    } else if after.starts_with(['.', ',']) {
        DurationError::Fractional(text.to_string())
    } else {
        DurationError::Malformed(text.to_string())
    }
}

/// Writes a duration in the grammar [`parse_duration`] reads, largest units first (`2h`,
/// `1m30s`, `1d12h`, `250ms`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let mut ms = d.as_millis();
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (unit, size) in DURATION_UNITS {
        let size = u128::from(size);
        if ms >= size {
            out.push_str(&format!("{}{unit}", ms / size));
            ms %= size;
        }
    }
    out
}

/// A duration in config and rule files: see [`DURATION_PATTERN`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HumanDuration(pub Duration);

impl FromStr for HumanDuration {
    type Err = DurationError;
    fn from_str(s: &str) -> Result<Self, DurationError> {
        parse_duration(s).map(HumanDuration)
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for HumanDuration {
    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: whole numbers with units d, h, m, s, ms, largest first, each at most once, e.g. 500ms, 30s, 1m30s, 2h, 7d.",
            "examples": ["500ms", "30s", "1m30s", "2h", "7d"]
        })
    }
}

/// A size in bytes, written as a whole number and an optional unit: `B`, `KiB`, `MiB`, `GiB`
/// (powers of 1024) or `KB`, `MB`, `GB` (powers of 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("`{s}` is not a size such as 512KiB or 64MiB"))?;
        let factor: u64 = match unit.trim() {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => {
                return Err(format!(
                    "unknown size unit `{other}` (use B, KiB, MiB, GiB)"
                ));
            }
        };
        n.checked_mul(factor)
            .map(ByteSize)
            .ok_or_else(|| format!("`{s}` is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, size) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
            if self.0 >= size && self.0.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.0 / size);
            }
        }
        write!(f, "{}B", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Number(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Number(n) => Ok(ByteSize(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl JsonSchema for ByteSize {
    fn schema_name() -> Cow<'static, str> {
        "ByteSize".into()
    }
    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "description": "A size: bytes as a number, or a number and a unit (B, KiB, MiB, GiB, KB, MB, GB).",
            "anyOf": [
                { "type": "integer", "minimum": 0 },
                { "type": "string", "pattern": "^[0-9]+ ?(B|KiB|MiB|GiB|KB|MB|GB)?$" }
            ],
            "examples": ["1MiB", "64MiB"]
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        let ok: &[(&str, u64)] = &[
            ("500ms", 500),
            ("0s", 0),
            ("0ms", 0),
            ("30s", 30_000),
            ("5s", 5_000),
            ("10m", 600_000),
            ("1m30s", 90_000),
            ("1h30m", 5_400_000),
            ("2h", 7_200_000),
            ("7d", 604_800_000),
            ("2d12h", 216_000_000),
            ("1500ms", 1_500),
            ("1s500ms", 1_500),
            ("1d1h1m1s1ms", 90_061_001),
            ("90s", 90_000),
            ("007s", 7_000),
        ];
        for (text, ms) in ok {
            let got = parse_duration(text);
            assert_eq!(got, Ok(Duration::from_millis(*ms)), "{text}");
            let human: HumanDuration = text.parse().unwrap();
            assert_eq!(human.0, Duration::from_millis(*ms), "{text}");
        }
    }

    #[test]
    fn durations_rejected_with_a_reason() {
        use DurationError as E;
        let kind = |e: &DurationError| std::mem::discriminant(e);
        let missing = E::MissingUnit {
            text: String::new(),
            number: String::new(),
        };
        let unknown = E::UnknownUnit {
            text: String::new(),
            unit: String::new(),
        };
        let order = E::UnitOrder {
            text: String::new(),
            unit: String::new(),
        };
        let bad: &[(&str, DurationError)] = &[
            ("", E::Empty),
            ("5", missing.clone()),
            ("1m30", missing.clone()),
            ("s", E::Malformed(String::new())),
            ("ms", E::Malformed(String::new())),
            (" 5s", E::Malformed(String::new())),
            ("5s ", E::Malformed(String::new())),
            ("2 s", E::Malformed(String::new())),
            ("+5s", E::Malformed(String::new())),
            ("-1s", E::Negative(String::new())),
            ("1.5s", E::Fractional(String::new())),
            ("1,5h", E::Fractional(String::new())),
            ("5 parsecs", E::Malformed(String::new())),
            ("5parsecs", unknown.clone()),
            ("1w", unknown.clone()),
            ("5S", unknown.clone()),
            ("1us", unknown.clone()),
            ("1sec", unknown.clone()),
            ("30s1m", order.clone()),
            ("1m1m", order.clone()),
            ("1s1s", order.clone()),
            ("5ms1s", order.clone()),
            ("1h2d", order.clone()),
            ("99999999999999999999d", E::TooLong(String::new())),
            ("106751991167301d", E::TooLong(String::new())),
            ("9223372036854775808ms", E::TooLong(String::new())),
        ];
        for (text, want) in bad {
            let got = parse_duration(text).expect_err(text);
            assert_eq!(kind(&got), kind(want), "{text}: {got}");
            if !text.is_empty() {
                assert!(got.to_string().contains(text), "{text}: {got}");
            }
        }
        let longest = format!("{}ms", i64::MAX);
        assert!(parse_duration(&longest).is_ok());
    }

    #[test]
    fn duration_pattern_agrees_with_the_parser() {
        let pattern = regex::Regex::new(DURATION_PATTERN).unwrap();
        for text in [
            "500ms",
            "0s",
            "1m30s",
            "1h30m",
            "2d12h",
            "7d",
            "1s500ms",
            "1d1h1m1s1ms",
            "",
            "5",
            "s",
            "1.5s",
            "-1s",
            "30s1m",
            "1m1m",
            "5ms1s",
            "1w",
            "2 s",
            "1h2d",
            "1m5",
        ] {
            assert_eq!(
                pattern.is_match(text),
                parse_duration(text).is_ok(),
                "{text}"
            );
        }
    }

    #[test]
    fn durations_format_largest_unit_first_and_read_back() {
        let cases: &[(u64, &str)] = &[
            (0, "0s"),
            (250, "250ms"),
            (90_500, "1m30s500ms"),
            (7_200_000, "2h"),
            (86_400_000, "1d"),
            (216_000_000, "2d12h"),
        ];
        for (ms, text) in cases {
            let d = Duration::from_millis(*ms);
            assert_eq!(format_duration(d), *text);
            assert_eq!(HumanDuration(d).to_string(), *text);
            assert_eq!(parse_duration(text), Ok(d));
        }
    }

    /// The code in a Markdown text: fenced blocks and inline code spans, where examples live.
    fn code_in_markdown(text: &str) -> Vec<&str> {
        let mut code = Vec::new();
        let mut fenced = false;
        for line in text.lines() {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
            } else if fenced {
                code.push(line);
            } else {
                code.extend(line.split('`').skip(1).step_by(2));
            }
        }
        code
    }

    /// Whether a word is meant as a duration: a number followed by a time unit, including the
    /// wrong ones (fractions, signs, `w`, `min`...) so that a bad example is caught, not skipped.
    fn looks_like_duration(word: &str) -> bool {
        static LOOKS: std::sync::LazyLock<regex::Regex> = std::sync::LazyLock::new(|| {
            regex::Regex::new(
                r"^[+-]?[0-9]+([.,][0-9]+)?(ms|us|s|secs?|m|mins?|h|hours?|d|days?|w)([0-9]+[a-z]+)*$",
            )
            .unwrap()
        });
        LOOKS.is_match(word)
    }

    /// The words of a Markdown text's code that look like durations.
    fn durations_in_markdown(text: &str) -> Vec<&str> {
        let is_word = |c: char| c.is_ascii_alphanumeric() || "+-.,".contains(c);
        code_in_markdown(text)
            .into_iter()
            .flat_map(|code| code.split(move |c: char| !is_word(c)))
            .map(|word| word.trim_end_matches(['.', ',']))
            .filter(|word| looks_like_duration(word))
            .collect()
    }

    /// Every duration written in an example of the user docs parses, so docs and grammar agree.
    #[test]
    fn every_duration_in_the_docs_parses() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let mut files = vec![root.join("README.md")];
        let docs = std::fs::read_dir(root.join("docs")).unwrap();
        for entry in docs {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "md") {
                files.push(path);
            }
        }
        let mut seen = Vec::new();
        let mut failures = Vec::new();
        for file in &files {
            let text = std::fs::read_to_string(file).unwrap();
            for word in durations_in_markdown(&text) {
                if let Err(e) = parse_duration(word) {
                    failures.push(format!("{}: {e}", file.display()));
                }
                seen.push(word.to_string());
            }
        }
        assert!(failures.is_empty(), "{}", failures.join("\n"));
        for example in ["500ms", "30s", "1m30s", "1h", "7d", "0s"] {
            assert!(
                seen.iter().any(|w| w == example),
                "{example} not found in {seen:?}"
            );
        }
    }

    #[test]
    fn the_doc_scan_sees_bad_examples() {
        let text =
            "run `hookwise events --since 1.5h` or\n```yaml\nbackoff: 2w # or -1s, 10mins\n```\n";
        let words = durations_in_markdown(text);
        assert_eq!(words, ["1.5h", "2w", "-1s", "10mins"]);
        assert!(words.iter().all(|w| parse_duration(w).is_err()));
        for not_a_duration in ["64MiB", "127", "sha256", "v1", "2xx", "9091", "--since"] {
            assert!(!looks_like_duration(not_a_duration), "{not_a_duration}");
        }
    }

    #[test]
    fn sizes() {
        let ok = [
            ("1MiB", 1 << 20),
            ("64MiB", 64 << 20),
            ("512", 512),
            ("2KB", 2000),
            ("1 GiB", 1 << 30),
        ];
        for (text, n) in ok {
            assert_eq!(text.parse::<ByteSize>().unwrap().0, n, "{text}");
        }
        for bad in ["", "MiB", "1XB", "-1", "99999999999999999999GiB"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad}");
        }
        assert_eq!(ByteSize(64 << 20).to_string(), "64MiB");
    }
}
