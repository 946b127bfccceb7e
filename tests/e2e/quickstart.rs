//! The README's quickstart, run as written (`examples/quickstart/demo.sh`): a GitHub push signed
//! with `hookwise sign` and sent with curl leads to a row written by `write-db` and a message
//! received by a local webhook receiver through `notify`. Only the ports differ, so the test can
//! run beside others.

use std::path::Path;

use crate::support::hookwise_bin;

/// `N` distinct ports that were free a moment ago, taken below the kernel's ephemeral range
/// (32768 and up on Linux): the demo script runs as written and binds its listeners by number,
/// so it cannot be handed port 0, and a port from that range could meanwhile be handed to
/// another test's port-0 listener or outgoing connection. Below it, only a process that names
/// the port could take it between this check and the demo's bind.
fn free_ports<const N: usize>() -> [u16; N] {
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    let seed = std::process::id()
        ^ std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
    let mut held = Vec::with_capacity(N);
    let mut ports = [0u16; N];
    for offset in 0..SPAN {
        if held.len() == N {
            break;
        }
        let port = (LOW + (seed.wrapping_add(offset.wrapping_mul(7)) % SPAN)) as u16;
        if let Ok(listener) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            ports[held.len()] = port;
            held.push(listener);
        }
    }
    assert_eq!(held.len(), N, "no {N} free ports below the ephemeral range");
    ports
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
    let [port, admin_port, receiver] = free_ports::<3>();
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
        .env("PORT", port.to_string())
        .env("ADMIN_PORT", admin_port.to_string())
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
