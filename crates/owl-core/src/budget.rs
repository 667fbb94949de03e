//! Budgets as pure rules: the scopes work is charged to, the periods that reset them, the day
//! and night shares of a subscription window, and the estimate reserved before a model call.
//!
//! The ledger itself (reservations and what they settled to) lives in the store; the engine
//! asks it, inside one transaction, whether an estimate fits every scope that applies. What
//! fits, when a period resets and what a waiting task is told all come from here, so every
//! backend and every caller decide alike.

use crate::agent::Price;
use crate::time::Timestamp;
use chrono::{Datelike, NaiveTime, TimeZone, Timelike, Utc};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::time::Duration;

/// An amount of US dollars, kept as whole micro-dollars so specs compare exactly. On the
/// wire it is a number of dollars (`0.30`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Dollars(pub u64);

impl Dollars {
    pub fn from_usd(usd: f64) -> Result<Dollars, String> {
        if !usd.is_finite() || !(0.0..=1e9).contains(&usd) {
            return Err(format!("`{usd}` is not an amount of dollars; give a number such as 0.30"));
        }
        Ok(Dollars((usd * 1e6).round() as u64))
    }

    pub fn usd(self) -> f64 {
        self.0 as f64 / 1e6
    }
}

impl Serialize for Dollars {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(self.usd())
    }
}

