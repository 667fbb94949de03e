//! `web_search`: one query to the agent's configured backend (SearXNG's JSON API, Brave
//! Search, DuckDuckGo's HTML endpoint or Tavily), with a result cache, a minimum interval
//! between requests, and anti-bot or rate-limit answers reported as such rather than as empty
//! results. The backend's address is the operator's choice (a SearXNG on loopback is common),
//! so it is not held to `http_fetch`'s public-address rule; the result URLs are, when fetched.

use super::{args, ToolCtx};
use owl_core::agent::{SearchKind, SearchSettings};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hit {
    pub title: String,
    pub url: String,
    pub snippet: String,
}

#[derive(Debug, PartialEq, Eq)]
pub enum SearchError {
    /// The engine refused on purpose: an anti-bot check, a rate limit, a quota.
    Blocked(String),
    /// Anything else: unreachable, a bad key, an answer owl cannot read.
    Failed(String),
}

/// Cached results kept at most.
const CACHE_MAX: usize = 256;

/// One agent's search backend, shared by all its tasks.
pub struct Searcher {
    settings: SearchSettings,
    key: Option<String>,
    http: reqwest::Client,
    cache: Mutex<HashMap<String, (Instant, Vec<Hit>)>>,
    last: tokio::sync::Mutex<Option<Instant>>,
}

