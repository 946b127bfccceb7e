//! Commands over stored work: `events`, `logs`, `replay`, `dead-letters`. They open the store
//! of a config directly, so they work while a server runs on it (SQLite in WAL mode, or a shared
//! PostgreSQL; a running server picks up replayed work within a second), or with `--admin URL`
//! go through a node's admin API. Both ways give the same structures, which one renderer prints.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Args, Subcommand};

use crate::config::Config;
use crate::dispatch::ops::{self, Purged, ReplayError, Replayed, Replays, Story};
use crate::model::{EventId, EventOutcome, EventStatus, ExecutionId, Millis};
use crate::scrub::Scrubber;
use crate::store::{DeadLetter, DeadLetterFilter, EventFilter, ListedEvent, Store, StoreError};
use crate::yamldoc::Diagnostic;

use super::remote::{AdminArgs, AdminClient, AdminError};
use super::signing::usage;
use super::story::render_story;

/// Where an operational command finds the stored work, and how it prints it.
#[derive(Debug, Args)]
pub struct StoreArgs {
    /// Config file. Default: ./hookwise.yaml when present, else the embedded default.
    #[arg(long, short, env = "HOOKWISE_CONFIG")]
    pub config: Option<PathBuf>,
    #[command(flatten)]
    pub remote: AdminArgs,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pub common: StoreArgs,
    /// Only events of this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Only events of this type (exact, as the provider named it: `push`, `invoice.paid`).
    #[arg(long)]
    pub event_type: Option<String>,
    /// Only events with this status: pending, planned or quarantined.
    #[arg(long)]
    pub status: Option<String>,
    /// Only events with this outcome: pending, quarantined, no_match, running, failing,
    /// succeeded or dead.
    #[arg(long)]
    pub outcome: Option<String>,
    /// Only events received since: an RFC 3339 time, or an age such as `1h`, `1h30m` or `7d`.
    #[arg(long)]
    pub since: Option<String>,
    /// Only events received before: an RFC 3339 time, or an age such as `1h` or `7d`.
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
}

#[derive(Debug, Args)]
pub struct LogsArgs {
    #[command(flatten)]
    pub common: StoreArgs,
    /// The event id (as answered by the ingress: `event_id`).
    pub event_id: String,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("what").required(true).args(["event_id", "execution"])))]
pub struct ReplayArgs {
    #[command(flatten)]
    pub common: StoreArgs,
    /// Replay this event: match it against the current rules and run the actions again.
    pub event_id: Option<String>,
    /// With an event: only this rule's actions.
    #[arg(long, requires = "event_id")]
    pub rule: Option<String>,
    /// Replay one finished execution instead (same rule and action).
    #[arg(long, conflicts_with = "event_id")]
    pub execution: Option<String>,
    /// Show what would be planned; change nothing.
    #[arg(long)]
    pub dry_run: bool,
}

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// List dead letters, newest first.
    List(DeadLetterArgs),
    /// Replay the selected dead letters (a new run generation each) and take them off the list.
    Retry {
        #[command(flatten)]
        args: DeadLetterArgs,
        /// Show what would be retried; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete the selected dead letters (their executions stay in the history).
    Purge(DeadLetterArgs),
}

#[derive(Debug, Args)]
pub struct DeadLetterArgs {
    #[command(flatten)]
    pub common: StoreArgs,
    /// Only dead letters of this source.
    #[arg(long)]
    pub source: Option<String>,
    /// Only dead letters of this rule.
    #[arg(long)]
    pub rule: Option<String>,
    /// Only ones created since: an RFC 3339 time, or an age such as `1h`.
    #[arg(long)]
    pub since: Option<String>,
    /// Only ones created before: an RFC 3339 time, or an age such as `10m`.
    #[arg(long)]
    pub until: Option<String>,
    /// At most this many (list and retry).
    #[arg(long, default_value_t = 1000)]
    pub limit: i64,
}

/// Runs `f` with the store of the config at `config`, on a small runtime.
pub(super) fn with_store<F, Fut>(config: Option<&Path>, f: F) -> ExitCode
where
    F: FnOnce(Config, Store, Out) -> Fut,
    Fut: Future<Output = ExitCode>,
{
    let config = match Config::discover(config) {
        Ok(c) => c,
        Err(problems) => {
            super::print_problems(&problems);
            return ExitCode::FAILURE;
        }
    };
    block_on(async {
        let store = match crate::server::open_store(&config).await {
            Ok(s) => s,
            Err(e) => {
                eprintln!("error: cannot open the store: {e}");
                return ExitCode::FAILURE;
            }
        };
        let out = Out(super::scrubber_for(&config));
        let code = f(config, store.clone(), out).await;
        store.close().await;
        code
    })
}

