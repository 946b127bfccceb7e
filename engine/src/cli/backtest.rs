//! `hookwise test --against-store`: the rules (the configured ones, or files given) tried
//! against the newest stored events of their sources; nothing runs, nothing is written.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use crate::dispatch::backtest::{self, MAX_LIMIT, Window};

use super::ops::{failed, time_arg, with_store};
use super::signing::usage;

/// The `test` options a backtest takes.
pub struct BacktestArgs {
    pub config: Option<PathBuf>,
    pub rules: Vec<PathBuf>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<usize>,
    pub rule: Option<String>,
    pub json: bool,
}

pub fn run(args: BacktestArgs) -> ExitCode {
    let limit = args.limit.unwrap_or(backtest::DEFAULT_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return usage(format_args!("--limit must be 1 to {MAX_LIMIT}"));
    }
    let window = match (
        time_arg("--since", args.since.as_deref()),
        time_arg("--until", args.until.as_deref()),
    ) {
        (Ok(since), Ok(until)) => Window {
            since,
            until,
            limit,
        },
        (Err(e), _) | (_, Err(e)) => return usage(e),
    };
    let (files, rule, json) = (args.rules, args.rule, args.json);
    with_store(args.config.as_deref(), |config, store, out| async move {
        let rules = match super::rules_to_try(&config, &files, None) {
            Ok(rules) => rules,
            Err(problems) => {
                super::print_problems(&problems);
                return ExitCode::FAILURE;
            }
        };
        let result = backtest::run(
            &store,
            Arc::new(config),
            Arc::new(rules),
            rule.as_deref(),
            window,
        )
        .await;
        match result {
            Ok(done) if json => {
                out.json(&done.to_json());
                ExitCode::SUCCESS
            }
            Ok(done) => {
                out.text(&done.render_text());
                ExitCode::SUCCESS
            }
            Err(e) => failed(e),
        }
    })
}
