//! Ids, records and shared enums that every part of hookwise speaks in.

use std::fmt;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use uuid::Uuid;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(pub Uuid);

        impl $name {
            /// A new, time-ordered id (UUIDv7).
            pub fn new() -> Self {
                Self(Uuid::now_v7())
            }
            pub const PREFIX: &'static str = $prefix;
        }

        impl Default for $name {
            fn default() -> Self {
                Self::new()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.fmt(f)
            }
        }

        impl FromStr for $name {
            type Err = uuid::Error;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                Uuid::parse_str(s).map(Self)
            }
        }
    };
}

id_type!(
    /// One stored event (unique per source and provider delivery id).
    EventId,
    "evt"
);
id_type!(
    /// One HTTP request to an ingress route, accepted or not.
    DeliveryAttemptId,
    "dlv"
);
id_type!(
    /// One planned (event, rule, action) run.
    ExecutionId,
    "exe"
);
id_type!(
    /// One try of an execution.
    AttemptId,
    "att"
);

/// The source of hookwise's own events (a dead letter, a refused rule reload, ...): reserved, so
/// no configured source may take it and nothing from outside can post to it.
pub const OWN_SOURCE: &str = "hookwise";

/// Milliseconds since the Unix epoch; the one time representation in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Millis(pub i64);

impl Millis {
    pub fn now() -> Millis {
        Millis::from_system_time(SystemTime::now())
    }

    pub fn from_system_time(t: SystemTime) -> Millis {
        match t.duration_since(UNIX_EPOCH) {
            Ok(d) => Millis(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            Err(e) => Millis(-i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX)),
        }
    }

    /// RFC 3339 in UTC with milliseconds, e.g. `2026-11-27T22:18:29.123Z`.
    pub fn to_rfc3339(self) -> String {
        crate::rfc3339::format_millis(self.0)
    }

    pub fn saturating_add(self, d: std::time::Duration) -> Millis {
        Millis(
            self.0
                .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
        )
    }
}

/// What happened to one HTTP request on an ingress route.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Verified, valid and stored as a new event.
    Accepted,
    /// Verified and valid, but the event was already stored; nothing runs again.
    Duplicate,
    /// Verified, but the payload failed validation; kept for replay after a fix.
    Quarantined,
    /// A provider handshake (URL verification, ping) answered at the edge.
    Handshake,
    /// Refused before or during verification (bad signature, unknown source, limits, ...).
    Rejected,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Accepted => "accepted",
            Verdict::Duplicate => "duplicate",
            Verdict::Quarantined => "quarantined",
            Verdict::Handshake => "handshake",
            Verdict::Rejected => "rejected",
        }
    }

    pub fn parse(s: &str) -> Option<Verdict> {
        Some(match s {
            "accepted" => Verdict::Accepted,
            "duplicate" => Verdict::Duplicate,
            "quarantined" => Verdict::Quarantined,
            "handshake" => Verdict::Handshake,
            "rejected" => Verdict::Rejected,
            _ => return None,
        })
    }
}

/// Where an event is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventStatus {
    /// Stored, not yet matched against the rules.
    Pending,
    /// Stored but invalid; waits for a fix and a replay.
    Quarantined,
    /// Matched; its executions (possibly none) are planned.
    Planned,
}

impl EventStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EventStatus::Pending => "pending",
            EventStatus::Quarantined => "quarantined",
            EventStatus::Planned => "planned",
        }
    }

    pub fn parse(s: &str) -> Option<EventStatus> {
        Some(match s {
            "pending" => EventStatus::Pending,
            "quarantined" => EventStatus::Quarantined,
            "planned" => EventStatus::Planned,
            _ => return None,
        })
    }
}

/// What became of an event, as `hookwise events` and the admin API show it: its status until
/// it is matched, then the state of its actions (the latest generation of each, so a replay
/// that succeeds clears an old failure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventOutcome {
    /// Stored, not yet matched against the rules.
    Pending,
    /// Stored but invalid; waits for a fix and a replay.
    Quarantined,
    /// Matched against the rules; none matched, so nothing runs.
    NoMatch,
    /// Actions are waiting or running, and none has failed yet.
    Running,
    /// An attempt failed and the action is being retried.
    Failing,
    /// Every action succeeded.
    Succeeded,
    /// An action failed for good: it is a dead letter.
    Dead,
}

impl EventOutcome {
    /// Every outcome, in the order an event can pass through them.
    pub const ALL: [EventOutcome; 7] = [
        EventOutcome::Pending,
        EventOutcome::Quarantined,
        EventOutcome::NoMatch,
        EventOutcome::Running,
        EventOutcome::Failing,
        EventOutcome::Succeeded,
        EventOutcome::Dead,
    ];

