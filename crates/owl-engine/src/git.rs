//! Git worktrees for repository tasks: one worktree per task on branch `owl/task-<id>`, a
//! commit when the task succeeds, an optional push, and cleanup.
//!
//! Everything here runs the `git` program (outside any sandbox: it is owl's own work) with
//! hooks switched off, so nothing a task wrote can run through owl's git calls. Crash safety
//! comes from making every step repeatable: a run first repairs what an interrupted one left
//! (a half-made worktree, a stale `index.lock` or branch ref lock owl owns), then goes on.

use owl_core::coding::GitRecord;
use owl_core::TaskId;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Variables that would point git somewhere else than the directory it is given.
const GIT_ENV: [&str; 6] = ["GIT_DIR", "GIT_WORK_TREE", "GIT_INDEX_FILE", "GIT_OBJECT_DIRECTORY", "GIT_COMMON_DIR", "GIT_NAMESPACE"];

fn git_cmd(dir: &Path) -> Command {
    let mut c = Command::new("git");
    for k in GIT_ENV {
        c.env_remove(k);
    }
    c.arg("-C").arg(dir).args(["-c", "core.hooksPath=/dev/null", "-c", "core.fsmonitor=false"]);
    c.env("GIT_TERMINAL_PROMPT", "0").env("LC_ALL", "C").stdin(Stdio::null());
    c
}

