//! The configured providers and agents, resolved once from settings and secrets.

use crate::provider::{Provider, RetryPolicy, Route};
use owl_core::agent::{AgentDefaults, AgentSettings, Agents, Price, Prices, ProviderKind, ProviderSettings, Providers};
use serde::Serialize;
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::Arc;

/// An agent as `owl agents` shows it.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct AgentInfo {
    pub name: String,
    pub description: String,
    pub provider: String,
    pub model: String,
    pub fallback: Vec<String>,
    pub tools: Vec<String>,
    pub max_steps: u32,
    pub max_cost_usd: Option<f64>,
    /// Why this agent cannot run now (a missing key or model file), if so.
    pub problem: Option<String>,
}

pub struct Runtime {
    pub(crate) providers: BTreeMap<String, Arc<dyn Provider>>,
    pub(crate) provider_settings: Providers,
    /// Providers that cannot be used, with the reason (a missing key, say).
    pub(crate) broken: BTreeMap<String, String>,
    pub(crate) agents: Agents,
    pub(crate) prices: Prices,
    /// The shipped price table (`owl_core::budget::price_table`), under `prices`.
    pub(crate) price_table: Prices,
    pub(crate) defaults: AgentDefaults,
    /// Secret values: redacted from everything the runtime records.
    pub(crate) secrets: Vec<String>,
    /// Variables that hold provider keys: never passed to tools unless granted.
    pub(crate) key_vars: Vec<String>,
    /// How shell calls are sandboxed; `None` where no sandbox can be started.
    pub(crate) sandbox: Option<SandboxBase>,
    /// Each provider's circuit breaker, made at its first use.
    pub(crate) breakers: std::sync::Mutex<BTreeMap<String, Arc<crate::provider::Breaker>>>,
    /// Each agent's `web_search` backend, with its cache and rate limit.
    pub(crate) searchers: BTreeMap<String, Arc<crate::tools::search::Searcher>>,
    /// The MCP servers agents may use (`[mcp.servers]`).
    pub(crate) mcp: Option<Arc<dyn crate::mcp::McpTools>>,
}

pub use crate::tools::SandboxBase;

/// Where the built-in default agent's GGUF model is looked for.
pub fn default_local_model(cache_dir: &std::path::Path) -> std::path::PathBuf {
    cache_dir.join("owl/models/gemma-3-270m-q4_k_m.gguf")
}

