//! The Zig and AssemblyScript example plugins: core modules that log, call HTTP and write to a
//! database through the `hookwise` import module. Each is built from pinned registry packages
//! by its own `plugins/examples/<lang>/build.sh`, then run by a real server from a rule against
//! a loopback receiver and a SQLite file (the shared bodies of `lang_examples`: the Go example's
//! contract); and each language's `hookwise plugins new` template (with its SDK) builds into a
//! module that fits and, run with `hookwise plugins run` on its sample event, answers what its
//! README says.

use std::process::Command;

use serde_json::json;

use crate::lang_examples::{
    Lang, example_posts_inserts_and_logs, example_without_table_is_fatal_and_not_retried,
    info_lines, path_with_hookwise, run_script, run_template,
};
use crate::support::hookwise_bin;

/// The environment variable a template's build script takes to use an installed compiler, and
/// its value: the compiler the example's build installed.
fn compiler_env(lang: Lang) -> (&'static str, String) {
    let tools = lang.out_dir().join("tools");
    match lang {
        Lang::Zig => (
            "ZIG",
            format!("{} -m ziglang", tools.join("zig-venv/bin/python").display()),
        ),
        _ => (
            "ASC",
            format!(
                "node {}",
                tools
                    .join("as/node_modules/assemblyscript/bin/asc.js")
                    .display()
            ),
        ),
    }
}

/// What `hookwise plugins new NAME --lang LANG` makes: the template with the SDK. Its build
/// script (with the compiler the example's build installed, so no network) makes a module that
/// `hookwise plugins inspect` says fits and declares the template's input schema; run on the
/// template's sample event, it answers the worked example's output.
fn template_builds_and_fits(lang: Lang) {
    let (var, compiler) = compiler_env(lang);
    lang.example(); // installs the compiler
    let parent = tempfile::tempdir().unwrap();
    let status = Command::new(hookwise_bin())
        .args([
            "plugins",
            "new",
            "push-summary",
            "--lang",
            lang.name(),
            "--dir",
            "project",
        ])
        .current_dir(parent.path())
        .status()
        .expect("run hookwise plugins new");
    assert!(status.success());
    let project = parent.path().join("project");

    let script = project.as_path().join("build.sh");
    run_script(
        Command::new("bash")
            .arg(&script)
            .env(var, &compiler)
            .env("PATH", path_with_hookwise())
            .current_dir(project.as_path()),
        &script,
        "the compiler the example's build installed",
    );
    let wasm = project.as_path().join("push-summary.wasm");
    let out = Command::new(hookwise_bin())
        .args(["plugins", "inspect"])
        .arg(&wasm)
        .output()
        .expect("run hookwise plugins inspect");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("fits: yes"), "{text}");
    assert!(text.contains("_start exported: yes"), "{text}");
    // The handler may POST its summary; it never touches a database.
    assert!(text.contains("needs: allow.http\n"), "{text}");
    // build.sh stored input.schema.json in the module.
    assert!(text.contains("\"title\":\"push-summary input\""), "{text}");
    // The worked example of the template's README, on its sample event and input.
    let run = run_template(&wasm, &project);
    assert_eq!(
        run["output"],
        json!({"channel": "#deploys", "text": "mona pushed 1 commit(s) to main", "ref": "refs/heads/main", "commits": 1, "posted": false}),
        "{run:#}"
    );
    let id = run["event"]["id"].as_str().unwrap_or_default();
    assert_eq!(
        info_lines(&run),
        vec![format!("event {id}: mona pushed 1 commit(s) to main")],
        "{run:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zig_example_posts_inserts_and_logs_through_a_served_rule() {
    example_posts_inserts_and_logs(Lang::Zig).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn zig_example_without_table_is_fatal_and_not_retried() {
    example_without_table_is_fatal_and_not_retried(Lang::Zig).await;
}

#[test]
fn zig_template_builds_and_fits() {
    template_builds_and_fits(Lang::Zig);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn assemblyscript_example_posts_inserts_and_logs_through_a_served_rule() {
    example_posts_inserts_and_logs(Lang::AssemblyScript).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn assemblyscript_example_without_table_is_fatal_and_not_retried() {
    example_without_table_is_fatal_and_not_retried(Lang::AssemblyScript).await;
}

#[test]
fn assemblyscript_template_builds_and_fits() {
    template_builds_and_fits(Lang::AssemblyScript);
}
