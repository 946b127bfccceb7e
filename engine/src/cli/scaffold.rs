//! `hookwise plugins new NAME --lang L`: writes a ready plugin project from the templates in
//! `plugins/templates/` (embedded in the binary), with the language's SDK and, for component
//! languages, the plugin contract (`plugins/wit`) beside it, so the project builds outside this
//! repository.

use std::path::{Path, PathBuf};

use clap::ValueEnum;

/// A language `plugins new` writes a project for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Lang {
    Rust,
    Js,
    Python,
    Go,
    C,
    Zig,
    Assemblyscript,
}

/// One file of a project: where it goes and what it holds (before `__NAME__` is replaced).
struct File {
    path: &'static str,
    text: &'static str,
}

macro_rules! files {
    ($base:literal: $($path:literal),* $(,)?) => {
        &[$(File {
            path: $path,
            text: include_str!(concat!("../../../plugins/", $base, "/", $path)),
        }),*]
    };
}

/// Files every project gets: a sample event and input, and the input's schema.
const COMMON: &[File] = files!("templates/common": "event.json", "input.json", "input.schema.json");

/// The plugin contract, for languages that build components.
const WIT: &[File] = files!("wit":
    "plugin.wit", "deps/cli.wit", "deps/clocks.wit", "deps/filesystem.wit", "deps/http.wit",
    "deps/io.wit", "deps/random.wit", "deps/sockets.wit",
);

/// What one language's project is made of.
struct Template {
    lang: Lang,
    files: &'static [File],
    /// The language's SDK and the folder of the project it goes to.
    sdk: (&'static [File], &'static str),
    /// Whether the project needs the contract in `wit/`.
    wit: bool,
    /// Whether the project gets the shared sample event, input and input schema (templates
    /// with examples of their own do not).
    common: bool,
    /// The command that builds it, for the closing message.
    build: &'static str,
}

const TEMPLATES: &[Template] = &[
    Template {
        lang: Lang::Rust,
        files: files!("templates/rust": "Cargo.toml", "src/lib.rs", "build.sh", "README.md"),
        sdk: (
            files!("sdk": "Cargo.toml", "src/lib.rs", "src/db.rs", "src/http.rs", "src/log.rs"),
            "hookwise-plugin-sdk",
        ),
        wit: true,
        common: true,
        build: "./build.sh",
    },
    Template {
        lang: Lang::Js,
        files: files!("templates/js": "package.json", "package-lock.json", "plugin.js", "build.sh", "README.md"),
        sdk: (&[], ""),
        wit: true,
        common: true,
        build: "./build.sh",
    },
    Template {
        lang: Lang::Python,
        files: files!("templates/python": "app.py", "requirements.txt", "build.sh", "README.md"),
        sdk: (&[], ""),
        wit: true,
        common: true,
        build: "./build.sh",
    },
    Template {
        lang: Lang::Go,
        files: files!("templates/go": ".gitignore", "README.md", "build.sh", "event.json", "go.mod", "input.json", "input.schema.json", "main.go", "requirements.txt"),
        sdk: (
            files!("sdk/go": "go.mod", "hookwise.go", "imports_other.go", "imports_wasip1.go"),
            "sdk",
        ),
        wit: false,
        common: false,
        build: "./build.sh",
    },
    Template {
        lang: Lang::C,
        files: files!("templates/c": ".gitignore", "README.md", "build.sh", "event.json", "input.json", "input.schema.json", "plugin.c", "requirements.txt"),
        sdk: (files!("sdk/c": "hookwise.c", "hookwise.h"), "sdk"),
        wit: false,
        common: false,
        build: "./build.sh",
    },
    Template {
        lang: Lang::Zig,
        files: files!("templates/zig": ".gitignore", "README.md", "build.sh", "event.json", "input.json", "input.schema.json", "main.zig", "requirements.txt"),
        sdk: (files!("sdk/zig": "hookwise.zig"), "sdk"),
        wit: false,
        common: false,
        build: "./build.sh",
    },
    Template {
        lang: Lang::Assemblyscript,
        files: files!("templates/assemblyscript": ".gitignore", "README.md", "assembly/index.ts", "build.sh", "event.json", "input.json", "input.schema.json", "package-lock.json", "package.json"),
        sdk: (files!("sdk/assemblyscript": "hookwise.ts"), "sdk"),
        wit: false,
        common: false,
        build: "./build.sh",
    },
];

/// Why a project cannot be written.
#[derive(Debug, thiserror::Error)]
pub enum ScaffoldError {
    #[error(
        "plugin name `{0}`: use 1 to 64 lowercase letters, digits, `-` and `_`, starting with a \
         letter"
    )]
    BadName(String),
    #[error("{0} exists already; choose another name or --dir")]
    Exists(PathBuf),
    #[error("no template for {0:?} in this build")]
    NoTemplate(Lang),
    #[error("cannot write {path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
}

