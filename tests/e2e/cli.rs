//! The command line as users run it.

use std::process::Command;

use crate::support::hookwise_bin;

pub(crate) fn run(dir: &std::path::Path, args: &[&str]) -> (i32, String, String) {
    let out = Command::new(hookwise_bin())
        .args(args)
        .current_dir(dir)
        .env_remove("HOOKWISE_CONFIG")
        .output()
        .expect("run hookwise");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn check_lists_every_problem_with_its_place() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "listen: 127.0.0.1:8443\nstore: mysql://nope\nsources:\n  - id: github\n    provider: github\n    secrets: [\"${env:HOOKWISE_TEST_UNSET_SECRET}\"]\nplugins:\n  - name: mystery\n",
    )
    .unwrap();
    let (code, _, err) = run(dir.path(), &["check", "--config", "bad.yaml"]);
    assert_eq!(code, 1, "{err}");
    let expected = ["bad.yaml:2:8: ", "bad.yaml:6:15: ", "bad.yaml:8:5: "];
    for at in expected {
        assert!(err.contains(at), "missing a problem at {at} in:\n{err}");
    }
    assert!(err.contains("3 problems"), "{err}");

    std::fs::write(dir.path().join("good.yaml"), "listen: 127.0.0.1:8443\n").unwrap();
    let (code, out, err) = run(dir.path(), &["check", "--config", "good.yaml"]);
    assert_eq!(code, 0, "{out}{err}");
}

#[test]
fn check_without_config_uses_the_embedded_default() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, _) = run(dir.path(), &["check"]);
    assert_eq!(code, 0);
    assert!(out.contains("embedded default"), "{out}");
}

#[test]
fn usage_errors_exit_2_and_help_works_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(run(dir.path(), &["frobnicate"]).0, 2);
    for cmd in [
        vec!["--help"],
        vec!["serve", "--help"],
        vec!["check", "--help"],
        vec!["plugins", "list", "--help"],
        vec!["plugins", "inspect", "--help"],
    ] {
        let (code, out, _) = run(dir.path(), &cmd);
        assert_eq!(code, 0, "{cmd:?}");
        assert!(out.contains("Usage"), "{out}");
    }
}
