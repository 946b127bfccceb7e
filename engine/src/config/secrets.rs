//! `${env:NAME}` and `${file:PATH}` references.

use std::path::Path;

/// Looks up an environment variable (injected so tests need not touch the process environment).
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub use crate::verify::Secret;

/// True when `raw` is made only of references (no literal secret text).
pub fn is_reference(raw: &str) -> bool {
    let mut rest = raw.trim();
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let Some(after) = rest.strip_prefix("${") else {
            return false;
        };
        let Some(end) = after.find('}') else {
            return false;
        };
        rest = &after[end + 1..];
    }
    true
}

/// Replaces every `${env:NAME}` and `${file:PATH}` in `raw`. Files are read relative to `base`,
/// with one trailing newline removed. Unknown `${kind:...}` references are errors.
pub fn interpolate(
    raw: &str,
    base: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<String, String> {
    let mut out = String::with_capacity(raw.len());
    let mut rest = raw;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unclosed `${{` in `{raw}`"));
        };
        let reference = &after[..end];
        let value = match reference.split_once(':') {
            Some(("env", name)) => {
                env(name).ok_or_else(|| format!("environment variable `{name}` is not set"))?
            }
            Some(("file", path)) => {
                let full = if Path::new(path).is_absolute() {
                    Path::new(path).to_path_buf()
                } else {
                    base.join(path)
                };
                let text = std::fs::read_to_string(&full)
                    .map_err(|e| format!("cannot read secret file `{}`: {e}", full.display()))?;
                text.strip_suffix('\n')
                    .map(|t| t.strip_suffix('\r').unwrap_or(t))
                    .unwrap_or(&text)
                    .to_string()
            }
            _ => {
                return Err(format!(
                    "`${{{reference}}}` is not ${{env:NAME}} or ${{file:PATH}}"
                ));
            }
        };
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(name: &str) -> Option<String> {
        (name == "TOKEN").then(|| "t0ken".to_string())
    }

    #[test]
    fn references() {
        assert!(is_reference("${env:A}"));
        assert!(is_reference("${env:A}${file:b}"));
        assert!(!is_reference("plain"));
        assert!(!is_reference("x${env:A}"));
        assert!(!is_reference(""));
    }

    #[test]
    fn interpolation() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.txt"), "from-file\n").unwrap();
        let got = interpolate("a ${env:TOKEN} b ${file:s.txt}", dir.path(), &env).unwrap();
        assert_eq!(got, "a t0ken b from-file");
        assert!(
            interpolate("${env:MISSING}", dir.path(), &env)
                .unwrap_err()
                .contains("MISSING")
        );
        assert!(
            interpolate("${file:nope}", dir.path(), &env)
                .unwrap_err()
                .contains("nope")
        );
        assert!(interpolate("${vault:x}", dir.path(), &env).is_err());
        assert!(interpolate("${env:TOKEN", dir.path(), &env).is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?} {s}"), "*** ***");
    }
}