/// Runs git in `dir`; its trimmed stdout, or an error with its stderr.
fn git(dir: &Path, args: &[&str]) -> Result<String, String> {
    let out = git_cmd(dir).args(args).output().map_err(|e| format!("cannot run git: {e}"))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    } else {
        Err(format!("git {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim()))
    }
}

/// The URL of `remote` in the repository at `repo`.
pub fn remote_url(repo: &Path, remote: &str) -> Result<String, String> {
    git(repo, &["remote", "get-url", remote])
}

pub fn branch_name(id: TaskId) -> String {
    format!("owl/task-{id}")
}

/// The repository's top level and common git directory, or why `path` is not a repository.
fn locate(path: &Path) -> Result<(PathBuf, PathBuf), String> {
    let top = git(path, &["rev-parse", "--show-toplevel"])
        .map_err(|_| format!("{} is not inside a git repository; --repo needs one (git init, or point at a clone)", path.display()))?;
    let common = git(path, &["rev-parse", "--path-format=absolute", "--git-common-dir"])?;
    Ok((PathBuf::from(top), PathBuf::from(common)))
}

/// Makes (or, after an interruption, repairs and reuses) the task's worktree. `previous` is
/// what an earlier attempt recorded.
pub fn prepare(repo: &Path, base: Option<&str>, id: TaskId, worktree: &Path, previous: Option<&GitRecord>) -> Result<GitRecord, String> {
    let (top, common) = locate(repo)?;
    let branch = branch_name(id);
    repair(&top, &common, &branch, worktree);
    let branch_exists = git(&top, &["rev-parse", "--verify", "--quiet", &format!("refs/heads/{branch}")]).is_ok();
    if is_our_worktree(worktree, &branch) {
        let base = previous.map(|p| p.base.clone()).filter(|b| !b.is_empty()).unwrap_or_default();
        let mut rec = record(&top, worktree, &branch, base);
        // The pull request and the issue comment an earlier attempt made are not made again.
        if let Some(p) = previous {
            rec.pr_number = p.pr_number;
            rec.pr_url = p.pr_url.clone();
            rec.issue_comment = p.issue_comment.clone();
        }
        return Ok(rec);
    }
    let want = base.unwrap_or("HEAD");
    let base_commit = git(&top, &["rev-parse", "--verify", "--quiet", "--end-of-options", &format!("{want}^{{commit}}")])
        .map_err(|_| format!("the base `{want}` is not a branch or commit of {}", top.display()))?;
    if let Some(parent) = worktree.parent() {
        std::fs::create_dir_all(parent).map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
    }
    let wt = worktree.to_string_lossy().to_string();
    if branch_exists {
        // An earlier attempt made the branch (and maybe commits on it): keep them.
        git(&top, &["worktree", "add", "--quiet", &wt, &branch])?;
    } else {
        git(&top, &["worktree", "add", "--quiet", "-b", &branch, &wt, &base_commit])?;
    }
    let base = previous.map(|p| p.base.clone()).filter(|b| !b.is_empty()).unwrap_or(base_commit);
    let mut rec = record(&top, worktree, &branch, base);
    if let Some(p) = previous {
        rec.pr_number = p.pr_number;
        rec.pr_url = p.pr_url.clone();
        rec.issue_comment = p.issue_comment.clone();
    }
    Ok(rec)
}

fn record(top: &Path, worktree: &Path, branch: &str, base: String) -> GitRecord {
    GitRecord {
        repo: top.display().to_string(),
        worktree: worktree.display().to_string(),
        branch: branch.to_string(),
        base,
        ..Default::default()
    }
}

/// A complete worktree of this repository, checked out on `branch`.
fn is_our_worktree(worktree: &Path, branch: &str) -> bool {
    worktree.join(".git").is_file()
        && git(worktree, &["symbolic-ref", "--quiet", "HEAD"]).is_ok_and(|h| h == format!("refs/heads/{branch}"))
        && git(worktree, &["status", "--porcelain", "--untracked-files=no"]).is_ok()
}

/// The worktree's own git directory (`<common>/worktrees/<name>`), read from its `.git` file.
fn admin_dir(worktree: &Path) -> Option<PathBuf> {
    let text = std::fs::read_to_string(worktree.join(".git")).ok()?;
    text.trim().strip_prefix("gitdir:").map(|p| PathBuf::from(p.trim()))
}

/// Clears what an interrupted owl left in the repository: locks it owns (the worktree's
/// index lock, the task branch's ref lock) and a worktree that was never finished.
fn repair(top: &Path, common: &Path, branch: &str, worktree: &Path) {
    let _ = git(top, &["worktree", "prune"]);
    let _ = std::fs::remove_file(common.join("refs/heads").join(format!("{branch}.lock")));
    if let Some(admin) = admin_dir(worktree) {
        let _ = std::fs::remove_file(admin.join("index.lock"));
        // `git worktree add` locks a worktree with "initializing" until it is complete.
        let initializing = std::fs::read_to_string(admin.join("locked")).is_ok_and(|r| r.contains("initializing"));
        if initializing || !is_our_worktree(worktree, branch) {
            discard(top, worktree);
        }
    } else if worktree.exists() {
        // A directory that never became a worktree.
        discard(top, worktree);
    }
}

fn discard(top: &Path, worktree: &Path) {
    let wt = worktree.to_string_lossy().to_string();
    let _ = git(top, &["worktree", "unlock", &wt]);
    let _ = git(top, &["worktree", "remove", "--force", "--force", &wt]);
    let _ = std::fs::remove_dir_all(worktree);
    let _ = git(top, &["worktree", "prune"]);
}

/// Commits everything the task changed (its `.tmp` aside). Returns the commit and the
/// files it changed, or `None` when nothing changed.
pub fn commit(rec: &GitRecord, message: &str) -> Result<Option<(String, Vec<String>)>, String> {
    let wt = Path::new(&rec.worktree);
    // The task's processes are gone: any index lock is a leftover.
    if let Some(admin) = admin_dir(wt) {
        let _ = std::fs::remove_file(admin.join("index.lock"));
    }
    git(wt, &["add", "--all", "--", ".", ":(exclude).tmp"])?;
    let staged = git(wt, &["diff", "--cached", "--name-only", "-z"])?;
    let files: Vec<String> = staged.split('\0').filter(|f| !f.is_empty()).map(String::from).collect();
    if files.is_empty() {
        return Ok(None);
    }
    let mut cmd = git_cmd(wt);
    if git(wt, &["config", "user.email"]).unwrap_or_default().is_empty() {
        cmd.args(["-c", "user.name=owl", "-c", "user.email=owl@localhost"]);
    }
    let out = cmd
        .args(["commit", "--quiet", "--no-verify", "--no-gpg-sign", "-F", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child.stdin.take().expect("piped").write_all(message.as_bytes())?;
            child.wait_with_output()
        })
        .map_err(|e| format!("cannot run git commit: {e}"))?;
    if !out.status.success() {
        return Err(format!("git commit failed: {}", String::from_utf8_lossy(&out.stderr).trim()));
    }
    let sha = git(wt, &["rev-parse", "HEAD"])?;
    Ok(Some((sha, files)))
}

/// Pushes the task's branch to `remote`, within `timeout`.
pub fn push(rec: &GitRecord, remote: &str, timeout: Duration) -> Result<(), String> {
    let refspec = format!("refs/heads/{0}:refs/heads/{0}", rec.branch);
    let mut child = git_cmd(Path::new(&rec.worktree))
        .args(["push", "--quiet", "--no-verify", remote, &refspec])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run git push: {e}"))?;
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => {
                if status.success() {
                    return Ok(());
                }
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                return Err(format!("git push {remote} {} failed: {}", rec.branch, err.trim()));
            }
            Ok(None) if Instant::now() >= deadline => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("git push {remote} {} took longer than {}s ([git] push_timeout)", rec.branch, timeout.as_secs()));
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(50)),
            Err(e) => return Err(format!("git push: {e}")),
        }
    }
}