    /// The outcome of an event with `status` whose current executions add up to `tally`.
    pub fn of(status: EventStatus, tally: &ExecutionTally) -> EventOutcome {
        match status {
            EventStatus::Pending => EventOutcome::Pending,
            EventStatus::Quarantined => EventOutcome::Quarantined,
            EventStatus::Planned if tally.dead > 0 => EventOutcome::Dead,
            EventStatus::Planned if tally.retrying > 0 => EventOutcome::Failing,
            EventStatus::Planned if tally.unfinished > 0 => EventOutcome::Running,
            EventStatus::Planned if tally.total == 0 => EventOutcome::NoMatch,
            EventStatus::Planned => EventOutcome::Succeeded,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            EventOutcome::Pending => "pending",
            EventOutcome::Quarantined => "quarantined",
            EventOutcome::NoMatch => "no_match",
            EventOutcome::Running => "running",
            EventOutcome::Failing => "failing",
            EventOutcome::Succeeded => "succeeded",
            EventOutcome::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<EventOutcome> {
        EventOutcome::ALL.into_iter().find(|o| o.as_str() == s)
    }
}

/// Counts over an event's current executions (the latest generation of each action): all that
/// its [`EventOutcome`] depends on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExecutionTally {
    pub total: i64,
    /// Pending or running.
    pub unfinished: i64,
    /// Unfinished after a failed attempt: pending with an attempt made, or running a second
    /// (or later) one.
    pub retrying: i64,
    pub dead: i64,
}

impl ExecutionTally {
    /// Counts one execution with `status` and `attempts` started.
    pub fn add(&mut self, status: ExecutionStatus, attempts: i32) {
        self.total += 1;
        match status {
            ExecutionStatus::Pending | ExecutionStatus::Running => {
                self.unfinished += 1;
                let failed_before = match status {
                    ExecutionStatus::Pending => attempts > 0,
                    _ => attempts > 1,
                };
                self.retrying += i64::from(failed_before);
            }
            ExecutionStatus::Dead => self.dead += 1,
            ExecutionStatus::Succeeded => {}
        }
    }
}

/// Where an execution is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecutionStatus {
    /// Waiting to run (first time, or for a retry at `next_attempt_at`).
    Pending,
    /// Claimed by a worker holding a lease.
    Running,
    /// Finished successfully.
    Succeeded,
    /// Failed for good (fatal error or attempts exhausted); listed as a dead letter.
    Dead,
}

impl ExecutionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ExecutionStatus::Pending => "pending",
            ExecutionStatus::Running => "running",
            ExecutionStatus::Succeeded => "succeeded",
            ExecutionStatus::Dead => "dead",
        }
    }

    pub fn parse(s: &str) -> Option<ExecutionStatus> {
        Some(match s {
            "pending" => ExecutionStatus::Pending,
            "running" => ExecutionStatus::Running,
            "succeeded" => ExecutionStatus::Succeeded,
            "dead" => ExecutionStatus::Dead,
            _ => return None,
        })
    }
}

/// How one attempt of an execution ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    Succeeded,
    /// Failed in a way that may work later (the plugin said so, or a timeout).
    Retryable,
    /// Failed in a way that will not work again.
    Fatal,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Retryable => "retryable",
            AttemptOutcome::Fatal => "fatal",
        }
    }

    pub fn parse(s: &str) -> Option<AttemptOutcome> {
        Some(match s {
            "succeeded" => AttemptOutcome::Succeeded,
            "retryable" => AttemptOutcome::Retryable,
            "fatal" => AttemptOutcome::Fatal,
            _ => return None,
        })
    }
}

/// `*` matches any run of characters (dots included), `?` exactly one; everything else is
/// literal: the globs of rule `events:` and of per-event-type `schema:` maps. Iterative with a
/// single backtracking point: linear in practice, no recursion, no allocation (positions are
/// byte offsets of characters).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(tc) = text[ti..].chars().next() {
        let pc = pattern[pi..].chars().next();
        if let Some(pc) = pc.filter(|&pc| pc == '?' || pc == tc) {
            pi += pc.len_utf8();
            ti += tc.len_utf8();
        } else if pc == Some('*') {
            star = Some((pi, ti));
            pi += 1;
        } else if let Some((sp, st)) = star {
            // Let the last `*` take one more character and try again after it.
            let next = st + text[st..].chars().next().map_or(1, char::len_utf8);
            pi = sp + 1;
            ti = next;
            star = Some((sp, next));
        } else {
            return false;
        }
    }
    pattern[pi..].chars().all(|c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_outcomes_follow_the_current_executions() {
        use ExecutionStatus::{Dead, Pending, Running, Succeeded};
        let planned: &[(&[(ExecutionStatus, i32)], EventOutcome)] = &[
            (&[], EventOutcome::NoMatch),
            (&[(Pending, 0)], EventOutcome::Running),
            (&[(Running, 1), (Succeeded, 1)], EventOutcome::Running),
            (&[(Pending, 1)], EventOutcome::Failing),
            (&[(Running, 2), (Succeeded, 1)], EventOutcome::Failing),
            (&[(Succeeded, 1), (Succeeded, 3)], EventOutcome::Succeeded),
            (&[(Dead, 5), (Succeeded, 1)], EventOutcome::Dead),
            (&[(Dead, 1), (Pending, 1)], EventOutcome::Dead),
        ];
        for (executions, want) in planned {
            let mut tally = ExecutionTally::default();
            for (status, attempts) in *executions {
                tally.add(*status, *attempts);
            }
            assert_eq!(
                EventOutcome::of(EventStatus::Planned, &tally),
                *want,
                "{executions:?}"
            );
        }
        let busy = ExecutionTally {
            total: 1,
            dead: 1,
            ..Default::default()
        };
        assert_eq!(
            EventOutcome::of(EventStatus::Pending, &busy),
            EventOutcome::Pending
        );
        assert_eq!(
            EventOutcome::of(EventStatus::Quarantined, &busy),
            EventOutcome::Quarantined
        );
        for outcome in EventOutcome::ALL {
            assert_eq!(EventOutcome::parse(outcome.as_str()), Some(outcome));
            let json = serde_json::to_value(outcome).unwrap();
            assert_eq!(json, outcome.as_str());
        }
        assert_eq!(EventOutcome::parse("planned"), None);
    }
}