/// Whether `name` can name a plugin, its package and its file in every language.
fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// Writes a new project for plugin `name` in language `lang` into `dir` (which must not
/// exist). Returns the files written, relative to `dir`, and the build command.
pub fn write(
    name: &str,
    lang: Lang,
    dir: &Path,
) -> Result<(Vec<String>, &'static str), ScaffoldError> {
    if !valid_name(name) {
        return Err(ScaffoldError::BadName(name.to_string()));
    }
    if dir.exists() {
        return Err(ScaffoldError::Exists(dir.to_path_buf()));
    }
    let template = TEMPLATES
        .iter()
        .find(|t| t.lang == lang)
        .ok_or(ScaffoldError::NoTemplate(lang))?;
    let crate_name = name.replace('-', "_");
    let fill = |text: &str| {
        text.replace("__NAME__", name)
            .replace("__CRATE__", &crate_name)
    };
    let mut written = Vec::new();
    let mut put = |relative: String, text: String| -> Result<(), ScaffoldError> {
        let path = dir.join(&relative);
        let io = |error| ScaffoldError::Io {
            path: path.clone(),
            error,
        };
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        std::fs::write(&path, text).map_err(io)?;
        if relative.ends_with(".sh") {
            make_executable(&path).map_err(io)?;
        }
        written.push(relative);
        Ok(())
    };
    let common = if template.common { COMMON } else { &[] };
    for file in template.files.iter().chain(common) {
        put(file.path.to_string(), fill(file.text))?;
    }
    let (sdk, sdk_dir) = template.sdk;
    for file in sdk {
        put(format!("{sdk_dir}/{}", file.path), file.text.to_string())?;
    }
    if template.wit {
        for file in WIT {
            put(format!("wit/{}", file.path), file.text.to_string())?;
        }
    }
    Ok((written, template.build))
}

#[cfg(unix)]
fn make_executable(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
}

#[cfg(not(unix))]
fn make_executable(_: &Path) -> std::io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file under a folder, relative to it.
    fn on_disk(folder: &str) -> Vec<String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../plugins")
            .join(folder);
        let mut out = Vec::new();
        let mut stack = vec![root.clone()];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    let relative = path.strip_prefix(&root).unwrap();
                    out.push(relative.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        out.sort();
        out
    }

    fn listed(files: &[File]) -> Vec<String> {
        let mut out: Vec<String> = files.iter().map(|f| f.path.to_string()).collect();
        out.sort();
        out
    }

    /// A file added to a template, the SDK or the contract without being listed here would be
    /// missing from every project written.
    #[test]
    fn every_file_on_disk_is_embedded() {
        assert_eq!(listed(COMMON), on_disk("templates/common"));
        assert_eq!(listed(WIT), on_disk("wit"));
        for template in TEMPLATES {
            let folder = format!(
                "templates/{}",
                template.lang.to_possible_value().unwrap().get_name()
            );
            assert_eq!(listed(template.files), on_disk(&folder), "{folder}");
        }
        for template in TEMPLATES {
            let lang = template
                .lang
                .to_possible_value()
                .unwrap()
                .get_name()
                .to_string();
            let sdk = match template.lang {
                Lang::Rust => on_disk("sdk")
                    .into_iter()
                    .filter(|p| p == "Cargo.toml" || p.starts_with("src/"))
                    .collect(),
                Lang::Js | Lang::Python => Vec::new(),
                _ => on_disk(&format!("sdk/{lang}")),
            };
            assert_eq!(listed(template.sdk.0), sdk, "{lang}");
        }
    }

    #[test]
    fn names_and_places_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["", "1abc", "a b", "../x", "a/b", "Upper", &"x".repeat(65)] {
            assert!(
                matches!(
                    write(bad, Lang::Rust, &dir.path().join("p")),
                    Err(ScaffoldError::BadName(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            write("ok", Lang::Rust, dir.path()),
            Err(ScaffoldError::Exists(_))
        ));
        let project = dir.path().join("label-pr");
        let (files, _) = write("label-pr", Lang::Rust, &project).unwrap();
        assert!(files.contains(&"hookwise-plugin-sdk/src/lib.rs".to_string()));
        assert!(files.contains(&"wit/plugin.wit".to_string()));
        let cargo = std::fs::read_to_string(project.join("Cargo.toml")).unwrap();
        assert!(cargo.contains("name = \"label-pr\""), "{cargo}");
        let build = std::fs::read_to_string(project.join("build.sh")).unwrap();
        assert!(build.contains("release/label_pr.wasm"), "{build}");
        let schema = std::fs::read_to_string(project.join("input.schema.json")).unwrap();
        assert!(!schema.contains("__NAME__"));
    }
}