impl<'de> Deserialize<'de> for Dollars {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Dollars, D::Error> {
        Dollars::from_usd(f64::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for Dollars {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new().schema_type(Type::Number).minimum(Some(0.0)).description(Some("US dollars, e.g. 0.30")).into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for Dollars {}

/// `[budgets."SCOPE"]` by scope name.
pub type Budgets = BTreeMap<String, BudgetSettings>;

/// The `until` of a wait on a cap that never resets (a task's total): only raising the
/// limit (or cancelling the task) ends it. 9999-12-31.
pub const NO_RESET: Timestamp = Timestamp(253_402_300_799_000);

/// Estimates are inflated by this much before they are reserved (input tokens are counted
/// roughly, and a provider's count differs from ours).
pub const MARGIN: f64 = 1.2;

/// One scope's limits.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSettings {
    /// US dollars per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd: Option<f64>,
    /// Input plus output tokens per period.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// `day`, `week` or `month` (calendar periods in `tz`), or a duration such as `1h`, `1d`,
    /// `7d` or `30d` (a rolling window: what was spent within the last so long).
    #[serde(default)]
    pub period: Period,
    /// At this fraction of a limit a `budget_warning` event is published (once per period).
    #[serde(default = "default_warn_at")]
    pub warn_at: f64,
    /// For a coding CLI's subscription (`provider.NAME`, NAME a CLI profile): use at most this
    /// percentage of its 5-hour and weekly windows by day and by night.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_percent: Option<WindowShare>,
    /// The night, `HH:MM-HH:MM` in `tz` (may cross midnight).
    #[serde(default = "default_night")]
    pub night: String,
    /// The time zone of calendar periods and of the night (IANA name).
    #[serde(default = "default_tz")]
    pub tz: String,
}

fn default_warn_at() -> f64 {
    0.75
}
fn default_night() -> String {
    "01:00-09:00".into()
}
fn default_tz() -> String {
    "UTC".into()
}

impl BudgetSettings {
    /// A cap over a task's whole life (`owl add --max-cost`).
    pub fn total_usd(usd: f64) -> BudgetSettings {
        BudgetSettings { usd: Some(usd), ..BudgetSettings::limits(None, None, Period::Total) }
    }

    pub fn limits(usd: Option<f64>, tokens: Option<u64>, period: Period) -> BudgetSettings {
        BudgetSettings { usd, tokens, period, warn_at: default_warn_at(), window_percent: None, night: default_night(), tz: default_tz() }
    }

    fn zone(&self) -> chrono_tz::Tz {
        self.tz.parse().unwrap_or(chrono_tz::UTC)
    }

    /// Where the current period began: spend at or after it counts.
    pub fn period_start(&self, now: Timestamp) -> Timestamp {
        match self.period {
            Period::Total => Timestamp(i64::MIN / 2),
            Period::Rolling(d) => now.minus(d),
            Period::Day | Period::Week | Period::Month => calendar_start(self.period, self.zone(), now),
        }
    }

    /// When room comes back: the next calendar boundary, or (rolling) when the oldest spend
    /// in the window ages out of it. `None` for a task's total, which never resets.
    pub fn resets_at(&self, now: Timestamp, oldest_in_window: Option<Timestamp>) -> Option<Timestamp> {
        match self.period {
            Period::Total => None,
            Period::Rolling(d) => Some(oldest_in_window.unwrap_or(now).plus(d).max(now.plus(Duration::from_secs(1)))),
            p => Some(calendar_next(p, self.zone(), now)),
        }
    }

    fn night_minutes(&self) -> (u32, u32) {
        parse_night(&self.night).unwrap_or((60, 540))
    }

    /// Whether `now` falls in the night, in `tz`.
    pub fn is_night(&self, now: Timestamp) -> bool {
        let (start, end) = self.night_minutes();
        let m = local(self.zone(), now).map(|t| t.hour() * 60 + t.minute()).unwrap_or(0);
        if start <= end {
            (start..end).contains(&m)
        } else {
            m >= start || m < end
        }
    }

    /// The next instant the night begins or ends.
    pub fn next_switch(&self, now: Timestamp) -> Timestamp {
        let (start, end) = self.night_minutes();
        let mut best: Option<Timestamp> = None;
        for minute in [start, end] {
            if let Some(t) = next_local_minute(self.zone(), now, minute) {
                best = Some(best.map_or(t, |b| b.min(t)));
            }
        }
        best.unwrap_or(now.plus(Duration::from_secs(3600)))
    }

    /// The share of a subscription window usable now, in percent.
    pub fn share_now(&self, now: Timestamp) -> Option<f64> {
        self.window_percent.map(|w| if self.is_night(now) { w.night } else { w.day })
    }
}

/// A limit set at run time (`owl budget set`): it replaces the configured `usd` and `tokens`
/// of its scope until unset.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitOverride {
    /// US dollars per period (a task's cap: in all).
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub usd: Option<f64>,
    /// Input plus output tokens per period.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "present")]
    pub tokens: Option<u64>,
}

/// A field that may be left out but not given as `null`.
fn present<'de, D: serde::Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Option<T>, D::Error> {
    T::deserialize(d).map(Some)
}

/// Written by hand: at least one of the two limits must be given.
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for LimitOverride {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, KnownFormat, ObjectBuilder, SchemaFormat, Type};
        ObjectBuilder::new()
            .property(
                "usd",
                ObjectBuilder::new()
                    .schema_type(Type::Number)
                    .minimum(Some(0.0))
                    .maximum(Some(1e9))
                    .description(Some("US dollars per period (a task's cap: in all)")),
            )
            .property(
                "tokens",
                ObjectBuilder::new()
                    .schema_type(Type::Integer)
                    .format(Some(SchemaFormat::KnownFormat(KnownFormat::Int64)))
                    .minimum(Some(0.0))
                    .description(Some("Input plus output tokens per period")),
            )
            .additional_properties(Some(AdditionalProperties::FreeForm(false)))
            .min_properties(Some(1))
            .description(Some("A limit set at run time: give usd, tokens or both"))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for LimitOverride {}

/// One scope as `owl budget` shows it: its limits, what it spent and holds this period, when
/// it resets, and what waits on it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BudgetStatus {
    pub scope: String,
    /// `config`, `set` (by `owl budget set`), `config, set`, or `task cap`.
    pub source: String,
    pub period: String,
    pub tz: String,
    pub usd: Option<f64>,
    pub tokens: Option<u64>,
    pub spent_usd: f64,
    pub spent_tokens: u64,
    /// Held by work in flight.
    pub reserved_usd: f64,
    pub reserved_tokens: u64,
    /// When the period resets; `None` for a cap that never does.
    pub resets_at: Option<Timestamp>,
    pub warn_at: f64,
    /// A subscription window rule: the shares, and the one that applies now.
    pub window_percent: Option<WindowShare>,
    pub share_now: Option<f64>,
    /// What the CLI last reported about its windows.
    pub windows: Option<WindowState>,
    /// How a window rule is being judged, in words (reported, or owl's own count when the
    /// CLI reports nothing).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
    /// Tasks waiting for room in this scope.
    pub waiting: Vec<i64>,
}

/// Day and night shares of a subscription window, in percent.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WindowShare {
    pub day: f64,
    pub night: f64,
}

/// How long a budget's spend counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Period {
    /// Since midnight in the scope's time zone.
    #[default]
    Day,
    /// Since Monday 00:00.
    Week,
    /// Since the first of the month.
    Month,
    /// The last so long, sliding.
    Rolling(Duration),
    /// Ever (a task's own cap).
    Total,
}

