//! Routing: which agent takes a task that asks for capabilities and a size instead of naming
//! an agent. The rule, in order: an agent is *able* when it has every capability asked for and
//! its complexity range holds the task's size; among able agents the *available* ones (fewer
//! tasks running than `max_concurrent`) come first, the cheapest of them, then the one idle
//! the longest. With none available the task waits for the able agent with the shortest queue;
//! with none able the submission is refused with each agent's reason. The decision and every
//! candidate considered are kept on the task.

use crate::agent::Agents;
use crate::Timestamp;
use serde::{Deserialize, Serialize};

/// What a task asks of the agent that will take it, and (once routed) who took it and why.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Routing {
    /// Capabilities the agent must all have.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// The task's size, 1 (trivial) to 10 (hard); `None` fits every range.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub complexity: Option<u8>,
    /// The agent chosen (empty until routed).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub chosen: String,
    /// One line saying why.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub decision: String,
    /// Every agent considered, in the order of preference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
}

/// One agent as routing saw it.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Candidate {
    pub agent: String,
    /// `available`, `busy`, or why it cannot take the task (`lacks rust`, `complexity 4 is
    /// outside [1, 3]`).
    pub verdict: String,
    /// Tasks of it running when the task was routed.
    pub running: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent: Option<u32>,
    /// USD per million tokens (input plus output) of its model; `None` when owl knows no price.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_per_mtok: Option<String>,
}

/// What routing needs to know about an agent right now.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Load {
    pub running: u32,
    pub queued: u32,
    /// When a task of it last started; `None` for never.
    pub last_active: Option<Timestamp>,
    /// USD per million tokens, input plus output; `Some(0.0)` for a local model.
    pub price: Option<f64>,
}

/// A capability is a short lowercase word: `rust`, `security-review`, `plan`.
pub fn check_capability(c: &str) -> Result<(), String> {
    let ok = !c.is_empty() && c.len() <= 64 && c.chars().all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || "-_.".contains(ch));
    if ok {
        Ok(())
    } else {
        Err(format!("`{c}` is not a capability; use up to 64 lowercase letters, digits and - _ . (e.g. rust, security-review)"))
    }
}

/// Checks what a submitter asked for.
pub fn check_request(needs: &[String], complexity: Option<u8>) -> Result<(), (String, String)> {
    for n in needs {
        check_capability(n).map_err(|m| ("needs".to_string(), m))?;
    }
    if let Some(c) = complexity {
        if !(1..=10).contains(&c) {
            return Err(("complexity".into(), format!("{c} is not a task size; give 1 (trivial) to 10 (hard)")));
        }
    }
    Ok(())
}

/// Chooses an agent for `req` among `agents`, or says why none can take it. `load` tells how
/// busy and how dear each agent is.
pub fn route(agents: &Agents, req: &Routing, load: impl Fn(&str) -> Load) -> Result<Routing, String> {
    struct Seen {
        name: String,
        able: Option<String>,
        available: bool,
        load: Load,
        max: Option<u32>,
    }
    let mut seen: Vec<Seen> = agents
        .iter()
        .map(|(name, a)| {
            let l = load(name);
            let lacks: Vec<&str> =
                req.needs.iter().filter(|n| !a.capabilities.iter().any(|c| c.eq_ignore_ascii_case(n))).map(String::as_str).collect();
            let [low, high] = a.complexity;
            let why_not = if !lacks.is_empty() {
                Some(format!("lacks {}", lacks.join(", ")))
            } else {
                req.complexity.filter(|c| !(low..=high).contains(c)).map(|c| format!("complexity {c} is outside [{low}, {high}]"))
            };
            let available = why_not.is_none() && a.max_concurrent.is_none_or(|m| l.running < m);
            Seen { name: name.clone(), able: why_not, available, load: l, max: a.max_concurrent }
        })
        .collect();
    // Able before unable; available before busy; cheapest (unknown price last); idle longest.
    seen.sort_by(|a, b| {
        let key = |s: &Seen| (s.able.is_some(), !s.available);
        key(a)
            .cmp(&key(b))
            .then_with(|| {
                let p = |s: &Seen| s.load.price.unwrap_or(f64::INFINITY);
                p(a).total_cmp(&p(b))
            })
            .then_with(|| a.load.last_active.cmp(&b.load.last_active))
            .then_with(|| a.name.cmp(&b.name))
    });
    let candidates: Vec<Candidate> = seen
        .iter()
        .map(|s| Candidate {
            agent: s.name.clone(),
            verdict: match (&s.able, s.available) {
                (Some(why), _) => why.clone(),
                (None, true) => "available".into(),
                (None, false) => "busy".into(),
            },
            running: s.load.running,
            max_concurrent: s.max,
            price_per_mtok: s.load.price.map(|p| format!("{p:.2}")),
        })
        .collect();
    let asked = describe(req);
    let mut out = Routing { needs: req.needs.clone(), complexity: req.complexity, candidates, ..Default::default() };
    match seen.first() {
        Some(s) if s.able.is_none() && s.available => {
            out.chosen = s.name.clone();
            let price = match s.load.price {
                Some(p) => format!("${p:.2}/Mtok"),
                None => "no known price".into(),
            };
            let others = seen.iter().filter(|o| o.able.is_none() && o.available).count() - 1;
            out.decision = format!(
                "{asked}: {} is available ({price}){}",
                s.name,
                if others > 0 { format!(", chosen over {others} other available") } else { String::new() }
            );
        }
        Some(_) if seen.iter().any(|s| s.able.is_none()) => {
            // All able agents are busy: wait for the one whose queue is shortest.
            let s = seen
                .iter()
                .filter(|s| s.able.is_none())
                .min_by_key(|s| (s.load.running + s.load.queued).saturating_sub(s.max.unwrap_or(0)))
                .expect("one is able");
            out.chosen = s.name.clone();
            out.decision = format!("{asked}: every able agent is busy; waits for {} ({} queued for it)", s.name, s.load.queued);
        }
        _ => {
            let reasons: Vec<String> = seen.iter().map(|s| format!("{} {}", s.name, s.able.as_deref().unwrap_or("?"))).collect();
            return Err(if reasons.is_empty() {
                format!("no agent can take a task that {asked}: no agents are configured")
            } else {
                format!("no agent can take a task that {asked}: {}", reasons.join("; "))
            });
        }
    }
    Ok(out)
}

