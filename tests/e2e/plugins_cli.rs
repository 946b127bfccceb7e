//! `hookwise plugins list` and `hookwise plugins inspect`, run as the real binary on the
//! example plugins.

use serde_json::Value;

use crate::cli::run;
use crate::support::wasm;

/// Header of a WebAssembly component with nothing in it.
const EMPTY_COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";
/// Header of a core module with nothing in it (no `_start`).
const EMPTY_MODULE: &[u8] = b"\0asm\x01\0\0\0";

fn inspect_json(dir: &std::path::Path, file: &std::path::Path) -> (i32, Value) {
    let (code, out, err) = run(
        dir,
        &["plugins", "inspect", &file.display().to_string(), "--json"],
    );
    let value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    (code, value)
}

fn names(items: &Value) -> Vec<&str> {
    items
        .as_array()
        .expect("array")
        .iter()
        .filter_map(|i| i["name"].as_str())
        .collect()
}

#[test]
fn inspect_components_reports_imports_exports_and_needed_grants() {
    let dir = tempfile::tempdir().unwrap();
    let (code, noop) = inspect_json(dir.path(), &wasm("noop"));
    assert_eq!(code, 0, "{noop}");
    assert_eq!(noop["abi"], "component");
    assert_eq!(noop["fits"], true);
    assert_eq!(noop["needs"], serde_json::json!([]));
    assert_eq!(names(&noop["exports"]), vec!["handle"]);

    let (code, hostile) = inspect_json(dir.path(), &wasm("hostile"));
    assert_eq!(code, 0, "{hostile}");
    assert_eq!(hostile["needs"], serde_json::json!(["http", "db"]));
    let imports = names(&hostile["imports"]);
    assert!(
        imports.contains(&"hookwise:plugin/db@0.1.0")
            && imports
                .iter()
                .any(|i| i.starts_with("wasi:http/outgoing-handler@")),
        "{imports:?}"
    );
    let db = hostile["imports"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == "hookwise:plugin/db@0.1.0")
        .unwrap();
    assert_eq!(db["kind"], "instance");
    assert_eq!(db["functions"], serde_json::json!(["execute"]));

    let (code, out, _) = run(
        dir.path(),
        &["plugins", "inspect", &wasm("hostile").display().to_string()],
    );
    assert_eq!(code, 0);
    for line in [
        "kind: component",
        "needs: allow.http, allow.db",
        "fits: yes",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}");
    }
}

#[test]
fn inspect_command_module_lists_wasi_imports_and_start() {
    let dir = tempfile::tempdir().unwrap();
    let (code, echo) = inspect_json(dir.path(), &wasm("command-echo"));
    assert_eq!(code, 0, "{echo}");
    assert_eq!(echo["abi"], "command");
    assert_eq!(echo["has_start"], true);
    assert_eq!(echo["fits"], true);
    let imports = names(&echo["imports"]);
    assert!(!imports.is_empty());
    assert!(
        imports
            .iter()
            .all(|i| i.starts_with("wasi_snapshot_preview1::")),
        "{imports:?}"
    );
}

#[test]
fn inspect_explains_what_does_not_fit() {
    let dir = tempfile::tempdir().unwrap();
    let component = dir.path().join("empty-component.wasm");
    std::fs::write(&component, EMPTY_COMPONENT).unwrap();
    let (code, out) = inspect_json(dir.path(), &component);
    assert_eq!(code, 1, "{out}");
    assert_eq!(out["fits"], false);
    assert!(
        out["problems"][0].as_str().unwrap().contains("handle"),
        "{out}"
    );

    let module = dir.path().join("empty-module.wasm");
    std::fs::write(&module, EMPTY_MODULE).unwrap();
    let (code, out, _) = run(
        dir.path(),
        &["plugins", "inspect", &module.display().to_string()],
    );
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("fits: no") && out.contains("_start"), "{out}");
}

#[test]
fn inspect_usage_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let text = dir.path().join("notes.wasm");
    std::fs::write(&text, "definitely not wasm").unwrap();
    let (code, _, err) = run(
        dir.path(),
        &["plugins", "inspect", &text.display().to_string()],
    );
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("not a WebAssembly"), "{err}");

    let (code, _, err) = run(dir.path(), &["plugins", "inspect", "missing.wasm"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("cannot read"), "{err}");
}

#[test]
fn list_loads_every_configured_plugin() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("broken.wasm"), b"\0asm\x01\0\0\0garbage").unwrap();
    let config = format!(
        "listen: 127.0.0.1:8443
connections:
  app: sqlite://app.db
plugins:
  - name: notify
  - name: noop
    path: {noop}
  - name: hostile
    path: {hostile}
    limits: {{ memory: 16MiB, timeout: 2s, concurrency: 3 }}
    allow: {{ http: [api.example.com], db: [app] }}
  - name: echo
    path: {echo}
",
        noop = wasm("noop").display(),
        hostile = wasm("hostile").display(),
        echo = wasm("command-echo").display(),
    );
    std::fs::write(dir.path().join("good.yaml"), &config).unwrap();
    let (code, out, err) = run(
        dir.path(),
        &["plugins", "list", "--config", "good.yaml", "--json"],
    );
    assert_eq!(code, 0, "{out}{err}");
    let listed: Value = serde_json::from_str(&out).expect("JSON");
    let by_name = |name: &str| -> Value {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} missing from {listed}"))
    };
    let notify = by_name("notify");
    assert_eq!(notify["builtin"], true);
    // Built-ins come from the components embedded in the binary.
    assert_eq!(notify["status"], "ok");
    assert_eq!(notify["abi"], "component");
    let hostile = by_name("hostile");
    assert_eq!(hostile["status"], "ok");
    assert_eq!(hostile["abi"], "component");
    assert_eq!(hostile["sha256"].as_str().map(str::len), Some(64));
    assert_eq!(hostile["limits"]["memory_bytes"], 16 * 1024 * 1024);
    assert_eq!(hostile["limits"]["timeout_ms"], 2000);
    assert_eq!(hostile["limits"]["concurrency"], 3);
    assert_eq!(
        hostile["grants"]["http"],
        serde_json::json!(["api.example.com"])
    );
    assert_eq!(hostile["grants"]["db"], serde_json::json!(["app"]));
    assert_eq!(by_name("echo")["abi"], "command");
    assert_eq!(by_name("noop")["status"], "ok");

    let (code, out, _) = run(dir.path(), &["plugins", "list", "--config", "good.yaml"]);
    assert_eq!(code, 0);
    assert!(out.contains("abi: wasip1 command"), "{out}");
    assert!(
        out.contains("grants: http api.example.com; db app"),
        "{out}"
    );

    let broken = format!("{config}  - name: broken\n    path: broken.wasm\n");
    std::fs::write(dir.path().join("broken.yaml"), broken).unwrap();
    let (code, out, err) = run(dir.path(), &["plugins", "list", "--config", "broken.yaml"]);
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        out.contains("broken  ") && out.contains("error: plugin broken"),
        "{out}"
    );
    assert!(
        out.contains("hostile  "),
        "the others are still listed:\n{out}"
    );
    assert!(err.contains("1 plugin failed to load"), "{err}");
}