impl Searcher {
    pub fn new(settings: SearchSettings, key: Option<String>) -> Searcher {
        let http = reqwest::Client::builder()
            .timeout(settings.timeout)
            .user_agent(concat!("owl/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default();
        Searcher { settings, key, http, cache: Mutex::new(HashMap::new()), last: tokio::sync::Mutex::new(None) }
    }

    fn base(&self) -> String {
        let default = match self.settings.kind {
            SearchKind::Searxng => "http://127.0.0.1:8888",
            SearchKind::Brave => "https://api.search.brave.com",
            SearchKind::Duckduckgo => "https://html.duckduckgo.com",
            SearchKind::Tavily => "https://api.tavily.com",
        };
        self.settings.base_url.clone().unwrap_or_else(|| default.into()).trim_end_matches('/').to_string()
    }

    /// Results for `query`, from the cache when a fresh answer is there; the flag says so.
    pub async fn search(&self, query: &str, count: usize) -> Result<(Vec<Hit>, bool), SearchError> {
        let key = format!("{count}\u{1f}{query}");
        if let Some((at, hits)) = self.cache.lock().unwrap_or_else(|p| p.into_inner()).get(&key) {
            if at.elapsed() < self.settings.cache_ttl {
                return Ok((hits.clone(), true));
            }
        }
        {
            // Requests to one backend are at least `min_interval` apart.
            let mut last = self.last.lock().await;
            if let Some(t) = *last {
                let wait = self.settings.min_interval.saturating_sub(t.elapsed());
                tokio::time::sleep(wait).await;
            }
            *last = Some(Instant::now());
        }
        let mut hits = match self.settings.kind {
            SearchKind::Searxng => self.searxng(query).await?,
            SearchKind::Brave => self.brave(query, count).await?,
            SearchKind::Duckduckgo => self.duckduckgo(query).await?,
            SearchKind::Tavily => self.tavily(query, count).await?,
        };
        hits.truncate(count);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= CACHE_MAX {
            if let Some(oldest) = cache.iter().min_by_key(|(_, (t, _))| *t).map(|(k, _)| k.clone()) {
                cache.remove(&oldest);
            }
        }
        cache.insert(key, (Instant::now(), hits.clone()));
        Ok((hits, false))
    }

    fn need_key(&self) -> Result<&str, SearchError> {
        self.key.as_deref().ok_or_else(|| {
            SearchError::Failed(format!(
                "the {} backend needs an API key: set api_key_env or api_key_secret in the agent's search settings",
                self.settings.kind.as_str()
            ))
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<(u16, String), SearchError> {
        let resp = req.send().await.map_err(|e| {
            SearchError::Failed(if e.is_timeout() {
                "the search engine did not answer in time".into()
            } else {
                format!("cannot reach the search engine: {}", e.without_url())
            })
        })?;
        let status = resp.status().as_u16();
        let text = resp.text().await.map_err(|e| SearchError::Failed(format!("the answer broke off: {}", e.without_url())))?;
        match status {
            429 | 432 | 433 => {
                Err(SearchError::Blocked(format!("the search engine answered {status}: rate limit or quota reached; try again later")))
            }
            401 | 403 if self.settings.kind != SearchKind::Searxng => {
                Err(SearchError::Failed(format!("the search engine refused the API key ({status})")))
            }
            200..=299 => Ok((status, text)),
            _ => Err(SearchError::Failed(format!("the search engine answered {status}: {}", text.chars().take(200).collect::<String>()))),
        }
    }

    async fn searxng(&self, query: &str) -> Result<Vec<Hit>, SearchError> {
        let req = self.http.get(format!("{}/search", self.base())).query(&[("q", query), ("format", "json")]);
        let (_, text) = match self.send(req).await {
            Err(SearchError::Failed(m)) if m.contains("answered 403") => {
                return Err(SearchError::Failed(
                    "the SearXNG instance does not serve JSON: add `json` to search.formats in its settings.yml".into(),
                ))
            }
            r => r?,
        };
        let v: Value = serde_json::from_str(&text).map_err(|e| SearchError::Failed(format!("SearXNG's answer is not JSON: {e}")))?;
        Ok(hits(&v["results"], "title", "url", "content"))
    }

    async fn brave(&self, query: &str, count: usize) -> Result<Vec<Hit>, SearchError> {
        let key = self.need_key()?;
        let req = self
            .http
            .get(format!("{}/res/v1/web/search", self.base()))
            .query(&[("q", query), ("count", &count.to_string())])
            .header("accept", "application/json")
            .header("x-subscription-token", key);
        let (_, text) = self.send(req).await?;
        let v: Value = serde_json::from_str(&text).map_err(|e| SearchError::Failed(format!("Brave's answer is not JSON: {e}")))?;
        Ok(hits(&v["web"]["results"], "title", "url", "description"))
    }

    async fn tavily(&self, query: &str, count: usize) -> Result<Vec<Hit>, SearchError> {
        let key = self.need_key()?;
        let req = self.http.post(format!("{}/search", self.base())).bearer_auth(key).json(&json!({"query": query, "max_results": count}));
        let (_, text) = self.send(req).await?;
        let v: Value = serde_json::from_str(&text).map_err(|e| SearchError::Failed(format!("Tavily's answer is not JSON: {e}")))?;
        Ok(hits(&v["results"], "title", "url", "content"))
    }

    async fn duckduckgo(&self, query: &str) -> Result<Vec<Hit>, SearchError> {
        let req = self.http.post(format!("{}/html/", self.base())).form(&[("q", query), ("kl", "wt-wt")]);
        let (status, html) = self.send(req).await?;
        if status == 202 || html.contains("anomaly-modal") || html.contains("bots use DuckDuckGo") {
            return Err(SearchError::Blocked(
                "DuckDuckGo answered with its anti-bot check instead of results; try again later or configure another backend".into(),
            ));
        }
        Ok(parse_duckduckgo(&html))
    }
}

fn hits(list: &Value, title: &str, url: &str, snippet: &str) -> Vec<Hit> {
    list.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|r| {
                    Some(Hit {
                        title: clean(r[title].as_str()?),
                        url: r[url].as_str()?.to_string(),
                        snippet: clean(r[snippet].as_str().unwrap_or_default()),
                    })
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Tags out, whitespace folded (Brave marks matches with `<strong>`).
fn clean(s: &str) -> String {
    let text = scraper::Html::parse_fragment(s).root_element().text().collect::<String>();
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The results of DuckDuckGo's HTML page: each `.result__a` link (its real target is in the
/// redirect's `uddg` parameter) and its `.result__snippet`. Ads are left out.
pub fn parse_duckduckgo(html: &str) -> Vec<Hit> {
    let doc = scraper::Html::parse_document(html);
    let result = scraper::Selector::parse("div.result").expect("a valid selector");
    let link = scraper::Selector::parse("a.result__a").expect("a valid selector");
    let snippet = scraper::Selector::parse(".result__snippet").expect("a valid selector");
    let mut out = Vec::new();
    for r in doc.select(&result) {
        if r.value().classes().any(|c| c == "result--ad") {
            continue;
        }
        let Some(a) = r.select(&link).next() else { continue };
        let href = a.value().attr("href").unwrap_or_default();
        let url = match reqwest::Url::parse(&format!("https:{}", href.trim_start_matches("https:"))) {
            Ok(u) if u.path() == "/l/" => u.query_pairs().find(|(k, _)| k == "uddg").map(|(_, v)| v.into_owned()).unwrap_or_default(),
            _ => href.to_string(),
        };
        if url.is_empty() {
            continue;
        }
        let title = a.text().collect::<String>().split_whitespace().collect::<Vec<_>>().join(" ");
        let snip = r.select(&snippet).next().map(|s| s.text().collect::<String>()).unwrap_or_default();
        out.push(Hit { title, url, snippet: snip.split_whitespace().collect::<Vec<_>>().join(" ") });
    }
    out
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Args {
    query: String,
    #[serde(default)]
    count: Option<usize>,
}

pub(super) async fn call(ctx: &ToolCtx, arguments: &Value) -> Result<String, String> {
    let a: Args = args("web_search", arguments)?;
    let Some(s) = &ctx.search else {
        return Err(format!(
            "this agent has no search backend; set [agents.{}] search = {{ kind = \"searxng\", base_url = \"...\" }}",
            ctx.agent_name
        ));
    };
    let q = a.query.trim();
    if q.is_empty() || q.len() > 500 {
        return Err("the query must be 1 to 500 characters".into());
    }
    let count = a.count.unwrap_or(s.settings.max_results as usize).clamp(1, 20);
    match s.search(q, count).await {
        Ok((hits, cached)) if hits.is_empty() => Ok(format!("no results for \"{q}\"{}", if cached { " (cached)" } else { "" })),
        Ok((hits, cached)) => {
            let mut out = format!("results for \"{q}\" from {}{}:\n", s.settings.kind.as_str(), if cached { " (cached)" } else { "" });
            for (i, h) in hits.iter().enumerate() {
                out.push_str(&format!("{}. {}\n   {}\n", i + 1, h.title, h.url));
                if !h.snippet.is_empty() {
                    out.push_str(&format!("   {}\n", h.snippet.chars().take(300).collect::<String>()));
                }
            }
            out.push_str("Read a page with http_fetch.");
            Ok(out)
        }
        Err(SearchError::Blocked(m)) => Err(format!("search blocked: {m}")),
        Err(SearchError::Failed(m)) => Err(format!("search failed: {m}")),
    }
}

/// The readable text of an HTML page: its title, headings marked with `#`, paragraphs and
/// list items on their own lines; scripts, styles, navigation, headers, footers, forms and
/// hidden parts left out.
pub fn readable_text(html: &str) -> String {
    use scraper::node::Node;
    let doc = scraper::Html::parse_document(html);
    const SKIP: &[&str] =
        &["script", "style", "noscript", "nav", "header", "footer", "aside", "form", "svg", "iframe", "template", "head", "button"];
    const BLOCK: &[&str] =
        &["p", "div", "section", "article", "main", "li", "tr", "br", "pre", "blockquote", "table", "ul", "ol", "dd", "dt", "figcaption"];
    fn walk(node: ego_tree::NodeRef<'_, Node>, out: &mut String, depth: usize) {
        // Deeper than any real page: the rest is left out rather than overflow the stack.
        if depth > 256 {
            return;
        }
        match node.value() {
            Node::Text(t) => {
                let s = t.split_whitespace().collect::<Vec<_>>().join(" ");
                if !s.is_empty() {
                    if !out.ends_with(['\n', ' ']) && !out.is_empty() {
                        out.push(' ');
                    }
                    out.push_str(&s);
                }
            }
            Node::Element(e) => {
                let name = e.name();
                if SKIP.contains(&name) || e.attr("hidden").is_some() || e.attr("aria-hidden") == Some("true") {
                    return;
                }
                let heading = matches!(name, "h1" | "h2" | "h3" | "h4" | "h5" | "h6");
                let block = heading || BLOCK.contains(&name);
                if block && !out.is_empty() && !out.ends_with('\n') {
                    out.push('\n');
                }
                if heading {
                    out.push_str(&"#".repeat(name[1..].parse().unwrap_or(1)));
                    out.push(' ');
                }
                if name == "li" {
                    out.push_str("- ");
                }
                for c in node.children() {
                    walk(c, out, depth + 1);
                }
                if block && !out.ends_with('\n') {
                    out.push('\n');
                }
            }
            _ => {
                for c in node.children() {
                    walk(c, out, depth + 1);
                }
            }
        }
    }
    let title = scraper::Selector::parse("title").expect("a valid selector");
    let mut out = String::new();
    if let Some(t) = doc.select(&title).next() {
        let t = t.text().collect::<String>().split_whitespace().collect::<Vec<_>>().join(" ");
        if !t.is_empty() {
            out.push_str(&format!("Title: {t}\n\n"));
        }
    }
    let body = scraper::Selector::parse("body").expect("a valid selector");
    let root = doc.select(&body).next().map(|b| *b).unwrap_or_else(|| doc.tree.root());
    walk(root, &mut out, 0);
    let mut lines: Vec<&str> = out.lines().map(str::trim_end).collect();
    lines.dedup_by(|a, b| a.is_empty() && b.is_empty());
    lines.join("\n").trim().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, StatusCode};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    const SEARXNG: &str = include_str!("fixtures/searxng.json");
    const BRAVE: &str = include_str!("fixtures/brave.json");
    const TAVILY: &str = include_str!("fixtures/tavily.json");
    const DDG: &str = include_str!("fixtures/duckduckgo.html");
    const DDG_BLOCKED: &str = include_str!("fixtures/duckduckgo-blocked.html");
    const ARTICLE: &str = include_str!("fixtures/article.html");

    /// Serves each backend's recorded answer at its real path, checking what the real service
    /// checks (the query, the key header), and counts requests. `/blocked` answers as the
    /// engines do when they refuse.
    async fn engines(hits: Arc<AtomicUsize>, blocked: bool) -> String {
        use axum::routing::{get, post};
        let h = hits.clone();
        let h2 = hits.clone();
        let h3 = hits.clone();
        let h4 = hits.clone();
        let app = axum::Router::new()
            .route(
                "/search",
                get(move |q: axum::extract::Query<HashMap<String, String>>| {
                    h.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if blocked {
                            return (StatusCode::TOO_MANY_REQUESTS, "Too Many Requests".to_string());
                        }
                        assert_eq!(q.get("format").map(String::as_str), Some("json"));
                        assert!(!q.get("q").cloned().unwrap_or_default().is_empty());
                        (StatusCode::OK, SEARXNG.to_string())
                    }
                })
                .post(move |headers: HeaderMap, body: String| {
                    h2.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer tvly-test") {
                            return (StatusCode::UNAUTHORIZED, "{\"detail\": {\"error\": \"Unauthorized\"}}".to_string());
                        }
                        let v: Value = serde_json::from_str(&body).unwrap();
                        assert_eq!(v["max_results"], 3);
                        (StatusCode::OK, TAVILY.to_string())
                    }
                }),
            )
            .route(
                "/res/v1/web/search",
                get(move |headers: HeaderMap| {
                    h3.fetch_add(1, Ordering::SeqCst);
                    async move {
                        if headers.get("x-subscription-token").and_then(|v| v.to_str().ok()) != Some("brave-test") {
                            return (StatusCode::UNPROCESSABLE_ENTITY, "{\"type\": \"ErrorResponse\"}".to_string());
                        }
                        (StatusCode::OK, BRAVE.to_string())
                    }
                }),
            )
            .route(
                "/html/",
                post(move |body: String| {
                    h4.fetch_add(1, Ordering::SeqCst);
                    async move {
                        assert!(body.contains("q="), "{body}");
                        if blocked {
                            (StatusCode::ACCEPTED, DDG_BLOCKED.to_string())
                        } else {
                            (StatusCode::OK, DDG.to_string())
                        }
                    }
                }),
            );
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
        format!("http://127.0.0.1:{port}")
    }

    fn settings(kind: SearchKind, base: &str) -> SearchSettings {
        SearchSettings {
            kind,
            base_url: Some(base.into()),
            api_key_env: None,
            api_key_secret: None,
            max_results: 5,
            cache_ttl: Duration::from_secs(60),
            min_interval: Duration::from_millis(0),
            timeout: Duration::from_secs(5),
        }
    }

    #[tokio::test]
    async fn every_backend_reads_its_answer_and_repeats_come_from_the_cache() {
        let hits = Arc::new(AtomicUsize::new(0));
        let base = engines(hits.clone(), false).await;

        let s = Searcher::new(settings(SearchKind::Searxng, &base), None);
        let (r, cached) = s.search("rust sqlite group commit", 5).await.unwrap();
        assert!(!cached);
        assert_eq!(
            r[0],
            Hit {
                title: "Write-Ahead Logging".into(),
                url: "https://www.sqlite.org/wal.html".into(),
                snippet: "The default method by which SQLite implements atomic commit and rollback is a rollback journal.".into()
            }
        );
        assert_eq!(r.len(), 2);
        let (again, cached) = s.search("rust sqlite group commit", 5).await.unwrap();
        assert!(cached && again == r);
        assert_eq!(hits.load(Ordering::SeqCst), 1, "the repeat did not reach the engine");

        let b = Searcher::new(settings(SearchKind::Brave, &base), Some("brave-test".into()));
        let (r, _) = b.search("owl agent runtime", 5).await.unwrap();
        assert_eq!(r[0].title, "An agent runtime that works while you sleep", "markup is taken out");
        assert_eq!(r[0].snippet, "Queue, schedules and agents in one binary.");
        let wrong = Searcher::new(settings(SearchKind::Brave, &base), Some("nope".into()));
        assert!(matches!(wrong.search("x", 5).await, Err(SearchError::Failed(m)) if m.contains("422")));
        let keyless = Searcher::new(settings(SearchKind::Brave, &base), None);
        assert!(matches!(keyless.search("x", 5).await, Err(SearchError::Failed(m)) if m.contains("api_key_env")));

        let t = Searcher::new(settings(SearchKind::Tavily, &base), Some("tvly-test".into()));
        let (r, _) = t.search("standard webhooks spec", 3).await.unwrap();
        assert_eq!((r[0].title.as_str(), r[0].url.as_str()), ("Standard Webhooks", "https://www.standardwebhooks.com/"));

        let d = Searcher::new(settings(SearchKind::Duckduckgo, &base), None);
        let (r, _) = d.search("owl cron", 5).await.unwrap();
        assert_eq!(r.len(), 2, "the ad is left out: {r:?}");
        assert_eq!(r[0].url, "https://crontab.guru/", "the real target, not DuckDuckGo's redirect");
        assert_eq!(r[0].title, "Crontab.guru - The cron schedule expression editor");
        assert_eq!(r[1].snippet, "The cron command-line utility is a job scheduler on Unix-like operating systems.");
    }

    #[tokio::test]
    async fn refusals_are_reported_as_blocked_and_requests_keep_their_interval() {
        let hits = Arc::new(AtomicUsize::new(0));
        let base = engines(hits.clone(), true).await;
        let d = Searcher::new(settings(SearchKind::Duckduckgo, &base), None);
        assert!(matches!(d.search("owl", 5).await, Err(SearchError::Blocked(m)) if m.contains("anti-bot")));
        let s = Searcher::new(settings(SearchKind::Searxng, &base), None);
        assert!(matches!(s.search("owl", 5).await, Err(SearchError::Blocked(m)) if m.contains("429")));
        // A refusal is not cached: the next call asks again.
        let before = hits.load(Ordering::SeqCst);
        let _ = s.search("owl", 5).await;
        assert_eq!(hits.load(Ordering::SeqCst), before + 1);

        let ok = engines(Arc::new(AtomicUsize::new(0)), false).await;
        let mut slow = settings(SearchKind::Searxng, &ok);
        slow.min_interval = Duration::from_millis(300);
        let s = Searcher::new(slow, None);
        let t = Instant::now();
        for q in ["a", "b", "c"] {
            s.search(q, 5).await.unwrap();
        }
        assert!(t.elapsed() >= Duration::from_millis(600), "three requests, two intervals: {:?}", t.elapsed());
    }

    #[test]
    fn a_page_nested_without_end_reads_without_overflowing_the_stack() {
        let deep = format!("<html><body>{}deep{}</body></html>", "<div>".repeat(100_000), "</div>".repeat(100_000));
        let t = std::thread::Builder::new().stack_size(256 * 1024).spawn(move || readable_text(&deep)).unwrap().join().unwrap();
        assert!(!t.contains("deep"), "what is past the depth cap is left out");
    }

    #[test]
    fn a_page_reads_as_its_text_without_scripts_menus_or_hidden_parts() {
        let t = readable_text(ARTICLE);
        assert!(t.starts_with("Title: Group commit in SQLite\n\n# Group commit\n"), "{t}");
        assert!(t.contains("One writer thread applies every write that queued up during the previous commit in one transaction."), "{t}");
        assert!(t.contains("## Why it is fast\n") && t.contains("- fewer fsyncs\n- no lock contention"), "{t}");
        for gone in ["tracking", "color:red", "Menu one", "Home", "Related posts", "Copyright", "secret hidden text", "decorative", "ads"] {
            assert!(!t.contains(gone), "`{gone}` is left out: {t}");
        }
    }
}
