//! Schedules: when a slot is due (cron in a time zone, fixed intervals, one instant) and the
//! policies for missed and overlapping runs. Pure: the current time is always an argument.
//!
//! Cron follows cronie's documented daylight-saving behaviour, which croner implements: a
//! fixed-time job (single second, minute and hour) whose time falls in a spring-forward gap
//! runs once right after the jump; one whose time repeats on fall-back runs once, at the
//! first occurrence; jobs with wildcard or stepped hours or minutes follow the wall clock.

use crate::time::Timestamp;
use crate::validate::ValidationError;
use chrono::{TimeZone, Utc};
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// When a schedule's slots fall.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum When {
    /// A cron expression (5 fields, or 6 with seconds first, or a nickname such as `@daily`)
    /// read in an IANA time zone.
    Cron { expr: String, tz: String },
    /// Every `every_ms`, counted from `anchor`.
    Every { every_ms: u64, anchor: Timestamp },
    /// Once, at this instant.
    Once { at: Timestamp },
}

impl When {
    /// For people: `cron "0 2 * * *" in Europe/Berlin`, `every 1h from ...`, `once at ...`.
    pub fn describe(&self) -> String {
        match self {
            When::Cron { expr, tz } => format!("cron \"{expr}\" in {tz}"),
            When::Every { every_ms, anchor } => {
                format!("every {} from {anchor}", crate::duration::format(std::time::Duration::from_millis(*every_ms)))
            }
            When::Once { at } => format!("once at {at}"),
        }
    }
}

/// What to do with slots that passed while the daemon was down (or the clock jumped).
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Misfire {
    /// Run none of them.
    #[default]
    Skip,
    /// Run the latest missed slot once.
    Once,
    /// Run every missed slot, up to a cap (the most recent ones).
    All,
}

/// What to do when a slot is due while the previous run is still active.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Start another run anyway.
    Allow,
    /// Do not start this slot.
    #[default]
    Skip,
    /// Buffer one slot and start it when the active run finishes.
    Queue,
    /// Cancel the active run and start this one.
    Replace,
}

macro_rules! name_parse {
    ($t:ty, $what:literal, $($s:literal => $v:expr),+) => {
        impl std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s.trim().to_ascii_lowercase().as_str() {
                    $($s => Ok($v),)+
                    other => Err(format!(concat!("`{}` is not a ", $what, " policy; use one of: {}"), other, [$($s),+].join(", "))),
                }
            }
        }
    };
}
name_parse!(Misfire, "misfire", "skip" => Misfire::Skip, "once" => Misfire::Once, "all" => Misfire::All);
name_parse!(Overlap, "overlap", "allow" => Overlap::Allow, "skip" => Overlap::Skip, "queue" => Overlap::Queue, "replace" => Overlap::Replace);

/// A `When` checked and ready to compute slots.
#[derive(Clone, Debug)]
pub struct Compiled {
    when: When,
    cron: Option<(croner::Cron, chrono_tz::Tz)>,
}

/// Parses an IANA time zone name, suggesting the right spelling when it is close.
pub fn parse_tz(field: &str, name: &str) -> Result<chrono_tz::Tz, ValidationError> {
    if let Ok(tz) = name.parse::<chrono_tz::Tz>() {
        return Ok(tz);
    }
    let lower = name.to_ascii_lowercase();
    let close: Vec<&str> = chrono_tz::TZ_VARIANTS
        .iter()
        .map(|t| t.name())
        .filter(|n| {
            let l = n.to_ascii_lowercase();
            l == lower || (!lower.is_empty() && (l.ends_with(&format!("/{lower}")) || l.contains(&lower.replace(' ', "_"))))
        })
        .take(5)
        .collect();
    let hint = if close.is_empty() {
        "use an IANA name such as UTC, Europe/Berlin or America/New_York".to_string()
    } else {
        format!("did you mean {}?", close.join(", "))
    };
    Err(ValidationError::new(field, format!("`{name}` is not a known time zone; {hint}")))
}

