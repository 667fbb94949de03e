//! GitHub for repository tasks: `--from-issue` turns an issue into the prompt, `--pr` opens
//! (or updates) the pull request of the task's pushed branch, and a comment on the issue says
//! how the task ended. The calls are `owl_notify::github`; the token comes from `[github]`.

use crate::{Engine, Shared};
use owl_core::coding::GitRecord;
use owl_core::RepoRequest;
use std::time::Duration;

const TIMEOUT: Duration = Duration::from_secs(30);

pub(crate) fn client(s: &Shared) -> Result<owl_notify::github::Client, String> {
    let cfg = s.config();
    let g = &cfg.github;
    let token = cfg
        .notify_secrets
        .lookup(Some(g.token_env.as_str()).filter(|_| g.token_secret.is_empty()), Some(g.token_secret.as_str()))
        .map_err(|e| format!("the GitHub token: {e}"))?;
    owl_notify::github::Client::new(&g.api_url, &token, TIMEOUT)
}

/// The GitHub repository of a task: as given, or from its push remote's URL.
pub(crate) fn slug(s: &Shared, repo: &RepoRequest, rec: &GitRecord) -> Result<String, String> {
    if let Some(s) = &repo.github {
        return Ok(s.clone());
    }
    let remote = repo.push.as_deref().unwrap_or("origin");
    let url = crate::git::remote_url(std::path::Path::new(&rec.repo), remote)?;
    slug_from_remote(&url, &s.config().github.api_url)
}

/// `owner/name` from a remote URL, if the remote is on the GitHub that `api_url` names (a
/// same-named repository elsewhere may belong to someone else).
pub fn slug_from_remote(url: &str, api_url: &str) -> Result<String, String> {
    let want = owl_core::coding::github_host(api_url);
    match owl_core::coding::remote_host(url) {
        Some(h) if Some(&h) == want.as_ref() => {}
        _ => {
            return Err(format!(
                "the remote {url} is not on {} ([github] api_url); pass the repository with --github owner/name",
                want.unwrap_or_else(|| api_url.to_string())
            ))
        }
    }
    owl_core::coding::repo_slug(url)
        .ok_or_else(|| format!("cannot tell the GitHub repository from the remote URL {url}; pass --github owner/name"))
}

fn first_line(s: &str, n: usize) -> String {
    let line = s.lines().map(str::trim).find(|l| !l.is_empty()).unwrap_or("owl task");
    if line.chars().count() > n {
        format!("{}…", line.chars().take(n).collect::<String>())
    } else {
        line.to_string()
    }
}

/// After the push: the pull request, then the issue comment. Each step recorded on `rec` as
/// it succeeds, so a retry does not repeat it.
pub(crate) async fn after_push(
    s: &Shared,
    id: owl_core::TaskId,
    repo: &RepoRequest,
    what: &str,
    rec: &mut GitRecord,
) -> Result<Vec<String>, String> {
    let mut notes = Vec::new();
    let gh = client(s)?;
    let slug = slug(s, repo, rec)?;
    if repo.pr {
        let base = match repo.base.as_deref().filter(|b| !b.is_empty() && !looks_like_commit(b)) {
            Some(b) => b.to_string(),
            None => gh.default_branch(&slug).await?,
        };
        let result = s.store.task_result(id).await.ok().flatten().unwrap_or_default();
        let mut body = String::new();
        if let Some(n) = repo.issue {
            body.push_str(&format!("Closes #{n}\n\n"));
        }
        body.push_str(&format!("Made by owl task {id} (`owl show {id}`).\n\n"));
        if !result.trim().is_empty() {
            body.push_str(&format!("{}\n\n", result.chars().take(4000).collect::<String>()));
        }
        if !rec.files_changed.is_empty() {
            body.push_str("Files changed:\n");
            for f in rec.files_changed.iter().take(100) {
                body.push_str(&format!("- `{f}`\n"));
            }
        }
        let pr = gh.open_or_update_pr(&slug, &rec.branch, &base, &first_line(what, 72), &body).await?;
        notes.push(format!("{} pull request #{} {}", if pr.created { "opened" } else { "updated" }, pr.number, pr.url));
        rec.pr_number = Some(pr.number);
        rec.pr_url = Some(pr.url);
    }
    if let (Some(n), true, None) = (repo.issue, s.config().github.comment_on_issue, &rec.issue_comment) {
        let text = match (&rec.pr_number, &rec.pr_url) {
            (Some(p), Some(u)) => format!("owl task {id} finished: pull request #{p} ({u})."),
            _ => match &rec.commit {
                Some(c) => format!("owl task {id} finished: commit {c} on branch `{}`.", rec.branch),
                None => format!("owl task {id} finished with no changes to commit."),
            },
        };
        let url = gh.comment(&slug, n, &text).await?;
        notes.push(format!("commented on {slug}#{n}"));
        rec.issue_comment = Some(url);
    }
    Ok(notes)
}

fn looks_like_commit(s: &str) -> bool {
    s.len() >= 7 && s.len() <= 40 && s.chars().all(|c| c.is_ascii_hexdigit())
}

impl Engine {
    /// The prompt for `--from-issue`: the issue's title and text, and where it is.
    pub async fn issue_prompt(&self, slug: &str, number: u64, extra: Option<&str>) -> Result<String, String> {
        let issue = client(&self.shared)?.issue(slug, number).await?;
        let mut p = format!("Resolve GitHub issue {slug}#{number}: {}\n\n{}\n\n({})", issue.title, issue.body.trim(), issue.url);
        if let Some(e) = extra.filter(|e| !e.trim().is_empty()) {
            p.push_str(&format!("\n\n{e}"));
        }
        Ok(p)
    }
}
