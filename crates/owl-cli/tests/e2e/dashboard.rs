//! The dashboard in a real browser: headless Chromium driven through chromedriver's WebDriver
//! protocol. Sign in with `owl dashboard`, watch a task finish live, approve a waiting tool
//! call, pause a schedule, open a report, and look at it at a phone's width; a screenshot of
//! each page is written under the test target dir (`dashboard-screenshots/`).

use crate::harness::*;
use serde_json::{json, Value};
use std::time::Duration;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap()
}

/// One WebDriver session on a chromedriver of its own.
struct Browser {
    driver: std::process::Child,
    base: String,
    session: String,
    rt: tokio::runtime::Runtime,
    http: reqwest::Client,
    shots: std::path::PathBuf,
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.rt.block_on(self.http.delete(format!("{}/session/{}", self.base, self.session)).send());
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

impl Browser {
    fn start() -> Option<Browser> {
        let (Some(driver), Some(chromium)) = (which("chromedriver"), which("chromium").or_else(|| which("chromium-browser"))) else {
            skip("no chromium and chromedriver (Debian: chromium, chromium-driver)");
            return None;
        };
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = std::process::Command::new(driver)
            .arg(format!("--port={port}"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let base = format!("http://127.0.0.1:{port}");
        let (rt, http) = (rt(), reqwest::Client::new());
        wait_for("chromedriver", Duration::from_secs(20), || {
            rt.block_on(http.get(format!("{base}/status")).send()).ok().filter(|r| r.status().is_success()).map(|_| ())
        });
        let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": {"binary": chromium,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,1000"]}}}});
        let r: Value = rt.block_on(async { http.post(format!("{base}/session")).json(&caps).send().await.unwrap().json().await.unwrap() });
        let session = r["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no WebDriver session: {r}")).to_string();
        let shots = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-screenshots");
        std::fs::create_dir_all(&shots).unwrap();
        Some(Browser { driver: child, base, session, rt, http, shots })
    }

    fn call(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        self.rt.block_on(async {
            let mut req = self.http.request(method, url);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let v: Value = req.send().await.unwrap().json().await.unwrap();
            if v["value"].get("error").is_some() {
                panic!("WebDriver {path}: {v}");
            }
            v["value"].clone()
        })
    }

    fn go(&self, url: &str) {
        self.call(reqwest::Method::POST, "/url", Some(json!({ "url": url })));
    }

    fn js(&self, script: &str) -> Value {
        self.call(reqwest::Method::POST, "/execute/sync", Some(json!({"script": script, "args": []})))
    }

    /// Runs `script` (its last argument is the callback) and returns what it passed back.
    fn js_async(&self, script: &str) -> Value {
        self.call(reqwest::Method::POST, "/execute/async", Some(json!({"script": script, "args": []})))
    }

    fn text(&self) -> String {
        self.js("return document.body.innerText").as_str().unwrap_or_default().to_string()
    }

    fn wait_text(&self, what: &str, want: impl Fn(&str) -> bool) -> String {
        wait_for(what, Duration::from_secs(30), || {
            let t = self.text();
            want(&t).then_some(t)
        })
    }

    fn click(&self, css: &str) {
        let el = self.call(reqwest::Method::POST, "/element", Some(json!({"using": "css selector", "value": css})));
        let id = el.as_object().and_then(|o| o.values().next()).and_then(|v| v.as_str()).unwrap().to_string();
        self.call(reqwest::Method::POST, &format!("/element/{id}/click"), Some(json!({})));
    }

    fn shot(&self, name: &str) {
        let png = self.call(reqwest::Method::GET, "/screenshot", None);
        use base64_decode as b64;
        std::fs::write(self.shots.join(format!("{name}.png")), b64(png.as_str().unwrap())).unwrap();
    }

    fn size(&self, w: u32, h: u32) {
        self.call(reqwest::Method::POST, "/window/rect", Some(json!({"width": w, "height": h})));
    }
}

fn which(name: &str) -> Option<String> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| format!("{d}/{name}")).find(|p| std::path::Path::new(p).is_file())
}

/// Standard base64, for WebDriver's screenshots.
fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| *c != b'=' && !c.is_ascii_whitespace()).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, c)| acc | (u32::from(val(*c)) << (18 - 6 * i)));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}