/// Parses a cron expression. On error, points at the field that is wrong.
pub fn parse_cron(field: &str, expr: &str) -> Result<croner::Cron, ValidationError> {
    let parser = croner::parser::CronParser::builder().seconds(croner::parser::Seconds::Optional).build();
    let trimmed = expr.trim();
    match parser.parse(trimmed) {
        Ok(c) => Ok(c),
        Err(e) => {
            let parts: Vec<&str> = trimmed.split_whitespace().collect();
            let names: &[&str] = if parts.len() == 6 {
                &["second", "minute", "hour", "day of month", "month", "day of week"]
            } else {
                &["minute", "hour", "day of month", "month", "day of week"]
            };
            let mut message = format!("`{trimmed}` is not a valid cron expression ({e})");
            if !trimmed.starts_with('@') && (parts.len() == 5 || parts.len() == 6) {
                // Find the first field that fails on its own: every other field set to `*`.
                for i in 0..parts.len() {
                    let probe: Vec<&str> = (0..parts.len()).map(|j| if j == i { parts[j] } else { "*" }).collect();
                    if parser.parse(&probe.join(" ")).is_err() {
                        let col: usize = parts[..i].iter().map(|p| p.len() + 1).sum();
                        message = format!(
                            "`{trimmed}` is not a valid cron expression: the {} field `{}` is wrong\n  {trimmed}\n  {}{}",
                            names[i],
                            parts[i],
                            " ".repeat(col),
                            "^".repeat(parts[i].len())
                        );
                        break;
                    }
                }
            } else if !trimmed.starts_with('@') {
                message = format!(
                    "`{trimmed}` has {} fields; write 5 (minute hour day-of-month month day-of-week), 6 with seconds first, or a nickname such as @daily",
                    parts.len()
                );
            }
            Err(ValidationError::new(field, message))
        }
    }
}

impl Compiled {
    pub fn new(when: When) -> Result<Compiled, ValidationError> {
        let cron = match &when {
            When::Cron { expr, tz } => Some((parse_cron("cron", expr)?, parse_tz("tz", tz)?)),
            When::Every { every_ms, .. } => {
                if *every_ms < 1000 {
                    return Err(ValidationError::new("every", "must be at least 1s"));
                }
                None
            }
            When::Once { .. } => None,
        };
        Ok(Compiled { when, cron })
    }

    pub fn when(&self) -> &When {
        &self.when
    }

    /// The first slot strictly after `after`, or `None` when there is none.
    pub fn next_after(&self, after: Timestamp) -> Option<Timestamp> {
        match &self.when {
            When::Once { at } => (*at > after).then_some(*at),
            When::Every { every_ms, anchor } => {
                let every = *every_ms as i64;
                if after < *anchor {
                    return Some(*anchor);
                }
                let k = (after.0 - anchor.0) / every + 1;
                Some(Timestamp(anchor.0 + k * every))
            }
            When::Cron { .. } => {
                let (cron, tz) = self.cron.as_ref().expect("compiled cron");
                let start = Utc.timestamp_millis_opt(after.0).single()?.with_timezone(tz);
                cron.find_next_occurrence(&start, false).ok().map(|t| Timestamp(t.timestamp_millis()))
            }
        }
    }

    /// Up to `n` slots after `after`, for previews.
    pub fn upcoming(&self, after: Timestamp, n: usize) -> Vec<Timestamp> {
        let mut out = Vec::with_capacity(n);
        let mut t = after;
        while out.len() < n {
            match self.next_after(t) {
                Some(next) => {
                    out.push(next);
                    t = next;
                }
                None => break,
            }
        }
        out
    }

    /// Renders an instant in the schedule's own time zone (UTC for non-cron schedules).
    pub fn local(&self, t: Timestamp) -> String {
        let tz = self.cron.as_ref().map(|c| c.1).unwrap_or(chrono_tz::UTC);
        match Utc.timestamp_millis_opt(t.0).single() {
            Some(dt) => dt.with_timezone(&tz).format("%Y-%m-%d %H:%M:%S %Z (%:z)").to_string(),
            None => t.to_string(),
        }
    }
}

/// Everything a user says about a schedule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleSpec {
    pub name: String,
    pub when: When,
    /// The task each fire creates.
    pub template: crate::task::TaskSpec,
    pub misfire: Misfire,
    /// With `misfire = all`, at most this many missed slots run.
    pub misfire_cap: u32,
    pub overlap: Overlap,
    /// A slot fired later than this after its time counts as missed.
    pub max_lateness_ms: u64,
    /// Each fire's task starts up to this much after its slot, at random.
    pub jitter_ms: u64,
    pub end_at: Option<Timestamp>,
    pub max_runs: Option<u64>,
    /// The agent task or chat that made the schedule (`schedule_create`); `None` is a person.
    /// Agents may manage only schedules agents made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<crate::agent::Owner>,
}