/// Removes the worktree (the branch and its commits stay).
pub fn remove(rec: &GitRecord) {
    let top = Path::new(&rec.repo);
    discard(top, Path::new(&rec.worktree));
}

/// Clears locks owl owns in a finished task's worktree (after a crash during its commit).
pub fn clear_stale_locks(rec: &GitRecord) {
    if let Some(admin) = admin_dir(Path::new(&rec.worktree)) {
        let _ = std::fs::remove_file(admin.join("index.lock"));
    }
    if let Ok((_, common)) = locate(Path::new(&rec.repo)) {
        let _ = std::fs::remove_file(common.join("refs/heads").join(format!("{}.lock", rec.branch)));
    }
}

/// The commit message for a task: its first line names the task.
pub fn message(id: TaskId, what: &str) -> String {
    format!("owl: task {id}: {}\n\nMade by owl task {id}.\n\n{what}\n", owl_core::task::first_line(what))
}

/// Keeps repositories clean: at start, clears locks left in finished tasks' worktrees by a
/// crash; then removes worktrees of tasks finished longer ago than `[git] worktree_retention`.
pub(crate) async fn worktree_loop(s: std::sync::Arc<crate::Shared>, mut stop: tokio::sync::watch::Receiver<bool>) {
    let far = owl_core::Timestamp::from_millis(i64::MAX / 2);
    if let Ok(list) = s.store.worktrees_to_remove(far).await {
        let _ = tokio::task::spawn_blocking(move || list.iter().for_each(|(_, rec)| clear_stale_locks(rec))).await;
    }
    loop {
        let retention = s.config().git.worktree_retention;
        let before = s.clock.now().minus(retention);
        match s.store.worktrees_to_remove(before).await {
            Ok(list) => {
                for (id, mut rec) in list {
                    let r = rec.clone();
                    let _ = tokio::task::spawn_blocking(move || remove(&r)).await;
                    rec.removed = true;
                    match s.store.set_task_git(id, rec).await {
                        Ok(()) => tracing::info!(task = %id, "removed a finished task's worktree (retention)"),
                        Err(e) => tracing::warn!(task = %id, error = %e, "cannot record a removed worktree"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot list worktrees to remove"),
        }
        let every = (retention / 2).clamp(Duration::from_secs(1), Duration::from_secs(3600));
        if !crate::sleep_unless_stopped(every, &mut stop).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git").arg("-C").arg(dir).args(args).output().unwrap();
        assert!(out.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// A repository with one commit, and a bare remote it knows as origin.
    fn repo() -> (tempfile::TempDir, PathBuf, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let remote = t.path().join("remote.git");
        let repo = t.path().join("app");
        std::fs::create_dir_all(&repo).unwrap();
        sh(t.path(), &["init", "--quiet", "--bare", remote.to_str().unwrap()]);
        sh(&repo, &["init", "--quiet", "-b", "main"]);
        sh(&repo, &["config", "user.email", "dev@example.com"]);
        sh(&repo, &["config", "user.name", "Dev"]);
        std::fs::write(repo.join("README"), "hello\n").unwrap();
        sh(&repo, &["add", "README"]);
        sh(&repo, &["commit", "--quiet", "-m", "first"]);
        sh(&repo, &["remote", "add", "origin", remote.to_str().unwrap()]);
        (t, repo, remote)
    }

    #[test]
    fn a_task_gets_a_branch_a_commit_and_a_pushed_branch() {
        let (t, repo, remote) = repo();
        let wt = t.path().join("data/worktrees/7");
        let rec = prepare(&repo, None, TaskId(7), &wt, None).unwrap();
        assert_eq!(rec.branch, "owl/task-7");
        assert_eq!(rec.base, sh(&repo, &["rev-parse", "HEAD"]));
        assert_eq!(sh(&wt, &["symbolic-ref", "HEAD"]), "refs/heads/owl/task-7");
        std::fs::write(wt.join("README"), "hello, world\n").unwrap();
        std::fs::write(wt.join("new.txt"), "n\n").unwrap();
        std::fs::create_dir_all(wt.join(".tmp")).unwrap();
        std::fs::write(wt.join(".tmp/scratch"), "x").unwrap();
        let (sha, files) = commit(&rec, &message(TaskId(7), "Say hello to the world")).unwrap().unwrap();
        assert_eq!(files, vec!["README", "new.txt"]);
        assert_eq!(sh(&repo, &["rev-parse", "owl/task-7"]), sha);
        let subject = sh(&repo, &["log", "-1", "--format=%s", "owl/task-7"]);
        assert_eq!(subject, "owl: task 7: Say hello to the world");
        // The main checkout did not move.
        assert_eq!(sh(&repo, &["symbolic-ref", "HEAD"]), "refs/heads/main");
        assert_eq!(std::fs::read_to_string(repo.join("README")).unwrap(), "hello\n");
        push(&rec, "origin", Duration::from_secs(30)).unwrap();
        assert_eq!(sh(&remote, &["rev-parse", "owl/task-7"]), sha);
        // Nothing new: no commit.
        assert_eq!(commit(&rec, "again").unwrap(), None);
        remove(&rec);
        assert!(!wt.exists());
        assert_eq!(sh(&repo, &["worktree", "list", "--porcelain"]).matches("worktree ").count(), 1);
        assert_eq!(sh(&repo, &["rev-parse", "owl/task-7"]), sha, "the branch outlives the worktree");
    }

    #[test]
    fn a_base_branch_is_honoured_and_a_bad_one_named() {
        let (t, repo, _) = repo();
        sh(&repo, &["checkout", "--quiet", "-b", "feature"]);
        std::fs::write(repo.join("f"), "f\n").unwrap();
        sh(&repo, &["add", "f"]);
        sh(&repo, &["commit", "--quiet", "-m", "feature"]);
        let feature = sh(&repo, &["rev-parse", "HEAD"]);
        sh(&repo, &["checkout", "--quiet", "main"]);
        let rec = prepare(&repo, Some("feature"), TaskId(3), &t.path().join("w3"), None).unwrap();
        assert_eq!(rec.base, feature);
        assert!(t.path().join("w3/f").exists());
        let e = prepare(&repo, Some("nope"), TaskId(4), &t.path().join("w4"), None).unwrap_err();
        assert!(e.contains("`nope` is not a branch or commit"), "{e}");
        let e = prepare(t.path(), None, TaskId(5), &t.path().join("w5"), None).unwrap_err();
        assert!(e.contains("not inside a git repository"), "{e}");
    }

    #[test]
    fn a_half_made_worktree_and_stale_locks_are_repaired() {
        let (t, repo, _) = repo();
        let wt = t.path().join("w9");
        // What a crash in the middle of `git worktree add` leaves: a worktree locked as
        // initializing, half its files, plus the index and branch ref locks.
        sh(&repo, &["worktree", "add", "--quiet", "--lock", "--reason", "initializing", "-b", "owl/task-9", wt.to_str().unwrap()]);
        std::fs::remove_file(wt.join("README")).unwrap();
        let admin = admin_dir(&wt).unwrap();
        std::fs::write(admin.join("index.lock"), "").unwrap();
        let common = repo.join(".git");
        std::fs::write(common.join("refs/heads/owl/task-9.lock"), "").unwrap();
        let rec = prepare(&repo, None, TaskId(9), &wt, None).unwrap();
        assert!(wt.join("README").exists(), "the worktree was made again, complete");
        assert!(!common.join("refs/heads/owl/task-9.lock").exists());
        assert!(std::fs::read_dir(common.join("worktrees")).unwrap().all(|e| !e.unwrap().path().join("locked").exists()));
        // A stale index lock from a crash during the commit does not block the next commit.
        std::fs::write(wt.join("x"), "x").unwrap();
        std::fs::write(admin_dir(&wt).unwrap().join("index.lock"), "").unwrap();
        assert!(commit(&rec, "m").unwrap().is_some());
        // A worktree directory deleted by hand is noticed and made again.
        std::fs::remove_dir_all(&wt).unwrap();
        let again = prepare(&repo, None, TaskId(9), &wt, Some(&rec)).unwrap();
        assert_eq!(again.base, rec.base);
        assert!(wt.join("x").exists(), "the branch and its commit were kept");
    }

    #[test]
    fn an_interrupted_task_reuses_its_worktree_and_work() {
        let (t, repo, _) = repo();
        let wt = t.path().join("w2");
        let rec = prepare(&repo, None, TaskId(2), &wt, None).unwrap();
        std::fs::write(wt.join("partial"), "p").unwrap();
        let again = prepare(&repo, None, TaskId(2), &wt, Some(&rec)).unwrap();
        assert_eq!(again, rec);
        assert!(wt.join("partial").exists());
    }

    #[test]
    fn a_failed_push_says_why() {
        let (t, repo, _) = repo();
        let rec = prepare(&repo, None, TaskId(1), &t.path().join("w1"), None).unwrap();
        let e = push(&rec, "nowhere", Duration::from_secs(30)).unwrap_err();
        assert!(e.contains("git push nowhere owl/task-1 failed"), "{e}");
    }
}