impl Runtime {
    /// Builds providers from settings. `env` is the daemon's environment, `secrets` the
    /// entries of the secrets file; `local_model` is a GGUF file for the default agent.
    pub fn new(
        mut providers: Providers,
        mut agents: Agents,
        prices: Prices,
        defaults: AgentDefaults,
        env: &BTreeMap<String, String>,
        secrets: &BTreeMap<String, String>,
        local_model: Option<std::path::PathBuf>,
    ) -> Runtime {
        // A sensible default agent: on the first configured provider, else on a local model.
        if agents.is_empty() {
            if providers.is_empty() {
                // `[agent] default_model` (checked with the config) names a hosted model.
                let hosted =
                    owl_core::agent::default_model_provider(&defaults.default_model, env.get("OPENAI_BASE_URL").map(String::as_str))
                        .ok()
                        .flatten();
                if let Some((name, p)) = hosted {
                    providers.insert(name, p);
                }
            }
            if providers.is_empty() {
                if let Some(path) = local_model.filter(|p| p.is_file()) {
                    providers.insert(
                        "local".into(),
                        ProviderSettings {
                            kind: ProviderKind::Local,
                            base_url: None,
                            api_key_env: None,
                            api_key_secret: None,
                            model: None,
                            timeout: std::time::Duration::from_secs(600),
                            max_retries: 0,
                            model_path: Some(path.display().to_string()),
                            threads: 0,
                            context: 8192,
                            keep_alive: std::time::Duration::from_secs(300),
                        },
                    );
                }
            }
            if let Some(first) = providers.keys().next().cloned() {
                let mut a = AgentSettings::new(first.clone());
                a.description = "The built-in default agent".into();
                // Unattended: the sandbox confines its shell calls, so those run without a
                // person unless they need more than the sandbox gives.
                a.shell_default = owl_core::agent::PolicyDefault::Sandboxed;
                // A task handed to it is work in its workspace: an answer without a tool
                // call did nothing (see run.rs).
                a.must_use_tool = true;
                if providers[&first].kind == ProviderKind::Local {
                    // A tool call or an answer is a line or two; a small model that loops
                    // should not spend minutes before the reply is cut.
                    a.max_output_tokens = 512;
                }
                agents.insert("default".into(), a);
            }
        }
        let mut rt = Runtime {
            providers: BTreeMap::new(),
            provider_settings: providers.clone(),
            broken: BTreeMap::new(),
            agents,
            prices,
            price_table: owl_core::budget::price_table(),
            defaults,
            secrets: secrets.values().filter(|v| v.len() >= 4).cloned().collect(),
            key_vars: vec![],
            sandbox: None,
            breakers: Default::default(),
            searchers: BTreeMap::new(),
            mcp: None,
        };
        for (name, a) in &rt.agents {
            let Some(search) = &a.search else { continue };
            let key = match (&search.api_key_env, &search.api_key_secret) {
                (Some(var), _) => env.get(var).filter(|v| !v.is_empty()).cloned(),
                (None, Some(entry)) => secrets.get(entry).cloned(),
                (None, None) => None,
            };
            if let Some(var) = &search.api_key_env {
                rt.key_vars.push(var.clone());
            }
            if let Some(k) = key.as_ref().filter(|k| k.len() >= 4) {
                rt.secrets.push(k.clone());
            }
            rt.searchers.insert(name.clone(), Arc::new(crate::tools::search::Searcher::new(search.clone(), key)));
        }
        for (name, p) in &providers {
            let key = match (&p.api_key_env, &p.api_key_secret) {
                (Some(var), _) => {
                    rt.key_vars.push(var.clone());
                    match env.get(var).filter(|v| !v.is_empty()) {
                        Some(v) => Some(v.clone()),
                        None => {
                            rt.broken.insert(
                                name.clone(),
                                format!("[providers.{name}] api_key_env: the variable {var} is not set in the daemon's environment"),
                            );
                            None
                        }
                    }
                }
                (None, Some(entry)) => match secrets.get(entry) {
                    Some(v) => Some(v.clone()),
                    None => {
                        rt.broken
                            .insert(name.clone(), format!("[providers.{name}] api_key_secret: the secrets file has no entry `{entry}`"));
                        None
                    }
                },
                (None, None) => None,
            };
            if let Some(k) = &key {
                if k.len() >= 4 && !rt.secrets.contains(k) {
                    rt.secrets.push(k.clone());
                }
            }
            let provider: Arc<dyn Provider> = match p.kind {
                ProviderKind::Openai => Arc::new(crate::openai::OpenAi::new(name, p.base_url.as_deref(), key, p.timeout)),
                ProviderKind::Anthropic => Arc::new(crate::anthropic::Anthropic::new(name, p.base_url.as_deref(), key, p.timeout)),
                ProviderKind::Local => match local_provider(name, p) {
                    Ok(lp) => lp,
                    Err(e) => {
                        rt.broken.insert(name.clone(), e);
                        continue;
                    }
                },
            };
            rt.providers.insert(name.clone(), provider);
        }
        // Longest first, so a secret that contains another is redacted whole.
        rt.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        rt
    }

    /// Each configured provider: (name, ok for readiness, why it is not usable). An open
    /// circuit is not ok; a provider that was never usable (a missing key) is listed with its
    /// reason but does not fail readiness. Reasons are redacted.
    pub fn provider_health(&self) -> Vec<(String, bool, Option<String>)> {
        let breakers = self.breakers.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<(String, bool, Option<String>)> =
            self.broken.iter().map(|(n, why)| (n.clone(), true, Some(why.clone()))).collect();
        for name in self.providers.keys() {
            let open = breakers.get(name).and_then(|b| {
                let st = b.status();
                st.open_for.map(|d| {
                    format!(
                        "skipped for {} more after {} failed calls in a row (last: {})",
                        owl_core::duration::format(std::time::Duration::from_secs(d.as_secs().max(1))),
                        st.failures,
                        self.redact(&st.last_error.unwrap_or_default())
                    )
                })
            });
            out.push((name.clone(), open.is_none(), open));
        }
        out
    }

