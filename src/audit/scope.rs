//! What the audit log records per listener, and the per-interval summaries of what it does not
//! record line by line.
//!
//! The people who need an audit trail ask who decoded what: humans through the Web UI's listener
//! and the CLI, and whoever was refused. A worker's own encodes and decodes, thousands a second,
//! answer no such question one by one; a line per namespace, operation and principal per interval
//! with counts says as much about them at a fraction of the volume. So by default the `ui`
//! listener records every request, and the `worker` and `grpc` listeners every refused request
//! plus a summary of the rest ([`Scope`]).
//!
//! This module decides and counts; it never renders a request line and never touches the output
//! (the parent module does both). It holds no payload data, token or key.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use super::Record;

/// Default interval of the summary lines.
pub const DEFAULT_SUMMARY_INTERVAL: Duration = Duration::from_secs(60);

/// What a listener records line by line; every request it does not record individually is
/// counted in its summary lines (except with [`Scope::Off`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// A line per request.
    All,
    /// A line per decode and per refused request; encodes answered 200 are summarized.
    Decodes,
    /// A line per refused request (any answer but 200); the rest is summarized.
    Refusals,
    /// Nothing, not even summaries.
    Off,
}

impl Scope {
    /// The configuration values, in order.
    pub const NAMES: [&'static str; 4] = ["all", "decodes", "refusals", "off"];

    /// The scope named `name` in the configuration.
    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "all" => Some(Self::All),
            "decodes" => Some(Self::Decodes),
            "refusals" => Some(Self::Refusals),
            "off" => Some(Self::Off),
            _ => None,
        }
    }

    /// What to do with `record`.
    pub(super) fn decide(self, record: &Record<'_>) -> Decision {
        let refused = record.status != 200;
        match self {
            Self::All => Decision::Line,
            Self::Decodes if refused || record.op == "decode" => Decision::Line,
            Self::Refusals if refused => Decision::Line,
            Self::Decodes | Self::Refusals => Decision::Summary,
            Self::Off => Decision::Nothing,
        }
    }
}

/// What happens to one request's record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Its own line.
    Line,
    /// Counted in the next summary line.
    Summary,
    /// Not recorded.
    Nothing,
}

/// The scope of each listener (`[audit] worker`, `ui`, `grpc`) and the summary interval
/// (`[audit] summary_interval`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scopes {
    /// The worker (codec) HTTP listener: `refusals` by default.
    pub worker: Scope,
    /// The Web UI's listener: `all` by default.
    pub ui: Scope,
    /// The gRPC codec service: `refusals` by default.
    pub grpc: Scope,
    /// How often summary lines are written.
    pub summary_interval: Duration,
}

impl Default for Scopes {
    fn default() -> Self {
        Self {
            worker: Scope::Refusals,
            ui: Scope::All,
            grpc: Scope::Refusals,
            summary_interval: DEFAULT_SUMMARY_INTERVAL,
        }
    }
}

impl Scopes {
    /// Every request, on every listener (no summaries).
    pub fn all() -> Self {
        Self {
            worker: Scope::All,
            ui: Scope::All,
            grpc: Scope::All,
            summary_interval: DEFAULT_SUMMARY_INTERVAL,
        }
    }

    /// The scope of the listener named `listener` in records; a listener this module does not
    /// know records everything.
    pub fn of(&self, listener: &str) -> Scope {
        match listener {
            "worker" => self.worker,
            "ui" => self.ui,
            "grpc" => self.grpc,
            _ => Scope::All,
        }
    }

    /// Whether any listener summarizes (then the summary writer runs).
    pub fn summarizes(&self) -> bool {
        [self.worker, self.ui, self.grpc]
            .iter()
            .any(|scope| matches!(scope, Scope::Decodes | Scope::Refusals))
    }
}

/// Counts of one (listener, principal, namespace, operation) within an interval.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(super) struct Counts {
    pub requests: u64,
    pub payloads: u64,
    pub bytes: u64,
}

/// One group of a summary: who, where, what, and how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Group {
    pub listener: String,
    pub principal: Option<String>,
    pub namespace: Option<String>,
    pub op: String,
    pub counts: Counts,
}

/// The requests counted since the last summary.
#[derive(Debug)]
pub(super) struct Summaries {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    since: SystemTime,
    /// Keyed by the group's fields joined with a separator no field contains (a control
    /// character: namespaces and principals never hold one), so a lookup builds no tuple.
    groups: HashMap<String, Group>,
}

/// Separates the fields of a group key; `\u{0}` marks an absent field.
const SEPARATOR: char = '\u{1f}';

impl Summaries {
    pub fn new(now: SystemTime) -> Self {
        Self {
            state: Mutex::new(State {
                since: now,
                groups: HashMap::new(),
            }),
        }
    }