impl Period {
    pub fn parse(s: &str) -> Result<Period, String> {
        match s.trim() {
            "day" | "daily" => Ok(Period::Day),
            "week" | "weekly" => Ok(Period::Week),
            "month" | "monthly" => Ok(Period::Month),
            "total" => Ok(Period::Total),
            other => match crate::duration::parse(other) {
                Ok(d) if d >= Duration::from_secs(60) => Ok(Period::Rolling(d)),
                Ok(_) => Err(format!("`{other}` is shorter than a minute")),
                Err(_) => Err(format!("`{other}` is not a period; use day, week, month, or a rolling duration such as 1h, 1d, 7d or 30d")),
            },
        }
    }

    pub fn name(&self) -> String {
        match self {
            Period::Day => "day".into(),
            Period::Week => "week".into(),
            Period::Month => "month".into(),
            Period::Total => "total".into(),
            Period::Rolling(d) => crate::duration::format(*d),
        }
    }

    /// How the period reads in a sentence: "this day", "the last 1h".
    pub fn phrase(&self) -> String {
        match self {
            Period::Rolling(d) => format!("in the last {}", crate::duration::format(*d)),
            Period::Total => "in total".into(),
            p => format!("this {}", p.name()),
        }
    }
}

impl Serialize for Period {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name())
    }
}

impl<'de> Deserialize<'de> for Period {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Period, D::Error> {
        let s = String::deserialize(d)?;
        Period::parse(&s).map_err(serde::de::Error::custom)
    }
}

fn local(tz: chrono_tz::Tz, t: Timestamp) -> Option<chrono::DateTime<chrono_tz::Tz>> {
    Utc.timestamp_millis_opt(t.0).single().map(|u| u.with_timezone(&tz))
}

fn from_local(tz: chrono_tz::Tz, date: chrono::NaiveDate, time: NaiveTime) -> Option<Timestamp> {
    // A time skipped by a DST change is taken an hour later; an ambiguous one at its first.
    let naive = date.and_time(time);
    let dt =
        tz.from_local_datetime(&naive).earliest().or_else(|| tz.from_local_datetime(&(naive + chrono::Duration::hours(1))).earliest())?;
    Some(Timestamp(dt.timestamp_millis()))
}

fn calendar_start(p: Period, tz: chrono_tz::Tz, now: Timestamp) -> Timestamp {
    let Some(l) = local(tz, now) else { return now };
    let date = l.date_naive();
    let first = match p {
        Period::Week => date - chrono::Duration::days(date.weekday().num_days_from_monday() as i64),
        Period::Month => date.with_day(1).unwrap_or(date),
        _ => date,
    };
    from_local(tz, first, NaiveTime::MIN).unwrap_or(now)
}

fn calendar_next(p: Period, tz: chrono_tz::Tz, now: Timestamp) -> Timestamp {
    let Some(l) = local(tz, calendar_start(p, tz, now)) else { return now };
    let date = l.date_naive();
    let next = match p {
        Period::Week => date + chrono::Duration::days(7),
        Period::Month => {
            let (y, m) = if date.month() == 12 { (date.year() + 1, 1) } else { (date.year(), date.month() + 1) };
            chrono::NaiveDate::from_ymd_opt(y, m, 1).unwrap_or(date)
        }
        _ => date + chrono::Duration::days(1),
    };
    from_local(tz, next, NaiveTime::MIN).unwrap_or(now.plus(Duration::from_secs(86_400)))
}

/// The next instant after `now` whose local time is `minute` past midnight.
fn next_local_minute(tz: chrono_tz::Tz, now: Timestamp, minute: u32) -> Option<Timestamp> {
    let l = local(tz, now)?;
    let time = NaiveTime::from_hms_opt(minute / 60, minute % 60, 0)?;
    for days in 0..3 {
        let date = l.date_naive() + chrono::Duration::days(days);
        if let Some(t) = from_local(tz, date, time) {
            if t > now {
                return Some(t);
            }
        }
    }
    None
}

/// `"01:00-09:00"` as minutes after midnight.
pub fn parse_night(s: &str) -> Result<(u32, u32), String> {
    let bad = || format!("`{s}` is not a night; write it as HH:MM-HH:MM, e.g. 01:00-09:00");
    let (a, b) = s.split_once('-').ok_or_else(bad)?;
    let minutes = |t: &str| -> Result<u32, String> {
        let t = NaiveTime::parse_from_str(t.trim(), "%H:%M").map_err(|_| bad())?;
        Ok(t.hour() * 60 + t.minute())
    };
    let (a, b) = (minutes(a)?, minutes(b)?);
    if a == b {
        return Err(format!("`{s}` is empty: the night must start and end at different times"));
    }
    Ok((a, b))
}

/// Who work is charged to. Every call is charged to each scope that applies to it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Scope {
    Global,
    /// A configured provider, or a coding CLI profile.
    Provider(String),
    Agent(String),
    Schedule(String),
    Group(String),
    /// One task (and the subtasks it made).
    Task(i64),
}