/// Runs `f` with the stored work `args` names: a node's admin API with `--admin`, else the
/// store of the config.
fn with_ops<F, Fut>(args: &StoreArgs, f: F) -> ExitCode
where
    F: FnOnce(Ops, Out) -> Fut,
    Fut: Future<Output = ExitCode>,
{
    if args.remote.admin.is_none() {
        return with_store(args.config.as_deref(), |config, store, out| {
            let config = Box::new(config);
            f(Ops::Store { config, store }, out)
        });
    }
    // Checked here rather than by clap, for which a config named by HOOKWISE_CONFIG counts as
    // given: an exported variable should not stand in the way of --admin.
    if let Some(config) = &args.config {
        let from_env = std::env::var_os("HOOKWISE_CONFIG").is_some_and(|v| Path::new(&v) == config);
        if !from_env {
            return usage(format_args!(
                "--admin replaces --config: the command runs against that node, not the store of {}",
                config.display()
            ));
        }
    }
    let client = match AdminClient::new(&args.remote) {
        Ok(client) => client,
        Err(e) => return failed(e),
    };
    let scrubber = Arc::new(client.scrubber());
    crate::scrub::logs::install(scrubber.clone());
    block_on(f(Ops::Admin(client), Out(scrubber)))
}

/// Runs `work` on a small runtime of this thread.
fn block_on(work: impl Future<Output = ExitCode>) -> ExitCode {
    match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(work),
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Where an operational command's data comes from. Both give the same structures.
enum Ops {
    /// The store of a config, opened here (the config boxed: it is large, the client small).
    Store { config: Box<Config>, store: Store },
    /// A node's admin API.
    Admin(AdminClient),
}

/// Why an operational command failed.
#[derive(Debug, thiserror::Error)]
enum OpsError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Replay(#[from] ReplayError),
    #[error(transparent)]
    Admin(#[from] AdminError),
    #[error("the rules have problems")]
    Rules(Vec<Diagnostic>),
}

impl OpsError {
    /// Says what went wrong on stderr; the exit code.
    fn report(self) -> ExitCode {
        match self {
            OpsError::Rules(problems) => {
                super::print_problems(&problems);
                ExitCode::FAILURE
            }
            e => failed(e),
        }
    }
}

impl Ops {
    async fn events(&self, filter: &EventFilter) -> Result<Vec<ListedEvent>, OpsError> {
        Ok(match self {
            Ops::Store { store, .. } => store.list_events_with_outcomes(filter).await?,
            Ops::Admin(admin) => admin.events(filter).await?,
        })
    }

    async fn story(&self, event: EventId) -> Result<Option<Story>, OpsError> {
        Ok(match self {
            Ops::Store { store, .. } => ops::story(store, event).await?,
            Ops::Admin(admin) => admin.story(event).await?,
        })
    }

    /// Replays `event` with the rules of the config here, or those in force on the node.
    async fn replay_event(
        &self,
        event: EventId,
        rule: Option<&str>,
        dry_run: bool,
    ) -> Result<Vec<Replayed>, OpsError> {
        Ok(match self {
            Ops::Store { config, store } => {
                let rules = crate::rules::load_for(config).map_err(OpsError::Rules)?;
                ops::replay_event(store, config, &rules, event, rule, dry_run).await?
            }
            Ops::Admin(admin) => admin.replay_event(event, rule, dry_run).await?,
        })
    }

    async fn replay_execution(
        &self,
        execution: ExecutionId,
        dry_run: bool,
    ) -> Result<Replayed, OpsError> {
        Ok(match self {
            Ops::Store { store, .. } => ops::replay_execution(store, execution, dry_run).await?,
            Ops::Admin(admin) => admin.replay_execution(execution, dry_run).await?,
        })
    }

    async fn dead_letters(&self, filter: &DeadLetterFilter) -> Result<Vec<DeadLetter>, OpsError> {
        Ok(match self {
            Ops::Store { store, .. } => ops::dead_letters(store, filter).await?,
            Ops::Admin(admin) => admin.dead_letters(filter).await?,
        })
    }

    async fn retry_dead_letters(
        &self,
        filter: &DeadLetterFilter,
        dry_run: bool,
    ) -> Result<Vec<Replayed>, OpsError> {
        Ok(match self {
            Ops::Store { store, .. } => ops::retry_dead_letters(store, filter, dry_run).await?,
            Ops::Admin(admin) => admin.retry_dead_letters(filter, dry_run).await?,
        })
    }

    async fn purge_dead_letters(&self, filter: &DeadLetterFilter) -> Result<Purged, OpsError> {
        Ok(match self {
            Ops::Store { store, .. } => ops::purge_dead_letters(store, filter).await?,
            Ops::Admin(admin) => admin.purge_dead_letters(filter).await?,
        })
    }
}

use ops::parse_time;

/// Standard output with every secret replaced. Records are scrubbed when they are written;
/// this also covers older records and event payloads as their senders sent them.
pub(super) struct Out(pub(super) Arc<Scrubber>);

impl Out {
    pub(super) fn json(&self, value: &impl serde::Serialize) {
        let text = match serde_json::to_value(value) {
            Ok(mut value) => {
                self.0.scrub_value(&mut value);
                serde_json::to_string_pretty(&value)
            }
            Err(e) => Err(e),
        };
        println!(
            "{}",
            text.unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
        );
    }

    fn line(&self, text: impl std::fmt::Display) {
        println!("{}", self.0.scrub(&text.to_string()));
    }

    pub(super) fn text(&self, text: &str) {
        print!("{}", self.0.scrub(text));
    }
}

/// A `--since`/`--until` value, with the flag named in the error.
pub(super) fn time_arg(flag: &str, text: Option<&str>) -> Result<Option<Millis>, String> {
    text.map(parse_time)
        .transpose()
        .map_err(|e| format!("{flag}: {e}"))
}

pub(super) fn failed(e: impl std::fmt::Display) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::FAILURE
}

pub fn events(args: EventsArgs) -> ExitCode {
    let status = match args.status.as_deref().map(|s| (s, EventStatus::parse(s))) {
        None => None,
        Some((_, Some(s))) => Some(s),
        Some((s, None)) => {
            return usage(format_args!(
                "unknown status `{s}`: use pending, planned or quarantined"
            ));
        }
    };
    let outcome = match args.outcome.as_deref().map(|o| (o, EventOutcome::parse(o))) {
        None => None,
        Some((_, Some(o))) => Some(o),
        Some((o, None)) => {
            return usage(format_args!(
                "unknown outcome `{o}`: use pending, quarantined, no_match, running, failing, \
                 succeeded or dead"
            ));
        }
    };
    let (since, until) = match (
        time_arg("--since", args.since.as_deref()),
        time_arg("--until", args.until.as_deref()),
    ) {
        (Ok(since), Ok(until)) => (since, until),
        (Err(e), _) | (_, Err(e)) => return usage(e),
    };
    let filter = EventFilter {
        source: args.source.clone(),
        event_type: args.event_type.clone(),
        status,
        outcome,
        since,
        until,
        limit: args.limit.clamp(1, 10_000),
        ..EventFilter::default()
    };
    let json = args.common.json;
    with_ops(&args.common, |from, out| async move {
        match from.events(&filter).await {
            Ok(events) => print_events(&out, &events, json),
            Err(e) => e.report(),
        }
    })
}

fn print_events(out: &Out, events: &[ListedEvent], json: bool) -> ExitCode {
    if json {
        out.json(&events);
        return ExitCode::SUCCESS;
    }
    for listed in events {
        let e = &listed.stored.event;
        out.line(format_args!(
            "{}  {}  {:<12} {:<28} {}",
            e.id,
            e.received_at.to_rfc3339(),
            e.source,
            e.event_type,
            listed.outcome.as_str()
        ));
    }
    if events.is_empty() {
        println!("no events");
    }
    ExitCode::SUCCESS
}

pub fn logs(args: LogsArgs) -> ExitCode {
    let id: EventId = match args.event_id.parse() {
        Ok(id) => id,
        Err(_) => return usage(format_args!("`{}` is not an event id", args.event_id)),
    };
    let json = args.common.json;
    with_ops(&args.common, |from, out| async move {
        match from.story(id).await {
            Ok(Some(story)) if json => {
                out.json(&story);
                ExitCode::SUCCESS
            }
            Ok(Some(story)) => {
                out.text(&render_story(&story));
                ExitCode::SUCCESS
            }
            Ok(None) => failed(format_args!("no event {id}")),
            Err(e) => e.report(),
        }
    })
}

pub fn replay(args: ReplayArgs) -> ExitCode {
    let json = args.common.json;
    let dry_run = args.dry_run;
    if let Some(execution) = &args.execution {
        let id: ExecutionId = match execution.parse() {
            Ok(id) => id,
            Err(_) => return usage(format_args!("`{execution}` is not an execution id")),
        };
        return with_ops(&args.common, |from, out| async move {
            match from.replay_execution(id, dry_run).await {
                Ok(r) => report_replays(&out, vec![r], dry_run, json),
                Err(e) => e.report(),
            }
        });
    }
    let Some(event) = &args.event_id else {
        return usage("name an event id or --execution ID");
    };
    let id: EventId = match event.parse() {
        Ok(id) => id,
        Err(_) => return usage(format_args!("`{event}` is not an event id")),
    };
    let rule = args.rule.clone();
    with_ops(&args.common, |from, out| async move {
        match from.replay_event(id, rule.as_deref(), dry_run).await {
            Ok(r) => report_replays(&out, r, dry_run, json),
            Err(e) => e.report(),
        }
    })
}

fn report_replays(out: &Out, planned: Vec<Replayed>, dry_run: bool, json: bool) -> ExitCode {
    let replays = Replays { dry_run, planned };
    if json {
        out.json(&replays);
        return ExitCode::SUCCESS;
    }
    let replays = replays.planned;
    let verb = if dry_run { "would plan" } else { "planned" };
    for r in &replays {
        println!(
            "{verb} {} action {} ({}) for event {}, generation {}, key {}",
            r.rule_id, r.action_index, r.plugin, r.event_id, r.generation, r.idempotency_key
        );
    }
    if replays.is_empty() {
        println!("nothing to replay: no rule matches");
    } else if !dry_run {
        println!(
            "{} execution{} planned; a running server runs them (their effects happen again)",
            replays.len(),
            if replays.len() == 1 { "" } else { "s" }
        );
    }
    ExitCode::SUCCESS
}

fn dead_letter_filter(args: &DeadLetterArgs) -> Result<DeadLetterFilter, String> {
    Ok(DeadLetterFilter {
        source: args.source.clone(),
        rule_id: args.rule.clone(),
        since: time_arg("--since", args.since.as_deref())?,
        until: time_arg("--until", args.until.as_deref())?,
        before: None,
        limit: args.limit.clamp(1, ops::MAX_DEAD_LETTER_BATCH),
    })
}

pub fn dead_letters(command: DeadLetterCommand) -> ExitCode {
    let (args, action) = match &command {
        DeadLetterCommand::List(a) => (a, "list"),
        DeadLetterCommand::Retry { args, .. } => (args, "retry"),
        DeadLetterCommand::Purge(a) => (a, "purge"),
    };
    let filter = match dead_letter_filter(args) {
        Ok(f) => f,
        Err(e) => return usage(e),
    };
    let json = args.common.json;
    let dry_run = matches!(command, DeadLetterCommand::Retry { dry_run: true, .. });
    with_ops(&args.common, |from, out| async move {
        match action {
            "list" => match from.dead_letters(&filter).await {
                Ok(list) => print_dead_letters(&out, &list, json),
                Err(e) => e.report(),
            },
            "retry" => match from.retry_dead_letters(&filter, dry_run).await {
                Ok(r) => report_replays(&out, r, dry_run, json),
                Err(e) => e.report(),
            },
            _ => match from.purge_dead_letters(&filter).await {
                Ok(purged) => {
                    if json {
                        out.json(&purged);
                    } else {
                        let n = purged.purged;
                        println!("purged {n} dead letter{}", if n == 1 { "" } else { "s" });
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => e.report(),
            },
        }
    })
}

fn print_dead_letters(out: &Out, list: &[DeadLetter], json: bool) -> ExitCode {
    if json {
        out.json(&list);
        return ExitCode::SUCCESS;
    }
    for d in list {
        out.line(format_args!(
            "{}  {}  {:<12} {:<24} execution {}  event {}",
            d.created_at.to_rfc3339(),
            d.reason,
            d.source,
            d.rule_id,
            d.execution_id,
            d.event_id
        ));
    }
    if list.is_empty() {
        println!("no dead letters");
    }
    ExitCode::SUCCESS
}
