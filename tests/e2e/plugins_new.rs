//! `hookwise plugins new`: the project it writes builds outside this repository, the plugin
//! fits the contract, and `hookwise plugins run` on the project's sample event answers what the
//! worked example says.

use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};

use crate::cli::run;
use crate::lang_examples::{info_lines, path_with_hookwise, run_template};

/// `hookwise plugins run` on the project's sample event and input (the common ones of the
/// Rust, JavaScript and Python templates): the worked example's output and log line.
fn runs_its_worked_example(wasm: &Path, project: &Path) {
    let run = run_template(wasm, project);
    assert_eq!(
        run["output"],
        json!({"message": "Thanks alice: 1 commit(s) to acme/web"}),
        "{run:#}"
    );
    let id = run["event"]["id"].as_str().unwrap_or_default();
    assert_eq!(
        info_lines(&run),
        vec![format!(
            "event {id} (attempt 1): alice pushed 1 commit(s) to acme/web"
        )],
        "{run:#}"
    );
}

/// Writes a project for `lang` into a fresh temp dir; returns the dir and the project path.
fn new_project(lang: &str, name: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = run(dir.path(), &["plugins", "new", name, "--lang", lang]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("next: cd "), "{out}");
    let project = dir.path().join(name);
    (dir, project)
}

/// Runs the project's build script, with this hookwise first on PATH (the scripts of languages
/// without an SDK macro declare the input schema with it). Rust crates come from the local
/// cache; the JavaScript and Python tools from npm and PyPI (their caches after a first run).
fn build(project: &Path, target: &Path) {
    let output = Command::new("bash")
        .arg("build.sh")
        .current_dir(project)
        .env("PATH", path_with_hookwise())
        .env("CARGO_TARGET_DIR", target)
        .env("CARGO_NET_OFFLINE", "true")
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "build.sh failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_new_rust_plugin_builds_outside_the_repository_and_fits() {
    let (dir, project) = new_project("rust", "greet-pushes");
    for file in [
        "Cargo.toml",
        "src/lib.rs",
        "build.sh",
        "README.md",
        "event.json",
        "input.json",
        "input.schema.json",
        "hookwise-plugin-sdk/src/lib.rs",
        "wit/plugin.wit",
    ] {
        assert!(project.join(file).is_file(), "{file} missing");
    }
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugins-new-rust");
    build(&project, &target);
    let wasm = project.join("greet-pushes.wasm");
    let (code, out, err) = run(
        dir.path(),
        &["plugins", "inspect", &wasm.display().to_string(), "--json"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let inspection: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspection["fits"], true, "{inspection:#}");
    assert_eq!(inspection["input_schema"]["title"], "greet-pushes input");
    runs_its_worked_example(&wasm, &project);

    // Again into the same place: refused, nothing overwritten.
    let (code, _, err) = run(
        dir.path(),
        &["plugins", "new", "greet-pushes", "--lang", "rust"],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("exists already"), "{err}");
    let (code, _, err) = run(dir.path(), &["plugins", "new", "../up", "--lang", "rust"]);
    assert_eq!(code, 2, "{err}");
}

/// Builds the project of a component language and checks the result fits and declares the
/// template's input schema.
fn builds_and_fits(lang: &str, name: &str) {
    let (dir, project) = new_project(lang, name);
    assert!(project.join("wit/plugin.wit").is_file());
    build(
        &project,
        &Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugins-new-unused"),
    );
    let wasm = project.join(format!("{name}.wasm"));
    let (code, out, err) = run(
        dir.path(),
        &["plugins", "inspect", &wasm.display().to_string(), "--json"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let inspection: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(inspection["fits"], true, "{inspection:#}");
    assert_eq!(inspection["input_schema"]["title"], format!("{name} input"));
    runs_its_worked_example(&wasm, &project);
}

#[test]
fn a_new_javascript_plugin_builds_and_fits() {
    builds_and_fits("js", "greet-js");
}

#[test]
fn a_new_python_plugin_builds_and_fits() {
    builds_and_fits("python", "greet_py");
}
