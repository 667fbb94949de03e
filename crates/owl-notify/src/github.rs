//! The few GitHub REST calls owl makes: read an issue, open or update the pull request of a
//! branch (never two for one branch), comment on an issue. The API root is configurable, so
//! GitHub Enterprise (`https://HOST/api/v3`) works the same.

use serde_json::{json, Value};
use std::time::Duration;

pub struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Issue {
    pub number: u64,
    pub title: String,
    pub body: String,
    pub url: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PullRequest {
    pub number: u64,
    pub url: String,
    /// Whether this call opened it (false: an open one was updated).
    pub created: bool,
}

impl Client {
    pub fn new(api_url: &str, token: &str, timeout: Duration) -> Result<Client, String> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(concat!("owl/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("cannot build the HTTP client: {e}"))?;
        Ok(Client { http, base: api_url.trim_end_matches('/').to_string(), token: token.to_string() })
    }

    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let mut req = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .header("accept", "application/vnd.github+json")
            .header("x-github-api-version", "2022-11-28");
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| format!("GitHub ({}) cannot be reached: {e}", self.base))?;
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let msg = serde_json::from_str::<Value>(&text).ok().and_then(|v| v["message"].as_str().map(String::from)).unwrap_or(text);
            let hint = match status.as_u16() {
                401 => " (the token is missing, wrong or expired: [github] token_env)",
                403 | 404 => " (does the token have access to the repository, with pull requests and issues: read and write?)",
                422 => " (GitHub refused the request as it was)",
                _ => "",
            };
            return Err(format!("GitHub answered {} to {method} {path}: {msg}{hint}", status.as_u16()));
        }
        if text.trim().is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| format!("GitHub's answer to {method} {path} is not JSON: {e}"))
    }

    pub async fn issue(&self, slug: &str, number: u64) -> Result<Issue, String> {
        let v = self.call(reqwest::Method::GET, &format!("/repos/{slug}/issues/{number}"), None).await?;
        if v.get("pull_request").is_some() {
            return Err(format!("{slug}#{number} is a pull request, not an issue"));
        }
        Ok(Issue {
            number,
            title: v["title"].as_str().unwrap_or_default().to_string(),
            body: v["body"].as_str().unwrap_or_default().to_string(),
            url: v["html_url"].as_str().unwrap_or_default().to_string(),
        })
    }

    pub async fn default_branch(&self, slug: &str) -> Result<String, String> {
        let v = self.call(reqwest::Method::GET, &format!("/repos/{slug}"), None).await?;
        v["default_branch"].as_str().map(String::from).ok_or_else(|| format!("GitHub did not say {slug}'s default branch"))
    }

    /// Opens a pull request from `branch` into `base`, or, when one is open for the branch
    /// already, updates its title and body.
    pub async fn open_or_update_pr(&self, slug: &str, branch: &str, base: &str, title: &str, body: &str) -> Result<PullRequest, String> {
        let owner = slug.split('/').next().unwrap_or_default();
        let open = self.call(reqwest::Method::GET, &format!("/repos/{slug}/pulls?state=open&head={owner}:{branch}"), None).await?;
        if let Some(pr) = open.as_array().and_then(|a| a.first()) {
            let number = pr["number"].as_u64().ok_or("GitHub listed a pull request without a number")?;
            let v = self
                .call(reqwest::Method::PATCH, &format!("/repos/{slug}/pulls/{number}"), Some(json!({"title": title, "body": body})))
                .await?;
            return Ok(PullRequest { number, url: v["html_url"].as_str().unwrap_or_default().to_string(), created: false });
        }
        let v = self
            .call(
                reqwest::Method::POST,
                &format!("/repos/{slug}/pulls"),
                Some(json!({"title": title, "head": branch, "base": base, "body": body, "maintainer_can_modify": true})),
            )
            .await?;
        Ok(PullRequest {
            number: v["number"].as_u64().ok_or("GitHub answered a new pull request without a number")?,
            url: v["html_url"].as_str().unwrap_or_default().to_string(),
            created: true,
        })
    }

    /// Opens an issue.
    pub async fn create_issue(&self, slug: &str, title: &str, body: &str) -> Result<Issue, String> {
        let v = self.call(reqwest::Method::POST, &format!("/repos/{slug}/issues"), Some(json!({"title": title, "body": body}))).await?;
        Ok(Issue {
            number: v["number"].as_u64().ok_or("GitHub answered a new issue without a number")?,
            title: title.to_string(),
            body: body.to_string(),
            url: v["html_url"].as_str().unwrap_or_default().to_string(),
        })
    }

    /// Comments on an issue (or pull request); returns the comment's URL.
    pub async fn comment(&self, slug: &str, number: u64, body: &str) -> Result<String, String> {
        let v = self.call(reqwest::Method::POST, &format!("/repos/{slug}/issues/{number}/comments"), Some(json!({"body": body}))).await?;
        Ok(v["html_url"].as_str().unwrap_or_default().to_string())
    }
}
