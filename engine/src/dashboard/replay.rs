//! Replaying an event from its page: first a dry run that shows what would run (the same
//! `dispatch::ops::replay_event` as `hookwise replay --dry-run` and the admin API), then, when
//! confirmed, the replay itself (a new generation of each matched action). One execution of
//! the event's timeline is replayed the same way (`dispatch::ops::replay_execution`, as
//! `POST /api/v1/executions/{id}/replay`): a new generation of just that rule's action.

use axum::extract::{Extension, Path, State};
use axum::response::{IntoResponse, Redirect, Response};
use serde_json::Value;

use super::session::Session;
use super::{Dashboard, DashboardError};
use crate::dispatch::ops::{self, ReplayError};
use crate::model::{EventId, ExecutionId};

impl From<ReplayError> for DashboardError {
    fn from(e: ReplayError) -> DashboardError {
        let why = e.to_string();
        match e {
            ReplayError::Store(e) => DashboardError::Store(e),
            ReplayError::NoEvent(_) | ReplayError::NoExecution(_) => DashboardError::NotFound(why),
            ReplayError::Quarantined(_)
            | ReplayError::Unfinished(..)
            | ReplayError::RuleDidNotMatch(..) => DashboardError::Conflict(why),
        }
    }
}

fn event_id(text: &str) -> Result<EventId, DashboardError> {
    text.parse()
        .map_err(|_| DashboardError::BadRequest("not an event id".to_string()))
}

/// `POST /events/{id}/replay/preview`: what a replay would plan, nothing run.
pub(super) async fn preview(
    State(d): State<Dashboard>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let result = preview_inner(&d, &session, &id).await;
    d.answer(result)
}

async fn preview_inner(
    d: &Dashboard,
    session: &Session,
    id: &str,
) -> Result<Response, DashboardError> {
    let id = event_id(id)?;
    let planned = plan(d, id, true).await?;
    let mut planned = serde_json::to_value(&planned).unwrap_or(Value::Null);
    d.admin.app.scrubber.scrub_value(&mut planned);
    d.page(
        "replay.html",
        minijinja::context! {
            csrf => &session.csrf,
            event_id => id.to_string(),
            planned => minijinja::Value::from(minijinja::value::Serde(&planned)),
        },
    )
}

/// `POST /events/{id}/replay`: plans the replay and goes back to the event's timeline.
pub(super) async fn replay(State(d): State<Dashboard>, Path(id): Path<String>) -> Response {
    let result = async {
        let id = event_id(&id)?;
        plan(&d, id, false).await?;
        d.admin.app.wake.work();
        Ok(Redirect::to(&format!("/events/{id}")).into_response())
    }
    .await;
    d.answer(result)
}

async fn plan(
    d: &Dashboard,
    id: EventId,
    dry_run: bool,
) -> Result<Vec<ops::Replayed>, DashboardError> {
    let rules = d.admin.rules.current();
    Ok(ops::replay_event(
        &d.admin.app.store,
        &d.admin.app.config,
        &rules,
        id,
        None,
        dry_run,
    )
    .await?)
}

fn execution_id(text: &str) -> Result<ExecutionId, DashboardError> {
    text.parse()
        .map_err(|_| DashboardError::BadRequest("not an execution id".to_string()))
}

/// `POST /executions/{id}/replay/preview`: what replaying one execution would plan.
pub(super) async fn execution_preview(
    State(d): State<Dashboard>,
    Extension(session): Extension<Session>,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let id = execution_id(&id)?;
        let planned = ops::replay_execution(&d.admin.app.store, id, true).await?;
        let event_id = planned.event_id;
        let mut planned = serde_json::to_value(&planned).unwrap_or(Value::Null);
        d.admin.app.scrubber.scrub_value(&mut planned);
        d.page(
            "replay_execution.html",
            minijinja::context! {
                csrf => &session.csrf,
                execution_id => id.to_string(),
                event_id => event_id.to_string(),
                planned => minijinja::Value::from(minijinja::value::Serde(&planned)),
            },
        )
    }
    .await;
    d.answer(result)
}

/// `POST /executions/{id}/replay`: plans the new generation and goes back to the event.
pub(super) async fn execution_replay(
    State(d): State<Dashboard>,
    Path(id): Path<String>,
) -> Response {
    let result = async {
        let id = execution_id(&id)?;
        let planned = ops::replay_execution(&d.admin.app.store, id, false).await?;
        d.admin.app.wake.work();
        Ok(Redirect::to(&format!("/events/{}", planned.event_id)).into_response())
    }
    .await;
    d.answer(result)
}