impl Scope {
    pub fn parse(s: &str) -> Result<Scope, String> {
        if s == "global" {
            return Ok(Scope::Global);
        }
        let (kind, name) = s.split_once('.').filter(|(_, n)| !n.is_empty()).ok_or_else(|| {
            format!("`{s}` is not a scope; scopes are global, provider.NAME, agent.NAME, schedule.NAME, group.NAME or task.ID")
        })?;
        Ok(match kind {
            "provider" => Scope::Provider(name.into()),
            "agent" => Scope::Agent(name.into()),
            "schedule" => Scope::Schedule(name.into()),
            "group" => Scope::Group(name.into()),
            "task" => Scope::Task(name.parse().map_err(|_| format!("`{name}` in `{s}` is not a task id"))?),
            other => {
                return Err(format!(
                    "`{other}` is not a kind of scope; use global, provider.NAME, agent.NAME, schedule.NAME, group.NAME or task.ID"
                ))
            }
        })
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scope::Global => f.write_str("global"),
            Scope::Provider(n) => write!(f, "provider.{n}"),
            Scope::Agent(n) => write!(f, "agent.{n}"),
            Scope::Schedule(n) => write!(f, "schedule.{n}"),
            Scope::Group(n) => write!(f, "group.{n}"),
            Scope::Task(id) => write!(f, "task.{id}"),
        }
    }
}

/// Checks `[budgets]`; errors name the key.
pub fn check(budgets: &Budgets) -> Result<(), (String, String)> {
    for (name, b) in budgets {
        let field = |k: &str| format!("budgets.\"{name}\".{k}");
        let scope = Scope::parse(name).map_err(|e| (format!("budgets.\"{name}\""), e))?;
        if matches!(scope, Scope::Task(_)) {
            return Err((
                format!("budgets.\"{name}\""),
                "a task's cap is set when it is submitted (`owl add --max-cost`), not in the config".into(),
            ));
        }
        if b.usd.is_none() && b.tokens.is_none() && b.window_percent.is_none() {
            return Err((format!("budgets.\"{name}\""), "sets no limit; give usd, tokens or window_percent".into()));
        }
        if let Some(u) = b.usd {
            if !(u.is_finite() && u >= 0.0) {
                return Err((field("usd"), "must be a number of dollars, 0 or more".into()));
            }
        }
        if !(b.warn_at > 0.0 && b.warn_at <= 1.0) {
            return Err((field("warn_at"), "must be a fraction above 0 and at most 1, e.g. 0.75".into()));
        }
        if let Some(w) = b.window_percent {
            if !matches!(scope, Scope::Provider(_)) {
                return Err((field("window_percent"), "applies to a coding CLI's subscription: use it on a provider.NAME scope".into()));
            }
            for (k, v) in [("day", w.day), ("night", w.night)] {
                if !(0.0..=100.0).contains(&v) {
                    return Err((field("window_percent"), format!("{k} = {v} must be a percentage from 0 to 100")));
                }
            }
        }
        if matches!(b.period, Period::Total) {
            return Err((field("period"), "`total` is for a task's own cap; use day, week, month or a duration".into()));
        }
        if matches!(b.period, Period::Rolling(d) if d > Duration::from_secs(31 * 86_400)) {
            return Err((
                field("period"),
                "a rolling window may be at most 31d long (the ledger keeps 32 days); use month for longer".into(),
            ));
        }
        parse_night(&b.night).map_err(|e| (field("night"), e))?;
        crate::schedule::parse_tz(&field("tz"), &b.tz).map_err(|e| (e.field, e.message))?;
    }
    Ok(())
}

/// The cost and tokens reserved before a model call: its input counted roughly, with a
/// margin, plus its whole output limit.
pub fn estimate(price: Option<&Price>, input_chars: usize, max_output: u32) -> (f64, u64) {
    let input = ((input_chars as f64 / 4.0) * MARGIN).ceil() as u64;
    let usd = price.map(|p| p.cost(input, max_output as u64, 0)).unwrap_or(0.0);
    (usd, input + max_output as u64)
}

/// One subscription window as a coding CLI reported it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WindowReading {
    /// `five_hour`, `seven_day`, `primary`, `secondary`.
    pub name: String,
    /// How much of it is used; `None` when the CLI said only whether it is allowed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_percent: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resets_at: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minutes: Option<u32>,
    /// The CLI said this window refuses work now.
    #[serde(default)]
    pub rejected: bool,
}

