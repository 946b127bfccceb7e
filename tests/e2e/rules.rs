//! Rules as data: every file in rules/ passes `hookwise check`, and every case in
//! tests/rules/cases/ (event in, expected dry run out) passes through `hookwise test --json`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

use crate::support::hookwise_bin;

const SECRETS: &[&str] = &[
    "SLACK_DEPLOYS_URL",
    "SLACK_ONCALL_URL",
    "SLACK_CI_URL",
    "SLACK_BILLING_URL",
    "SLACK_SALES_URL",
    "DISCORD_REVIEWS_URL",
    "DISCORD_BILLING_URL",
    "DEPLOY_API_TOKEN",
    "CRM_API_TOKEN",
    "PRIVACY_API_TOKEN",
    "INCIDENT_API_TOKEN",
    "TEAMS_OPS_URL",
    "POSTMARK_TOKEN",
    "FULFILMENT_SIGNING_KEY",
    "AUDIT_WEBHOOK_SECRET",
];

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The value a test secret gets: easy to spot if it ever leaks.
fn secret_value(name: &str) -> String {
    format!("leaked-secret-value-{name}")
}

fn hookwise(args: &[&str]) -> (i32, String, String) {
    let mut cmd = Command::new(hookwise_bin());
    cmd.args(args)
        .current_dir(repo().join("tests/rules"))
        .env_remove("HOOKWISE_CONFIG");
    cmd.env("WEBHOOK_SECRET", "test-webhook-secret");
    // Standard Webhooks secrets are `whsec_` + base64; the config check reads them so.
    cmd.env(
        "STANDARD_WEBHOOKS_SECRET",
        "whsec_dGVzdC13ZWJob29rLXNlY3JldA==",
    );
    for name in SECRETS {
        cmd.env(name, secret_value(name));
    }
    let out = cmd.output().expect("run hookwise");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn every_example_rule_passes_check() {
    let (code, out, err) = hookwise(&["check", "--config", "hookwise.yaml"]);
    assert_eq!(code, 0, "{out}{err}");
    let count: usize = std::fs::read_dir(repo().join("rules"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| std::fs::read_dir(e.path()).map(|d| d.count()).unwrap_or(1))
        .sum();
    assert!(count >= 12, "only {count} example rule files");
    assert!(out.contains("rules"), "{out}");
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Case {
    description: String,
    source: String,
    event_type: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    payload: Value,
    expect: Value,
}

#[test]
fn every_example_case_passes_through_hookwise_test_json() {
    let dir = repo().join("tests/rules/cases");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    files.sort();
    assert!(files.len() >= 12, "only {} cases", files.len());
    let scratch = tempfile::tempdir().unwrap();
    let mut failures = Vec::new();
    for file in &files {
        let case: Case = serde_yaml::from_str(&std::fs::read_to_string(file).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        let payload = scratch.path().join("payload.json");
        std::fs::write(&payload, case.payload.to_string()).unwrap();
        let payload = payload.to_string_lossy().into_owned();
        let mut args = vec![
            "test",
            "--config",
            "hookwise.yaml",
            "--source",
            &case.source,
            "--event-type",
            &case.event_type,
            "--payload",
            &payload,
            "--json",
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>();
        for (k, v) in &case.headers {
            args.push("--header".into());
            args.push(format!("{k}: {v}"));
        }
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let (code, out, err) = hookwise(&args);
        if code != 0 {
            failures.push(format!("{}: exit {code}: {err}", file.display()));
            continue;
        }
        for name in SECRETS {
            assert!(
                !out.contains(&secret_value(name)),
                "{}: secret {name} leaked",
                file.display()
            );
        }
        let got: Value = serde_json::from_str(&out)
            .unwrap_or_else(|e| panic!("{}: not JSON ({e}): {out}", file.display()));
        // `matched` must be exactly as expected. The case lists the misses among the rules the
        // index selects; `hookwise test` also lists every other rule, so each expected miss must
        // be present with its reason.
        if got["matched"] != case.expect["matched"] {
            failures.push(format!(
                "{} ({}): matched\n  got:  {}\n  want: {}",
                file.display(),
                case.description,
                got["matched"],
                case.expect["matched"]
            ));
        }
        let misses = got["not_matched"].as_array().cloned().unwrap_or_default();
        for want in case.expect["not_matched"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            if !misses.contains(&want) {
                failures.push(format!(
                    "{}: missing miss {want}\n  got: {}",
                    file.display(),
                    got["not_matched"]
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn rule_schema_file_is_current() {
    let generated = serde_json::to_string_pretty(&hookwise::rules::rule_file_schema_for_editors())
        .unwrap()
        + "\n";
    let path = repo().join("schemas/rules.schema.json");
    if std::env::var_os("HOOKWISE_UPDATE_SCHEMAS").is_some() {
        std::fs::write(&path, &generated).unwrap();
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "schemas/rules.schema.json differs from the Rust types; \
         regenerate it with HOOKWISE_UPDATE_SCHEMAS=1 cargo test -p hookwise --test e2e rule_schema_file_is_current"
    );
}
