//! The budget rules: scopes, periods in their time zones, day and night shares, estimates, prices.

use super::*;

fn at(rfc: &str) -> Timestamp {
    Timestamp::parse_rfc3339(rfc).unwrap()
}

fn berlin(period: &str) -> BudgetSettings {
    BudgetSettings { tz: "Europe/Berlin".into(), ..BudgetSettings::limits(Some(5.0), None, Period::parse(period).unwrap()) }
}

#[test]
fn scopes_read_and_print_alike() {
    for s in ["global", "provider.claude-max", "agent.researcher", "schedule.nightly", "group.ci", "task.42"] {
        assert_eq!(Scope::parse(s).unwrap().to_string(), s);
    }
    assert!(Scope::parse("team.x").unwrap_err().contains("not a kind of scope"));
    assert!(Scope::parse("agent.").is_err());
    assert!(Scope::parse("task.x").unwrap_err().contains("not a task id"));
}

#[test]
fn periods_are_calendar_or_rolling() {
    assert_eq!(Period::parse("day").unwrap(), Period::Day);
    assert_eq!(Period::parse("month").unwrap(), Period::Month);
    assert_eq!(Period::parse("1d").unwrap(), Period::Rolling(Duration::from_secs(86_400)));
    assert!(Period::parse("fortnight").unwrap_err().contains("not a period"));
    assert!(Period::parse("10s").unwrap_err().contains("shorter than a minute"));
}

#[test]
fn a_calendar_day_starts_and_resets_at_midnight_in_its_time_zone() {
    let b = berlin("day");
    // 23:30 UTC on 3 December is 00:30 on the 4th in Berlin (UTC+1).
    let now = at("2026-12-03T23:30:00Z");
    assert_eq!(b.period_start(now), at("2026-12-03T23:00:00Z"));
    assert_eq!(b.resets_at(now, None), Some(at("2026-12-04T23:00:00Z")));
    let week = berlin("week");
    // Thursday the 3rd: the week began Monday the 30th of November, 00:00 Berlin.
    assert_eq!(week.period_start(at("2026-12-03T12:00:00Z")), at("2026-11-29T23:00:00Z"));
    assert_eq!(week.resets_at(at("2026-12-03T12:00:00Z"), None), Some(at("2026-12-06T23:00:00Z")));
    let month = berlin("month");
    assert_eq!(month.period_start(at("2026-12-31T22:00:00Z")), at("2026-11-30T23:00:00Z"));
    assert_eq!(month.resets_at(at("2026-12-31T22:00:00Z"), None), Some(at("2026-12-31T23:00:00Z")));
}

#[test]
fn a_day_across_a_daylight_saving_change_is_23_hours_long() {
    let b = berlin("day");
    // 29 March 2026: clocks go from 02:00 to 03:00 in Berlin.
    let start = b.period_start(at("2026-03-29T12:00:00Z"));
    let end = b.resets_at(at("2026-03-29T12:00:00Z"), None).unwrap();
    assert_eq!(end.since(start), Duration::from_secs(23 * 3600));
}

#[test]
fn a_rolling_window_frees_room_when_its_oldest_spend_ages_out() {
    let b = BudgetSettings::limits(Some(1.0), None, Period::parse("1h").unwrap());
    let now = at("2026-12-03T10:00:00Z");
    assert_eq!(b.period_start(now), at("2026-12-03T09:00:00Z"));
    assert_eq!(b.resets_at(now, Some(at("2026-12-03T09:20:00Z"))), Some(at("2026-12-03T10:20:00Z")));
    assert_eq!(BudgetSettings::total_usd(1.0).resets_at(now, None), None);
}

#[test]
fn a_whole_day_of_day_and_night_shares() {
    let b = BudgetSettings {
        window_percent: Some(WindowShare { day: 20.0, night: 80.0 }),
        night: "01:00-09:00".into(),
        tz: "Europe/Berlin".into(),
        ..BudgetSettings::limits(None, None, Period::Day)
    };
    // Every quarter hour of 3 December 2026 in Berlin (UTC+1).
    let mut t = at("2026-12-02T23:00:00Z");
    let end = at("2026-12-03T23:00:00Z");
    let mut switches = vec![];
    while t < end {
        let hour_berlin = ((t.0 / 3_600_000) + 1).rem_euclid(24);
        let night = (1..9).contains(&hour_berlin);
        assert_eq!(b.is_night(t), night, "at {t}");
        assert_eq!(b.share_now(t), Some(if night { 80.0 } else { 20.0 }));
        let s = b.next_switch(t);
        assert!(s > t);
        if !switches.contains(&s) {
            switches.push(s);
        }
        t = t.plus(Duration::from_secs(900));
    }
    assert_eq!(switches, vec![at("2026-12-03T00:00:00Z"), at("2026-12-03T08:00:00Z"), at("2026-12-04T00:00:00Z")]);
    // A night that crosses midnight.
    let late = BudgetSettings { night: "22:00-06:00".into(), tz: "UTC".into(), ..b.clone() };
    assert!(late.is_night(at("2026-12-03T23:00:00Z")) && late.is_night(at("2026-12-03T05:59:00Z")));
    assert!(!late.is_night(at("2026-12-03T06:00:00Z")));
}