    /// Counts `record` in its group. Allocates only for a group's first request.
    pub fn add(&self, record: &Record<'_>) {
        thread_local! {
            static KEY: std::cell::RefCell<String> = const { std::cell::RefCell::new(String::new()) };
        }
        KEY.with_borrow_mut(|key| {
            key.clear();
            for field in [
                Some(record.listener),
                record.principal,
                record.namespace,
                Some(record.op),
            ] {
                key.push_str(field.unwrap_or("\u{0}"));
                key.push(SEPARATOR);
            }
            let mut state = self
                .state
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let group = match state.groups.get_mut(key.as_str()) {
                Some(group) => group,
                None => state.groups.entry(key.clone()).or_insert_with(|| Group {
                    listener: record.listener.to_owned(),
                    principal: record.principal.map(str::to_owned),
                    namespace: record.namespace.map(str::to_owned),
                    op: record.op.to_owned(),
                    counts: Counts::default(),
                }),
            };
            group.counts.requests += 1;
            group.counts.payloads += record.payloads as u64;
            group.counts.bytes += record.bytes as u64;
        });
    }

    /// The groups counted since the last call (sorted), and when counting started; counting
    /// starts again from `now`.
    pub fn take(&self, now: SystemTime) -> (SystemTime, Vec<Group>) {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let since = std::mem::replace(&mut state.since, now);
        let mut groups: Vec<Group> = state.groups.drain().map(|(_, group)| group).collect();
        drop(state);
        groups.sort_by(|a, b| {
            (&a.listener, &a.namespace, &a.op, &a.principal).cmp(&(
                &b.listener,
                &b.namespace,
                &b.op,
                &b.principal,
            ))
        });
        (since, groups)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record<'a>(listener: &'a str, op: &'a str, status: u16, principal: &'a str) -> Record<'a> {
        Record {
            listener,
            request_id: "r",
            client: None,
            principal: Some(principal),
            namespace: Some("orders"),
            op,
            payloads: 2,
            bytes: 100,
            status,
            result: if status == 200 { "ok" } else { "forbidden" },
            duration: Duration::from_millis(1),
        }
    }

    #[test]
    fn each_scope_keeps_what_it_promises() {
        use Decision::*;
        let cases = [
            (Scope::All, "encode", 200, Line),
            (Scope::All, "decode", 403, Line),
            (Scope::Decodes, "decode", 200, Line),
            (Scope::Decodes, "encode", 200, Summary),
            (Scope::Decodes, "encode", 401, Line),
            (Scope::Refusals, "decode", 200, Summary),
            (Scope::Refusals, "encode", 503, Line),
            (Scope::Off, "decode", 403, Nothing),
            (Scope::Off, "encode", 200, Nothing),
        ];
        for (scope, op, status, expected) in cases {
            assert_eq!(
                scope.decide(&record("worker", op, status, "anonymous")),
                expected,
                "{scope:?} {op} {status}"
            );
        }
        let defaults = Scopes::default();
        assert_eq!(defaults.of("ui"), Scope::All);
        assert_eq!(defaults.of("worker"), Scope::Refusals);
        assert_eq!(defaults.of("grpc"), Scope::Refusals);
        assert_eq!(defaults.of("something-new"), Scope::All);
        for name in Scope::NAMES {
            assert!(Scope::from_name(name).is_some());
        }
        assert_eq!(Scope::from_name("All"), None);
    }

    #[test]
    fn summaries_count_per_group_and_start_again() {
        let start = SystemTime::UNIX_EPOCH;
        let summaries = Summaries::new(start);
        for _ in 0..3 {
            summaries.add(&record("worker", "encode", 200, "anonymous"));
        }
        summaries.add(&record("worker", "decode", 200, "anonymous"));
        summaries.add(&record("grpc", "encode", 200, "token:worker"));
        let later = start + Duration::from_secs(60);
        let (since, groups) = summaries.take(later);
        assert_eq!(since, start);
        let summary: Vec<(&str, &str, u64, u64, u64)> = groups
            .iter()
            .map(|g| {
                (
                    g.listener.as_str(),
                    g.op.as_str(),
                    g.counts.requests,
                    g.counts.payloads,
                    g.counts.bytes,
                )
            })
            .collect();
        assert_eq!(
            summary,
            [
                ("grpc", "encode", 1, 2, 100),
                ("worker", "decode", 1, 2, 100),
                ("worker", "encode", 3, 6, 300)
            ]
        );
        let (since, groups) = summaries.take(later + Duration::from_secs(60));
        assert_eq!(since, later);
        assert!(groups.is_empty());
    }
}