/// What owl last heard about one subscription's windows.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct WindowState {
    pub windows: Vec<WindowReading>,
    /// When it was reported.
    pub at: Option<Timestamp>,
}

impl WindowState {
    /// Folds a new reading in: the same window replaced, others kept.
    pub fn update(&mut self, r: WindowReading, at: Timestamp) {
        self.windows.retain(|w| w.name != r.name);
        self.windows.push(r);
        self.windows.sort_by(|a, b| a.name.cmp(&b.name));
        self.at = Some(at);
    }
}

/// Whether a subscription's windows leave room under the share of now.
pub fn window_verdict(b: &BudgetSettings, scope: &str, state: Option<&WindowState>, now: Timestamp) -> Option<(Timestamp, String)> {
    let share = b.share_now(now)?;
    let night = b.is_night(now);
    let other = b.window_percent.map(|w| if night { w.day } else { w.night }).unwrap_or(share);
    let mut worst: Option<(Timestamp, String)> = None;
    let reported = state.and_then(|s| s.at).unwrap_or(now);
    for w in state.map(|s| s.windows.as_slice()).unwrap_or(&[]) {
        // Without a reset time, a reading holds for its window's length after it was made.
        let resets = w.resets_at.unwrap_or(reported.plus(Duration::from_secs(w.minutes.unwrap_or(300) as u64 * 60)));
        if resets <= now {
            continue; // that window has reset since it was reported
        }
        let used = match (w.used_percent, w.rejected) {
            (_, true) => 100.0,
            (Some(u), false) => u,
            (None, false) => continue,
        };
        if used < share {
            continue;
        }
        let reset = resets;
        // The other part of the day may allow more: wait for it when it comes first.
        let until = if other > used { reset.min(b.next_switch(now)) } else { reset };
        let reason = format!(
            "{scope}: the {} window is {used:.0}% used and owl uses at most {share:.0}% of it by {} (resets at {})",
            w.name,
            if night { "night" } else { "day" },
            until.to_rfc3339()
        );
        if worst.as_ref().is_none_or(|(t, _)| until > *t) {
            worst = Some((until, reason));
        }
    }
    worst
}

/// Where a price came from, as `owl usage` shows it.
pub fn price_label(source: &PriceSource) -> String {
    match source {
        PriceSource::Configured(m) => format!("[prices.\"{m}\"]"),
        PriceSource::Table(m) => format!("table {PRICE_TABLE_DATE} ({m})"),
        PriceSource::Local => "local (free)".into(),
        PriceSource::Reported => "reported by the CLI".into(),
        PriceSource::Estimate => "owl's estimate (the CLI reported no usage)".into(),
        PriceSource::Unknown => "unknown (no price)".into(),
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PriceSource {
    /// From `[prices."MODEL"]` (the key that matched).
    Configured(String),
    /// From the shipped table (the entry that matched).
    Table(String),
    Local,
    Reported,
    Estimate,
    Unknown,
}

/// The date of the shipped price snapshot.
pub const PRICE_TABLE_DATE: &str = "2025-12-01";

const PRICE_TABLE: &str = include_str!("prices.toml");

/// The shipped price table: model name to USD per million tokens.
pub fn price_table() -> BTreeMap<String, Price> {
    #[derive(Deserialize)]
    struct Doc {
        models: BTreeMap<String, Price>,
    }
    toml::from_str::<Doc>(PRICE_TABLE).map(|d| d.models).unwrap_or_default()
}

/// The price of `model`: `[prices]` first, then the table. A name matches exactly, without a
/// `vendor/` prefix, or by its longest listed prefix followed by `-`, `@` or `:` (a dated
/// release such as `claude-sonnet-4-5-20250929`).
pub fn lookup_price(configured: &BTreeMap<String, Price>, table: &BTreeMap<String, Price>, model: &str) -> Option<(Price, PriceSource)> {
    let bare = model.rsplit_once('/').map(|(_, m)| m).unwrap_or(model);
    if let Some((k, p)) = find(configured, model).or_else(|| find(configured, bare)) {
        return Some((p, PriceSource::Configured(k)));
    }
    find(table, bare).map(|(k, p)| (p, PriceSource::Table(k)))
}

fn find(map: &BTreeMap<String, Price>, model: &str) -> Option<(String, Price)> {
    if let Some(p) = map.get(model) {
        return Some((model.to_string(), *p));
    }
    map.iter()
        .filter(|(k, _)| model.strip_prefix(k.as_str()).is_some_and(|rest| rest.starts_with(['-', '@', ':'])))
        .max_by_key(|(k, _)| k.len())
        .map(|(k, p)| (k.clone(), *p))
}

#[cfg(test)]
mod tests;
