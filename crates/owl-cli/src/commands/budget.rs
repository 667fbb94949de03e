//! `owl budget`: every scope's limits and spend, limits set at run time, and prices.

use crate::cli::BudgetAction;
use crate::client::Client;
use crate::output::{now, print_json, relative, table};
use anyhow::Result;
use owl_api::{BudgetList, BudgetStatus, LimitOverride, PriceList};

fn money(usd: f64) -> String {
    if usd >= 1.0 {
        format!("${usd:.2}")
    } else {
        format!("${usd:.4}")
    }
}

fn limit(b: &BudgetStatus) -> String {
    let mut parts = vec![];
    if let Some(u) = b.usd {
        parts.push(format!("${u:.2}"));
    }
    if let Some(t) = b.tokens {
        parts.push(format!("{t} tok"));
    }
    if let Some(w) = b.window_percent {
        parts.push(format!("window {}%/{}% day/night", w.day, w.night));
    }
    format!("{} /{}", parts.join(" + "), b.period)
}

fn spent(b: &BudgetStatus) -> String {
    let mut parts = vec![];
    if b.usd.is_some() || b.spent_usd > 0.0 {
        parts.push(money(b.spent_usd));
    }
    if b.tokens.is_some() {
        parts.push(format!("{} tok", b.spent_tokens));
    }
    if let Some(w) = &b.windows {
        for r in &w.windows {
            parts.push(match r.used_percent {
                Some(p) => format!("{} {p:.0}%", r.name),
                None if r.rejected => format!("{} full", r.name),
                None => format!("{} ?", r.name),
            });
        }
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(", ")
    }
}

fn held(b: &BudgetStatus) -> String {
    match (b.reserved_usd > 0.0, b.reserved_tokens > 0) {
        (false, false) => "-".into(),
        (true, _) => money(b.reserved_usd),
        (false, true) => format!("{} tok", b.reserved_tokens),
    }
}

pub async fn run(client: &Client, action: Option<BudgetAction>, json: bool) -> Result<()> {
    match action.unwrap_or(BudgetAction::Ls) {
        BudgetAction::Ls => {
            let list: BudgetList = client.get("/v1/budgets").await?;
            if json {
                print_json(&list);
                return Ok(());
            }
            if list.budgets.is_empty() {
                println!("no budgets: add [budgets.global] (or agent.NAME, provider.NAME, …) to the config, or `owl budget set SCOPE --usd N`; see docs/budgets.md");
                return Ok(());
            }
            let n = now();
            let rows = list
                .budgets
                .iter()
                .map(|b| {
                    vec![
                        b.scope.clone(),
                        limit(b),
                        spent(b),
                        held(b),
                        b.resets_at.filter(|t| *t < owl_core::budget::NO_RESET).map(|t| relative(t, n)).unwrap_or_else(|| "never".into()),
                        if b.waiting.is_empty() {
                            "-".into()
                        } else {
                            b.waiting.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(",")
                        },
                        b.source.clone(),
                    ]
                })
                .collect();
            table(&["SCOPE", "LIMIT", "SPENT", "HELD", "RESETS", "WAITING", "FROM"], rows);
            for b in list.budgets.iter().filter(|b| !b.note.is_empty()) {
                println!("{}: {}", b.scope, b.note);
            }
        }
        BudgetAction::Set { scope, usd, tokens } => {
            let b: BudgetStatus = client.put(&format!("/v1/budgets/{scope}"), &LimitOverride { usd, tokens }).await?;
            if json {
                print_json(&b);
            } else {
                println!("{}: {} (spent {}); tasks waiting on budgets ask again now", b.scope, limit(&b), spent(&b));
            }
        }
        BudgetAction::Unset { scope } => {
            let list: BudgetList =
                client.request(reqwest::Method::DELETE, &format!("/v1/budgets/{scope}"), None::<&()>).await?.json().await?;
            if json {
                print_json(&list);
            } else {
                match list.budgets.iter().find(|b| b.scope == scope) {
                    Some(b) => println!("{scope}: back to the config's {}", limit(b)),
                    None => println!("{scope}: no limit now"),
                }
            }
        }
        BudgetAction::Prices => {
            let p: PriceList = client.get("/v1/prices").await?;
            if json {
                print_json(&p);
                return Ok(());
            }
            println!("USD per million tokens; the table is a snapshot of {} (override with [prices.\"MODEL\"])", p.table_date);
            let rows = p
                .prices
                .iter()
                .map(|v| {
                    vec![
                        v.model.clone(),
                        format!("{:.3}", v.input),
                        format!("{:.3}", v.output),
                        v.cached.map(|c| format!("{c:.3}")).unwrap_or_else(|| "-".into()),
                        v.source.clone(),
                    ]
                })
                .collect();
            table(&["MODEL", "INPUT", "OUTPUT", "CACHED", "FROM"], rows);
        }
    }
    Ok(())
}