#[test]
fn the_dashboard_signs_in_shows_work_live_and_acts_on_it_in_a_real_browser() {
    let Some(b) = Browser::start() else { return };
    let (url, _seen) = crate::sandbox::fake_model("echo approved > approved.txt");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    std::fs::write(
        config_path(&dir),
        format!("[providers.fake]\nkind = \"openai\"\nbase_url = \"{url}\"\nmodel = \"m\"\n\n[agents.deployer]\nprovider = \"fake\"\nshell_default = \"ask\"\nsandbox = false\n\n[budgets.\"agent.deployer\"]\ntokens = 100000000\n"),
    )
    .unwrap();
    let d = Daemon::start(&dir, &[]);
    let http = reqwest::Client::new();
    let status = |path: &str| rt().block_on(async { http.get(d.url(path)).send().await.unwrap().status().as_u16() });

    // Nobody without the link or the token gets anything but the sign-in page.
    assert_eq!(status("/ui/"), 401);
    assert_eq!(status("/ui/assets/app.js"), 401);
    assert_eq!(status("/v1/tasks"), 401);
    b.go(&d.url("/ui/"));
    assert!(b.text().contains("owl dashboard"), "the sign-in page says how: {}", b.text());
    b.shot("signin");

    // Sign in with the one-time link.
    let link = d.ok(&["dashboard", "--url"]).trim().to_string();
    assert!(link.starts_with(&d.url("/ui/signin?code=")), "{link}");
    b.go(&link);
    b.wait_text("the overview", |t| t.contains("Overview") && t.contains("spent in 24h"));
    let cookies = b.call(reqwest::Method::GET, "/cookie", None);
    let c = cookies.as_array().unwrap().iter().find(|c| c["name"] == "owl_session").expect("a session cookie").clone();
    assert_eq!((c["httpOnly"].as_bool(), c["sameSite"].as_str()), (Some(true), Some("Strict")), "{c}");
    assert_eq!(status(&link.replace(&d.url(""), "")), 401, "a link works once");
    let headers = rt().block_on(async {
        http.get(d.url("/ui/")).header("cookie", format!("owl_session={}", c["value"].as_str().unwrap())).send().await.unwrap()
    });
    assert_eq!(headers.status(), 200);
    let csp = headers.headers()["content-security-policy"].to_str().unwrap().to_string();
    assert!(csp.contains("script-src 'self'") && csp.contains("default-src 'none'") && !csp.contains("unsafe"), "{csp}");
    b.shot("overview");

    // A change without the CSRF token is refused, even with the session.
    let code = b.js_async(
        "const done = arguments[arguments.length - 1]; fetch('/v1/schedules/none/pause', {method: 'POST'}).then(r => done(r.status));",
    );
    assert_eq!(code, 403);
    // A session cannot mint sign-in links (it would never end), even with its CSRF token.
    let minted = b.js_async(
        "const done = arguments[arguments.length - 1]; fetch('/ui/session').then(r => r.json()).then(s => \
         fetch('/v1/dashboard/link', {method: 'POST', headers: {'x-csrf-token': s.csrf}})).then(r => done(r.status));",
    );
    assert_eq!(minted, 403);

    // A task appears and finishes without a reload.
    b.go(&d.url("/ui/#/tasks"));
    b.wait_text("the tasks page", |t| t.contains("Retry selected"));
    b.js("window.__stayed = true; return 1");
    let id = add(&d, &["--", "sh", "-c", "sleep 3; echo done"]);
    let row = format!("tr[data-task=\"{id}\"]");
    let seen_running = wait_for("the task on the page", Duration::from_secs(30), || {
        let t = b.js(&format!("const r = document.querySelector('{row}'); return r ? r.innerText : ''"));
        let t = t.as_str().unwrap_or_default().to_string();
        (!t.is_empty()).then_some(t)
    });
    assert!(!seen_running.contains("succeeded"), "first seen before it ended: {seen_running}");
    wait_for("the task to finish on the page", Duration::from_secs(30), || {
        let t = b.js(&format!("const r = document.querySelector('{row}'); return r ? r.innerText : ''"));
        t.as_str().unwrap_or_default().contains("succeeded").then_some(())
    });
    assert_eq!(b.js("return window.__stayed === true"), true, "no reload");
    b.shot("tasks");
    b.click(&format!("{row} a"));
    b.wait_text("the task page", |t| t.contains(&format!("Task {id}")) && t.contains("done"));
    // A running task's log streams onto its page.
    let slow = add(&d, &["--", "sh", "-c", "echo first-line; sleep 4; echo second-line"]);
    b.go(&d.url(&format!("/ui/#/tasks/{slow}")));
    let log = |b: &Browser| {
        b.js("const l = document.getElementById('log'); return l ? l.innerText : ''").as_str().unwrap_or_default().to_string()
    };
    let early = wait_for("the first line", Duration::from_secs(20), || Some(log(&b)).filter(|t| t.contains("first-line")));
    assert!(!early.contains("second-line"), "seen while it ran: {early}");
    wait_for("the second line", Duration::from_secs(20), || log(&b).contains("second-line").then_some(()));
    b.shot("task");

    // Approve a waiting tool call.
    let agent_task = add(&d, &["--agent", "deployer", "deploy it"]);
    b.go(&d.url("/ui/#/agents"));
    wait_for("the approval on the page", Duration::from_secs(30), || {
        (b.js("return document.querySelectorAll('tr[data-approval]').length") == 1).then_some(())
    });
    assert!(b.text().contains("echo approved > approved.txt"), "the call is shown: {}", b.text());
    b.shot("agents");
    b.click("tr[data-approval] button.primary");
    d.wait_status(agent_task, "succeeded");
    assert!(dir.join(format!("workspaces/{agent_task}/approved.txt")).exists(), "the approved call ran");

    // The tasks page filters by kind.
    b.go(&d.url("/ui/#/tasks"));
    b.wait_text("the tasks page", |t| t.contains("Retry selected"));
    b.js("const s = document.querySelector('select[aria-label=kind]'); s.value = 'agent'; s.dispatchEvent(new Event('change')); return 1");
    wait_for("only the agent task listed", Duration::from_secs(20), || {
        let rows = b.js("return [...document.querySelectorAll('tr[data-task]')].map(r => r.dataset.task).join(',')");
        (rows.as_str() == Some(agent_task.to_string().as_str())).then_some(())
    });

    // Pause a schedule.
    d.ok(&["schedule", "add", "nightly", "--cron", "0 2 * * *", "--", "true"]);
    b.go(&d.url("/ui/#/schedules"));
    b.wait_text("the schedule", |t| t.contains("nightly") && t.contains("Pause"));
    b.click("tr[data-schedule=\"nightly\"] button:nth-of-type(2)");
    wait_for("the schedule to pause", Duration::from_secs(10), || {
        (d.json(&["schedule", "show", "nightly"])["state"] == "paused").then_some(())
    });
    b.wait_text("the resume button", |t| t.contains("Resume"));
    b.shot("schedules");

    // The budgets, with what they spent, on the usage page.
    b.go(&d.url("/ui/#/usage"));
    b.wait_text("the budgets", |t| t.contains("agent.deployer") && t.contains("100000000 tokens / day"));
    b.shot("usage");

    // Open a report.
    b.go(&d.url("/ui/#/reports"));
    b.wait_text("the reports page", |t| t.contains("The last 7 days"));
    b.shot("reports");
    let href = b.js("return document.querySelector('a.report').href").as_str().unwrap().to_string();
    b.go(&href);
    b.wait_text("the report", |t| t.contains("owl daily report") && t.contains("Schedules"));
    b.shot("report");

    // A phone's width: the page itself never scrolls sideways (wide tables scroll in place).
    b.size(390, 844);
    for (page, name) in [("#/", "phone-overview"), ("#/tasks", "phone-tasks"), ("#/schedules", "phone-schedules")] {
        b.go(&d.url(&format!("/ui/{page}")));
        b.wait_text(name, |t| t.contains("Sign out"));
        std::thread::sleep(Duration::from_millis(300));
        let fits = b.js("return document.documentElement.scrollWidth <= window.innerWidth + 1");
        assert_eq!(fits, true, "{name} overflows a phone's width");
        b.shot(name);
    }
}