    /// Replaces a provider (tests and benchmarks use an in-process one).
    pub fn with_provider(mut self, name: &str, p: Arc<dyn Provider>) -> Runtime {
        self.broken.remove(name);
        self.providers.insert(name.into(), p);
        self
    }

    /// Lets shell calls run in the sandbox.
    /// The hub that runs the MCP servers agents list in `mcp`.
    pub fn with_mcp(mut self, hub: Arc<dyn crate::mcp::McpTools>) -> Runtime {
        self.mcp = Some(hub);
        self
    }

    pub fn with_sandbox(mut self, base: SandboxBase) -> Runtime {
        self.sandbox = Some(base);
        self
    }

    pub fn agent(&self, name: &str) -> Option<&AgentSettings> {
        self.agents.get(name)
    }

    /// Every agent's settings, by name.
    pub fn settings(&self) -> &owl_core::agent::Agents {
        &self.agents
    }

    /// What an agent's model costs, USD per million tokens (input plus output): 0 for a local
    /// model, `None` for a coding CLI or a model without a known price.
    pub fn agent_price(&self, name: &str) -> Option<f64> {
        let a = self.agents.get(name)?;
        if a.cli.is_some() {
            return None;
        }
        self.call_price(&a.provider, &self.model_of(a)).0.map(|p| p.input + p.output)
    }

    pub fn defaults(&self) -> &AgentDefaults {
        &self.defaults
    }

    /// Names of the variables that hold provider keys.
    pub fn key_vars(&self) -> &[String] {
        &self.key_vars
    }

    pub fn agents(&self) -> Vec<AgentInfo> {
        self.agents
            .iter()
            .map(|(name, a)| AgentInfo {
                name: name.clone(),
                description: a.description.clone(),
                provider: a.provider.clone(),
                model: self.model_of(a),
                fallback: a.fallback.clone(),
                tools: if a.tools.is_empty() {
                    owl_core::agent::DEFAULT_TOOLS.iter().map(|s| s.to_string()).collect()
                } else {
                    a.tools.clone()
                },
                max_steps: a.max_steps,
                max_cost_usd: a.max_cost_usd,
                problem: self.broken.get(&a.provider).cloned(),
            })
            .collect()
    }

    pub(crate) fn model_of(&self, a: &AgentSettings) -> String {
        a.model.clone().or_else(|| self.provider_settings.get(&a.provider).and_then(|p| p.model.clone())).unwrap_or_else(|| {
            match self.provider_settings.get(&a.provider) {
                Some(p) if p.kind == ProviderKind::Local => p
                    .model_path
                    .as_deref()
                    .and_then(|m| std::path::Path::new(m).file_stem())
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                _ => String::new(),
            }
        })
    }

    /// The agent's provider, then its fallbacks, each with its model and retry policy.
    pub(crate) fn routes(&self, a: &AgentSettings) -> Result<Vec<Route>, String> {
        let mut out = Vec::new();
        let mut names: Vec<(String, Option<String>)> = vec![(a.provider.clone(), Some(self.model_of(a)))];
        for f in &a.fallback {
            match f.split_once(':') {
                Some((p, m)) => names.push((p.into(), Some(m.into()))),
                None => names.push((f.clone(), None)),
            }
        }
        let mut problems = Vec::new();
        for (p, model) in names {
            let Some(provider) = self.providers.get(&p) else {
                problems.push(self.broken.get(&p).cloned().unwrap_or_else(|| format!("provider `{p}` is not configured")));
                continue;
            };
            let settings = self.provider_settings.get(&p);
            let model = model.filter(|m| !m.is_empty()).or_else(|| settings.and_then(|s| s.model.clone())).unwrap_or_default();
            let retry = RetryPolicy { max_retries: settings.map(|s| s.max_retries).unwrap_or(4), ..RetryPolicy::default() };
            let breaker = self.breakers.lock().unwrap_or_else(|e| e.into_inner()).entry(p.clone()).or_default().clone();
            out.push(Route { provider: provider.clone(), model, retry, breaker });
        }
        if out.is_empty() {
            return Err(problems.join("; "));
        }
        Ok(out)
    }