/// `needs rust, code at complexity 4`.
fn describe(req: &Routing) -> String {
    match (req.needs.is_empty(), req.complexity) {
        (false, Some(c)) => format!("needs {} at complexity {c}", req.needs.join(", ")),
        (false, None) => format!("needs {}", req.needs.join(", ")),
        (true, Some(c)) => format!("is of complexity {c}"),
        (true, None) => "names no agent".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::AgentSettings;

    fn agent(caps: &[&str], range: [u8; 2], max: Option<u32>) -> AgentSettings {
        let mut a = AgentSettings::new("p");
        a.capabilities = caps.iter().map(|c| c.to_string()).collect();
        a.complexity = range;
        a.max_concurrent = max;
        a
    }

    fn team() -> Agents {
        let mut m = Agents::new();
        m.insert("planner".into(), agent(&["plan", "review"], [1, 10], Some(1)));
        m.insert("coder".into(), agent(&["rust", "python", "code"], [1, 7], Some(2)));
        m.insert("senior".into(), agent(&["rust", "code"], [1, 10], None));
        m
    }

    fn ask(needs: &[&str], c: Option<u8>) -> Routing {
        Routing { needs: needs.iter().map(|s| s.to_string()).collect(), complexity: c, ..Default::default() }
    }

    #[test]
    fn the_cheapest_able_agent_is_chosen_and_every_candidate_recorded() {
        let price = |n: &str| Load { price: Some(if n == "coder" { 1.0 } else { 15.0 }), ..Load::default() };
        let r = route(&team(), &ask(&["rust"], Some(4)), price).unwrap();
        assert_eq!(r.chosen, "coder");
        assert_eq!(r.candidates.len(), 3);
        assert_eq!(r.candidates[0].verdict, "available");
        assert_eq!(r.candidates[1].agent, "senior");
        assert_eq!(r.candidates[2].verdict, "lacks rust");
        assert!(r.decision.contains("coder is available"), "{}", r.decision);
    }

    #[test]
    fn complexity_outside_a_range_and_missing_capabilities_rule_agents_out() {
        let r = route(&team(), &ask(&["rust"], Some(9)), |_| Load::default()).unwrap();
        assert_eq!(r.chosen, "senior");
        let coder = r.candidates.iter().find(|c| c.agent == "coder").unwrap();
        assert_eq!(coder.verdict, "complexity 9 is outside [1, 7]");
        let err = route(&team(), &ask(&["haskell"], None), |_| Load::default()).unwrap_err();
        assert!(err.contains("coder lacks haskell") && err.contains("planner lacks haskell"), "{err}");
    }

    #[test]
    fn a_busy_agent_is_passed_over_then_waited_for() {
        let busy = |n: &str| Load { running: if n == "coder" { 2 } else { 0 }, price: Some(1.0), ..Load::default() };
        let r = route(&team(), &ask(&["python"], Some(3)), busy).unwrap();
        // Only the coder knows python: it is busy, so the task waits for it.
        assert_eq!(r.chosen, "coder");
        assert_eq!(r.candidates[0].verdict, "busy");
        assert!(r.decision.contains("waits for coder"), "{}", r.decision);
        let r = route(&team(), &ask(&["rust"], Some(3)), busy).unwrap();
        assert_eq!(r.chosen, "senior", "the busy coder is passed over for an available agent");
    }

    #[test]
    fn among_equals_the_one_idle_longest_goes_first() {
        let mut m = Agents::new();
        m.insert("a".into(), agent(&["code"], [1, 10], None));
        m.insert("b".into(), agent(&["code"], [1, 10], None));
        let load = |n: &str| Load { last_active: Some(Timestamp::from_millis(if n == "a" { 2000 } else { 1000 })), ..Load::default() };
        assert_eq!(route(&m, &ask(&["code"], None), load).unwrap().chosen, "b");
    }

    #[test]
    fn requests_are_checked() {
        assert!(check_request(&["rust".into()], Some(10)).is_ok());
        assert_eq!(check_request(&[], Some(11)).unwrap_err().0, "complexity");
        assert_eq!(check_request(&["Rust Code".into()], None).unwrap_err().0, "needs");
    }
}