#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScheduleState {
    Active,
    Paused,
    /// Past its end date, its run limit, or its one instant.
    Finished,
}

impl ScheduleState {
    pub fn as_str(self) -> &'static str {
        match self {
            ScheduleState::Active => "active",
            ScheduleState::Paused => "paused",
            ScheduleState::Finished => "finished",
        }
    }
}

/// A stored schedule and its health.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Schedule {
    pub id: i64,
    pub spec: ScheduleSpec,
    pub state: ScheduleState,
    pub next_fire_at: Option<Timestamp>,
    /// A slot buffered by `overlap = queue`, waiting for the active run to end.
    pub pending_slot: Option<Timestamp>,
    pub last_task_id: Option<crate::task::TaskId>,
    pub last_fire_at: Option<Timestamp>,
    pub fired: u64,
    pub missed: u64,
    pub skipped: u64,
    /// Fires that happened, but later than one second after their slot.
    pub late: u64,
    /// When a run of this schedule last succeeded, and how long that run took.
    pub last_success_at: Option<Timestamp>,
    pub last_success_ms: Option<u64>,
    /// When it was last resumed from a pause (`None`: active since its creation).
    #[serde(default)]
    pub active_since: Option<Timestamp>,
    pub created_at: Timestamp,
    pub updated_at: Timestamp,
}

/// By when an active schedule should have succeeded again: its first slot after its last
/// success (or after its creation, if it never succeeded, or after its resume, if that is
/// later: a pause owes nothing), plus `grace` and the last successful run's duration. `None`
/// for a paused or finished schedule, which owes nothing.
pub fn success_due_by(s: &Schedule, compiled: &Compiled, grace: std::time::Duration) -> Option<Timestamp> {
    if s.state != ScheduleState::Active {
        return None;
    }
    let since = s.last_success_at.unwrap_or(s.created_at).max(s.active_since.unwrap_or(s.created_at));
    let slot = compiled.next_after(since)?;
    Some(slot.plus(grace).plus(std::time::Duration::from_millis(s.last_success_ms.unwrap_or(0))))
}

/// Schedule names: like group names.
pub fn check_schedule_spec(spec: &ScheduleSpec) -> Result<(), ValidationError> {
    crate::validate::check_name("name", "schedule", &spec.name)?;
    Compiled::new(spec.when.clone())?;
    crate::validate::check_spec(&spec.template)?;
    if spec.misfire_cap == 0 || spec.misfire_cap > 100_000 {
        return Err(ValidationError::new("misfire_cap", "must be between 1 and 100000"));
    }
    if spec.max_runs == Some(0) {
        return Err(ValidationError::new("max_runs", "must be at least 1"));
    }
    if !spec.template.depends_on.is_empty() || spec.template.idempotency_key.is_some() || spec.template.run_at.is_some() {
        return Err(ValidationError::new(
            "template",
            "a schedule's task cannot have --after, --key, --in or --at; the schedule decides when it runs",
        ));
    }
    Ok(())
}

/// How the slots that came due up to `now` are to be handled, before overlap is considered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DuePlan {
    /// Slots to fire, oldest first.
    pub fire: Vec<Timestamp>,
    /// Slots not fired, with the reason, oldest first.
    pub missed: Vec<(Timestamp, String)>,
    /// Slots that were due but not listed one by one (a very long outage).
    pub missed_uncounted: u64,
    /// The next slot after `now`.
    pub next: Option<Timestamp>,
}

/// Slots enumerated one by one at most; past this, an outage is summarised.
pub const MAX_SLOTS_PER_TICK: usize = 10_000;