#[test]
fn a_window_used_past_the_share_of_now_waits_for_the_night_or_the_reset() {
    let b = BudgetSettings {
        window_percent: Some(WindowShare { day: 20.0, night: 80.0 }),
        tz: "UTC".into(),
        ..BudgetSettings::limits(None, None, Period::Day)
    };
    let noon = at("2026-12-03T12:00:00Z");
    let reading = |used: f64, resets: &str| WindowState {
        windows: vec![WindowReading {
            name: "five_hour".into(),
            used_percent: Some(used),
            resets_at: Some(at(resets)),
            minutes: None,
            rejected: false,
        }],
        at: Some(noon),
    };
    // 10 % used by day: room.
    assert!(window_verdict(&b, "provider.claude", Some(&reading(10.0, "2026-12-03T14:00:00Z")), noon).is_none());
    // 30 % by day: wait for the window's reset, which comes before the night.
    let (until, why) = window_verdict(&b, "provider.claude", Some(&reading(30.0, "2026-12-03T14:00:00Z")), noon).unwrap();
    assert_eq!(until, at("2026-12-03T14:00:00Z"));
    assert!(why.contains("five_hour window is 30% used") && why.contains("at most 20% of it by day"), "{why}");
    // 30 % with a reset after the night begins: the night's larger share comes first.
    let late = at("2026-12-03T23:30:00Z");
    let (until, _) = window_verdict(&b, "provider.claude", Some(&reading(30.0, "2026-12-04T04:00:00Z")), late).unwrap();
    assert_eq!(until, at("2026-12-04T01:00:00Z"));
    // 90 % at night: the reset.
    let night = at("2026-12-04T02:00:00Z");
    let (until, _) = window_verdict(&b, "provider.claude", Some(&reading(90.0, "2026-12-04T04:00:00Z")), night).unwrap();
    assert_eq!(until, at("2026-12-04T04:00:00Z"));
    // A window whose reset has passed is free again; no report at all allows the work.
    assert!(window_verdict(&b, "provider.claude", Some(&reading(90.0, "2026-12-03T11:00:00Z")), noon).is_none());
    assert!(window_verdict(&b, "provider.claude", None, noon).is_none());
    // A reading with no reset holds for its window's length after it was reported.
    let no_reset = WindowState {
        windows: vec![WindowReading {
            name: "primary".into(),
            used_percent: Some(50.0),
            resets_at: None,
            minutes: Some(60),
            rejected: false,
        }],
        at: Some(noon),
    };
    assert_eq!(
        window_verdict(&b, "provider.codex", Some(&no_reset), noon.plus(Duration::from_secs(600))).unwrap().0,
        at("2026-12-03T13:00:00Z")
    );
    assert!(window_verdict(&b, "provider.codex", Some(&no_reset), at("2026-12-03T13:00:01Z")).is_none());
}

#[test]
fn estimates_reserve_the_input_with_a_margin_and_the_whole_output_limit() {
    let p = Price { input: 2.0, output: 10.0, cached: None };
    let (usd, tokens) = estimate(Some(&p), 4000, 500);
    assert_eq!(tokens, 1200 + 500);
    assert!((usd - (1200.0 * 2.0 + 500.0 * 10.0) / 1e6).abs() < 1e-12);
    assert_eq!(estimate(None, 4000, 500).0, 0.0);
}

#[test]
fn prices_come_from_the_config_first_then_the_table_by_longest_prefix() {
    let table = price_table();
    assert!(table.len() >= 20, "the shipped table parses");
    let none = BTreeMap::new();
    let (p, src) = lookup_price(&none, &table, "claude-sonnet-4-5-20250929").unwrap();
    assert_eq!(src, PriceSource::Table("claude-sonnet-4-5".into()));
    assert_eq!(p.output, 15.0);
    let (_, src) = lookup_price(&none, &table, "gpt-4o-mini-2024-07-18").unwrap();
    assert_eq!(src, PriceSource::Table("gpt-4o-mini".into()));
    let (_, src) = lookup_price(&none, &table, "openai/gpt-4.1").unwrap();
    assert_eq!(src, PriceSource::Table("gpt-4.1".into()));
    assert!(lookup_price(&none, &table, "gpt-4o2").is_none(), "a prefix must end at a separator");
    assert!(lookup_price(&none, &table, "my-local-model").is_none());
    let mine = BTreeMap::from([("gpt-4o".to_string(), Price { input: 1.0, output: 1.0, cached: None })]);
    let (p, src) = lookup_price(&mine, &table, "gpt-4o").unwrap();
    assert_eq!((p.input, src), (1.0, PriceSource::Configured("gpt-4o".into())));
    assert!(price_label(&PriceSource::Table("gpt-4o".into())).contains(PRICE_TABLE_DATE));
}

#[test]
fn bad_budgets_name_their_key() {
    let check1 = |name: &str, b: BudgetSettings| check(&BTreeMap::from([(name.to_string(), b)])).unwrap_err();
    let base = BudgetSettings::limits(Some(1.0), None, Period::Day);
    assert_eq!(check1("team.x", base.clone()).0, "budgets.\"team.x\"");
    assert!(check1("task.4", base.clone()).1.contains("--max-cost"));
    assert!(check1("global", BudgetSettings::limits(None, None, Period::Day)).1.contains("sets no limit"));
    assert_eq!(check1("global", BudgetSettings { warn_at: 1.5, ..base.clone() }).0, "budgets.\"global\".warn_at");
    assert_eq!(check1("global", BudgetSettings { usd: Some(-1.0), ..base.clone() }).0, "budgets.\"global\".usd");
    let w = BudgetSettings { window_percent: Some(WindowShare { day: 20.0, night: 80.0 }), ..base.clone() };
    assert!(check1("agent.a", w.clone()).1.contains("provider.NAME"));
    assert!(check1("provider.c", BudgetSettings { night: "1-9".into(), ..w.clone() }).1.contains("HH:MM-HH:MM"));
    assert_eq!(check1("provider.c", BudgetSettings { tz: "Mars/Base".into(), ..w }).0, "budgets.\"provider.c\".tz");
    assert!(check(&BTreeMap::from([("global".to_string(), base)])).is_ok());
}