    pub(crate) fn price(&self, model: &str) -> Option<Price> {
        self.price_of(model).map(|(p, _)| p)
    }

    /// The configured prices and the shipped table under them.
    pub fn prices(&self) -> (&Prices, &Prices) {
        (&self.prices, &self.price_table)
    }

    /// The price of `model` and where it came from: `[prices]`, then the shipped table.
    pub fn price_of(&self, model: &str) -> Option<(Price, owl_core::budget::PriceSource)> {
        owl_core::budget::lookup_price(&self.prices, &self.price_table, model)
    }

    /// The price a call on `provider` and `model` is charged at: nothing for a local model.
    pub fn call_price(&self, provider: &str, model: &str) -> (Option<Price>, owl_core::budget::PriceSource) {
        use owl_core::budget::PriceSource;
        if self.provider_settings.get(provider).is_some_and(|p| p.kind == owl_core::agent::ProviderKind::Local) {
            return (Some(Price::default()), PriceSource::Local);
        }
        match self.price_of(model) {
            Some((p, src)) => (Some(p), src),
            None => (None, PriceSource::Unknown),
        }
    }

    /// Replaces every secret value in `s` with `<redacted>`.
    pub fn redact(&self, s: &str) -> String {
        let mut out = s.to_string();
        for sec in &self.secrets {
            if out.contains(sec.as_str()) {
                out = out.replace(sec.as_str(), "<redacted>");
            }
        }
        out
    }

    /// Redacts a transcript entry by walking its typed fields: every string is redacted as
    /// text, and inside tool arguments a number whose digits carry a secret becomes the
    /// string `<redacted>`. Working on the values, never on the serialized text, means a
    /// replacement cannot break the entry, so there is no unredacted fallback to store.
    pub fn redact_entry(&self, mut e: owl_core::transcript::Entry) -> owl_core::transcript::Entry {
        if self.secrets.is_empty() {
            return e;
        }
        e.rewrite_strings(&mut |s| *s = self.redact(s), &mut |v| *v = self.redact_value(std::mem::take(v)));
        e
    }

    /// Redacts a JSON value: every string (keys too) as [`Runtime::redact`] does, and a
    /// number whose digits carry a secret becomes the string `<redacted>`.
    pub fn redact_value(&self, v: Value) -> Value {
        if self.secrets.is_empty() {
            return v;
        }
        match v {
            Value::String(s) => Value::String(self.redact(&s)),
            Value::Number(n) => {
                let text = n.to_string();
                if self.secrets.iter().any(|sec| text.contains(sec.as_str())) {
                    Value::String("<redacted>".into())
                } else {
                    Value::Number(n)
                }
            }
            Value::Array(items) => Value::Array(items.into_iter().map(|i| self.redact_value(i)).collect()),
            Value::Object(map) => Value::Object(map.into_iter().map(|(k, v)| (self.redact(&k), self.redact_value(v))).collect()),
            other => other,
        }
    }
}

#[cfg(feature = "local")]
fn local_provider(name: &str, p: &ProviderSettings) -> Result<Arc<dyn Provider>, String> {
    let path = p.model_path.as_deref().ok_or_else(|| format!("[providers.{name}] model_path is missing"))?;
    Ok(Arc::new(crate::local::Local::new(name, path, p.threads, p.context, p.keep_alive)?))
}

#[cfg(not(feature = "local"))]
fn local_provider(name: &str, _p: &ProviderSettings) -> Result<Arc<dyn Provider>, String> {
    Err(format!("[providers.{name}] is a local model, but this owl was built without the `local` feature (cargo build --features local)"))
}