#[test]
fn a_team_run_shows_its_routing_and_its_tree_of_tasks_in_a_real_browser() {
    let Some(b) = Browser::start() else { return };
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("data");
    let (url, _prompts) = crate::team::model();
    std::fs::write(config_path(&dir), crate::team::config(&url)).unwrap();
    let d = Daemon::start(&dir, &[("XDG_CACHE_HOME", tmp.path().join("cache").to_str().unwrap())]);
    let lead = add(&d, &["--agent", "planner", "--team", "Build the CSV export"]);
    d.wait_status(lead, "succeeded");
    let kids: Vec<i64> = d.task(lead)["children"].as_array().unwrap().iter().map(|c| c["id"].as_i64().unwrap()).collect();
    assert_eq!(kids.len(), 2);
    let link = d.ok(&["dashboard", "--url"]).trim().to_string();
    b.go(&link);
    b.wait_text("the overview", |t| t.contains("Overview"));
    b.go(&d.url(&format!("/ui/#/tasks/{lead}")));
    let page = b.wait_text("the team tree", |t| t.contains("Team") && kids.iter().all(|k| t.contains(&format!("{k} succeeded"))));
    assert!(page.contains("agent:scribe"), "{page}");
    b.shot("team");
    // A routed child's page says how it was routed.
    b.go(&d.url(&format!("/ui/#/tasks/{}", kids[0])));
    let page = b.wait_text("the routing", |t| t.contains("Routing"));
    assert!(page.contains("needs python at complexity 3: coder is available") && page.contains("lacks python"), "{page}");
}