/// Decides which of the slots from `first_due` up to `now` fire: those no later than
/// `max_lateness` fire; older ones are missed and handled by `misfire` (`all` fires at most
/// `cap`, the most recent).
pub fn plan_due(
    schedule: &Compiled,
    first_due: Timestamp,
    now: Timestamp,
    max_lateness: Duration,
    misfire: Misfire,
    cap: usize,
) -> DuePlan {
    let mut slots = vec![];
    let mut t = Some(first_due);
    let mut uncounted = 0u64;
    while let Some(s) = t {
        if s > now {
            break;
        }
        if slots.len() >= MAX_SLOTS_PER_TICK {
            // Count the rest cheaply where the schedule allows it; otherwise skip to now.
            uncounted = match schedule.when() {
                When::Every { every_ms, .. } => ((now.0 - s.0) / *every_ms as i64 + 1) as u64,
                _ => 1,
            };
            t = schedule.next_after(now);
            break;
        }
        slots.push(s);
        t = schedule.next_after(s);
    }
    let next = t.filter(|n| *n > now).or_else(|| schedule.next_after(now));
    let lateness_limit = now.minus(max_lateness);
    let split = slots.iter().position(|s| *s >= lateness_limit).unwrap_or(slots.len());
    let (late, on_time) = slots.split_at(split);
    let mut fire: Vec<Timestamp> = vec![];
    let mut missed: Vec<(Timestamp, String)> = vec![];
    let late_reason = |s: &Timestamp| format!("missed: {} late, more than the allowed lateness", crate::duration::format(now.since(*s)));
    match misfire {
        Misfire::Skip => missed.extend(late.iter().map(|s| (*s, format!("{} (misfire policy skip)", late_reason(s))))),
        Misfire::Once => {
            if let Some((last, rest)) = late.split_last() {
                missed.extend(rest.iter().map(|s| (*s, format!("{} (misfire policy once ran only the latest)", late_reason(s)))));
                fire.push(*last);
            }
        }
        Misfire::All => {
            let keep_from = late.len().saturating_sub(cap);
            missed.extend(late[..keep_from].iter().map(|s| (*s, format!("{} (beyond the catch-up cap of {cap})", late_reason(s)))));
            fire.extend_from_slice(&late[keep_from..]);
        }
    }
    fire.extend_from_slice(on_time);
    DuePlan { fire, missed, missed_uncounted: uncounted, next }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        Timestamp::parse_rfc3339(s).unwrap()
    }

    fn cron(expr: &str, tz: &str) -> Compiled {
        Compiled::new(When::Cron { expr: expr.into(), tz: tz.into() }).unwrap()
    }

    #[test]
    fn cron_with_five_six_fields_and_nicknames() {
        let c = cron("*/15 * * * *", "UTC");
        assert_eq!(c.next_after(ts("2026-01-01T00:07:00Z")), Some(ts("2026-01-01T00:15:00Z")));
        let s = cron("*/10 * * * * *", "UTC");
        assert_eq!(s.next_after(ts("2026-01-01T00:00:05Z")), Some(ts("2026-01-01T00:00:10Z")));
        let d = cron("@daily", "Europe/Berlin");
        assert_eq!(d.next_after(ts("2026-01-01T12:00:00Z")), Some(ts("2026-01-01T23:00:00Z")));
        let h = cron("@hourly", "UTC");
        assert_eq!(h.upcoming(ts("2026-01-01T00:30:00Z"), 2), vec![ts("2026-01-01T01:00:00Z"), ts("2026-01-01T02:00:00Z")]);
    }

    #[test]
    fn bad_cron_points_at_the_field() {
        let e = parse_cron("cron", "0 25 * * *").unwrap_err();
        assert!(e.message.contains("hour field `25`"), "{}", e.message);
        assert!(e.message.contains("\n    ^^"), "{}", e.message);
        let e = parse_cron("cron", "* * *").unwrap_err();
        assert!(e.message.contains("3 fields"), "{}", e.message);
        assert!(parse_cron("cron", "@sometimes").is_err());
    }

    #[test]
    fn bad_time_zones_suggest_names() {
        let e = parse_tz("tz", "berlin").unwrap_err();
        assert!(e.message.contains("Europe/Berlin"), "{}", e.message);
        let e = parse_tz("tz", "Mars/Olympus").unwrap_err();
        assert!(e.message.contains("IANA"), "{}", e.message);
    }

    #[test]
    fn intervals_count_from_their_anchor_and_once_fires_once() {
        let e = Compiled::new(When::Every { every_ms: 90_000, anchor: ts("2026-01-01T00:00:00Z") }).unwrap();
        assert_eq!(e.next_after(ts("2025-12-31T00:00:00Z")), Some(ts("2026-01-01T00:00:00Z")));
        assert_eq!(e.next_after(ts("2026-01-01T00:00:00Z")), Some(ts("2026-01-01T00:01:30Z")));
        assert_eq!(e.next_after(ts("2026-01-01T00:02:59Z")), Some(ts("2026-01-01T00:03:00Z")));
        let o = Compiled::new(When::Once { at: ts("2026-12-01T09:00:00Z") }).unwrap();
        assert_eq!(o.next_after(ts("2026-01-01T00:00:00Z")), Some(ts("2026-12-01T09:00:00Z")));
        assert_eq!(o.next_after(ts("2026-12-01T09:00:00Z")), None);
        assert!(Compiled::new(When::Every { every_ms: 10, anchor: Timestamp(0) }).is_err());
    }

    #[test]
    fn misfire_policies_after_three_hours_down() {
        let c = Compiled::new(When::Every { every_ms: 60_000, anchor: ts("2026-01-01T00:00:00Z") }).unwrap();
        let down = ts("2026-01-01T00:00:30Z");
        let first = c.next_after(down).unwrap();
        let now = ts("2026-01-01T03:00:30Z");
        let lateness = Duration::from_secs(60);
        let skip = plan_due(&c, first, now, lateness, Misfire::Skip, 50);
        assert_eq!(skip.fire, vec![ts("2026-01-01T03:00:00Z")], "only the on-time slot");
        assert_eq!(skip.missed.len(), 179);
        let once = plan_due(&c, first, now, lateness, Misfire::Once, 50);
        assert_eq!(once.fire, vec![ts("2026-01-01T02:59:00Z"), ts("2026-01-01T03:00:00Z")]);
        assert_eq!(once.missed.len(), 178);
        let all = plan_due(&c, first, now, lateness, Misfire::All, 50);
        assert_eq!(all.fire.len(), 51);
        assert_eq!(all.fire[0], ts("2026-01-01T02:10:00Z"), "the most recent 50 missed slots");
        assert_eq!(all.missed.len(), 129);
        assert!(all.missed[0].1.contains("cap of 50"));
        assert_eq!(all.next, Some(ts("2026-01-01T03:01:00Z")));
    }

    #[test]
    fn policies_parse_and_name_their_choices() {
        assert_eq!("Queue".parse::<Overlap>().unwrap(), Overlap::Queue);
        assert!("later".parse::<Misfire>().unwrap_err().contains("skip, once, all"));
    }

    #[test]
    fn a_resumed_schedule_owes_its_first_slot_after_the_resume() {
        let when = When::Every { every_ms: 3_600_000, anchor: Timestamp(0) };
        let compiled = Compiled::new(when.clone()).unwrap();
        let h = |n: i64| Timestamp(n * 3_600_000);
        let mut s = Schedule {
            id: 1,
            spec: ScheduleSpec {
                name: "hourly".into(),
                when,
                template: crate::TaskSpec::new(crate::Command::Shell("true".into())),
                misfire: Default::default(),
                misfire_cap: 10,
                overlap: Overlap::Allow,
                max_lateness_ms: 60_000,
                jitter_ms: 0,
                end_at: None,
                max_runs: None,
                created_by: None,
            },
            state: ScheduleState::Active,
            next_fire_at: Some(h(101)),
            pending_slot: None,
            last_task_id: None,
            last_fire_at: None,
            fired: 1,
            missed: 0,
            skipped: 0,
            late: 0,
            last_success_at: Some(h(1)),
            last_success_ms: Some(0),
            active_since: None,
            created_at: h(0),
            updated_at: h(1),
        };
        let grace = std::time::Duration::from_secs(1800);
        assert_eq!(success_due_by(&s, &compiled, grace), Some(h(2).plus(grace)), "hour 2, plus the grace");
        // Paused from hour 1 to hour 100: it owes its first slot after the resume.
        s.active_since = Some(h(100));
        assert_eq!(success_due_by(&s, &compiled, grace), Some(h(101).plus(grace)));
        s.state = ScheduleState::Paused;
        assert_eq!(success_due_by(&s, &compiled, grace), None);
    }
}
