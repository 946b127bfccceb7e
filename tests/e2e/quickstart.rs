//! The README's quickstart, run as written (`examples/quickstart/demo.sh`): a GitHub push signed
//! with `hookwise sign` and sent with curl leads to a row written by `write-db` and a message
//! received by a local webhook receiver through `notify`. Only the ports differ, so the test can
//! run beside others.

use std::path::Path;

use crate::support::hookwise_bin;

/// A port that was free a moment ago. The one use of this racy pattern left: the demo script
/// runs as written and binds its listeners by number (and polls them by number), so it cannot
/// be handed port 0.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}

#[test]
fn quickstart_demo_writes_a_row_and_delivers_a_message() {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/quickstart");
    let dir = tempfile::tempdir().unwrap();
    copy_dir(&example, dir.path());
    let receiver = free_port();
    for file in ["hookwise.yaml", "rules/push.yaml"] {
        let path = dir.path().join(file);
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("127.0.0.1:9000"),
            "{file} no longer names the receiver"
        );
        std::fs::write(
            &path,
            text.replace("127.0.0.1:9000", &format!("127.0.0.1:{receiver}")),
        )
        .unwrap();
    }
    let out = std::process::Command::new("bash")
        .arg(dir.path().join("demo.sh"))
        .env("HOOKWISE", hookwise_bin())
        .env("PORT", free_port().to_string())
        .env("ADMIN_PORT", free_port().to_string())
        .env("RECEIVER_PORT", receiver.to_string())
        .env("HOOKWISE_LOG", "warn")
        .output()
        .expect("run demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("\"duplicate\":false"), "{stdout}");
    assert!(
        stdout.contains("'octo-org/octo-repo', 'main', 'octocat', 2)"),
        "no row: {stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("\"text\":\"octocat pushed 2 commit(s) to octo-org/octo-repo\""),
        "no message: {stdout}\n{stderr}"
    );
}
