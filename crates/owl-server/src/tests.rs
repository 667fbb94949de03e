//! In-process API tests: the real router, engine and SQLite store, no network.

use super::*;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use owl_core::layout::DataLayout;
use owl_engine::{EngineConfig, SystemClock};
use owl_store_sqlite::{Durability, SqliteStore};
use serde_json::{json, Value};
use std::time::Duration;
use tower::ServiceExt;

const TOKEN: &str = "test-token-0123456789";

struct Api {
    app: Router,
    _dir: tempfile::TempDir,
    _stop: watch::Sender<bool>,
}

fn api() -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("owl.db"), Durability::Full).unwrap();
    let cfg = EngineConfig {
        workers: 2,
        kill_grace: Duration::from_millis(200),
        shutdown_grace: Duration::from_millis(200),
        log_max_bytes: 1 << 20,
        retry: Default::default(),
        ..EngineConfig::from_settings(&Default::default(), "n".into())
    };
    let (engine, dispatch) = owl_engine::Engine::new(Arc::new(store), DataLayout::new(dir.path()), cfg, Arc::new(SystemClock));
    tokio::spawn(dispatch.run(true));
    let (stop_tx, stop_rx) = watch::channel(false);
    let state = AppState {
        engine: engine.clone(),
        token: TOKEN.into(),
        max_body_bytes: 64 * 1024,
        listen: "127.0.0.1:0".into(),
        started_at: engine.now(),
        shutdown: stop_rx,
        sessions: Default::default(),
        mcp_approvals: false,
        mcp_hub: Arc::new(owl_mcp::Hub::single("none", Default::default())),
    };
    Api { app: router(state), _dir: dir, _stop: stop_tx }
}

async fn call(api: &Api, method: &str, path: &str, token: Option<&str>, body: Option<(&str, Vec<u8>)>) -> (StatusCode, Value) {
    let mut req = Request::builder().method(method).uri(path);
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = match body {
        Some((ct, b)) => req.header("content-type", ct).body(Body::from(b)).unwrap(),
        None => req.body(Body::empty()).unwrap(),
    };
    let resp = api.app.clone().oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 10 << 20).await.unwrap();
    let v = serde_json::from_slice(&bytes).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, v)
}

async fn post(api: &Api, path: &str, body: Value) -> (StatusCode, Value) {
    call(api, "POST", path, Some(TOKEN), Some(("application/json", body.to_string().into_bytes()))).await
}

fn concrete(path: &str) -> String {
    path.replace("{id}", "1").replace("{name}", "g")
}

#[tokio::test]
async fn schedules_are_created_shown_and_bad_ones_explained() {
    let api = api();
    let body = json!({"name": "nightly", "cron": "0 2 * * *", "tz": "Europe/Berlin", "misfire": "once", "overlap": "skip", "task": {"command": ["./backup.sh"]}});
    let (s, v) = post(&api, "/v1/schedules", body.clone()).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["describe"], "cron \"0 2 * * *\" in Europe/Berlin");
    assert!(v["next_fire_local"].as_str().unwrap().contains("02:00:00"), "{v}");
    let (s, _) = post(&api, "/v1/schedules", body).await;
    assert_eq!(s, StatusCode::CONFLICT);
    let (s, v) = call(&api, "GET", "/v1/schedules/nightly", Some(TOKEN), None).await;
    assert_eq!((s, v["upcoming"].as_array().unwrap().len()), (StatusCode::OK, 5));
    let (s, v) = post(&api, "/v1/schedules/nightly/run", json!({})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let (_, h) = call(&api, "GET", "/v1/schedules/nightly/history", Some(TOKEN), None).await;
    assert_eq!(h["history"][0]["outcome"], "manual");
    let (s, v) = post(&api, "/v1/schedules/nightly/pause", json!({})).await;
    assert_eq!((s, v["state"].as_str()), (StatusCode::OK, Some("paused")));
    let (s, v) = post(&api, "/v1/schedules/nightly/resume", json!({})).await;
    assert_eq!((s, v["state"].as_str()), (StatusCode::OK, Some("active")));
    let bad: Vec<(Value, &str, &str)> = vec![
        (json!({"name": "x", "cron": "0 25 * * *", "task": {"shell": "true"}}), "cron", "hour field `25`"),
        (json!({"name": "x", "cron": "0 2 * * *", "tz": "Berlin", "task": {"shell": "true"}}), "tz", "Europe/Berlin"),
        (json!({"name": "x", "task": {"shell": "true"}}), "cron", "say when"),
        (json!({"name": "x", "every": "90", "task": {"shell": "true"}}), "every", "90s"),
        (json!({"name": "x", "at": "2000-01-01T00:00:00Z", "task": {"shell": "true"}}), "at", "no future slot"),
        (json!({"name": "x", "every": "1m", "misfire": "later", "task": {"shell": "true"}}), "misfire", "skip, once, all"),
        (json!({"name": "x", "every": "1m", "overlap": "sometimes", "task": {"shell": "true"}}), "overlap", "queue"),
        (json!({"name": "x", "every": "1m", "task": {"shell": "true", "after": [1]}}), "task.after", "decides when"),
        (json!({"name": "x y", "every": "1m", "task": {"shell": "true"}}), "name", "schedule name"),
        (json!({"name": "x", "every": "1m", "task": {}}), "task.command", "missing"),
    ];
    for (body, field, needle) in bad {
        let (s, v) = post(&api, "/v1/schedules", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body}: {v}");
        assert_eq!(v["error"]["field"], field, "{body}: {v}");
        assert!(v["error"]["message"].as_str().unwrap().contains(needle), "{body}: {v}");
    }
    let (s, _) = call(&api, "DELETE", "/v1/schedules/nightly", Some(TOKEN), None).await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, v) = call(&api, "GET", "/v1/schedules/nightly", Some(TOKEN), None).await;
    assert_eq!(s, StatusCode::NOT_FOUND, "{v}");
}

/// Every (method, path) of the generated document.
fn documented() -> Vec<(String, String)> {
    let doc = serde_json::to_value(openapi_document()).unwrap();
    let mut out = vec![];
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            out.push((method.to_uppercase(), path.clone()));
        }
    }
    out
}

#[tokio::test]
async fn healthz_is_open_and_everything_else_needs_the_token() {
    let api = api();
    assert_eq!(call(&api, "GET", "/healthz", None, None).await.0, StatusCode::OK);
    let routes = documented();
    assert!(routes.len() >= 48, "{routes:?}");
    for (m, path) in routes.iter().filter(|(_, p)| !openapi::OPEN_PATHS.contains(&p.as_str())) {
        let p = concrete(path);
        let body = Some(("application/json", b"{}".to_vec()));
        let (s, v) = call(&api, m, &p, None, body.clone()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{m} {p} without a token");
        assert_eq!(v["error"]["code"], "unauthorized");
        let (s, _) = call(&api, m, &p, Some("wrong-token"), body.clone()).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{m} {p} with a wrong token");
        let (s, _) = call(&api, m, &p, Some(&TOKEN[..TOKEN.len() - 1]), body).await;
        assert_eq!(s, StatusCode::UNAUTHORIZED, "{m} {p} with a token prefix");
    }
    // A webhook needs no token: its signature is checked instead (no such hook here: 404).
    let (s, _) = call(&api, "POST", "/v1/hooks/nope", None, Some(("application/json", b"{}".to_vec()))).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

/// The status of an authenticated `{}` request to `path` (ids and names filled in). Status
/// only: some routes stream forever (events), so the body is not read.
async fn status_only(api: &Api, method: &str, path: &str) -> StatusCode {
    let req = Request::builder()
        .method(method)
        .uri(concrete(path))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(Body::from("{}"))
        .unwrap();
    api.app.clone().oneshot(req).await.unwrap().status()
}

#[tokio::test]
async fn every_documented_route_is_served_and_every_served_route_documented() {
    let api = api();
    let (s, doc) = call(&api, "GET", "/v1/openapi.json", Some(TOKEN), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(doc, serde_json::to_value(openapi_document()).unwrap(), "the served document is the generated one");
    let routes = documented();
    for (m, path) in &routes {
        let s = status_only(&api, m, path).await;
        let routed = s != StatusCode::METHOD_NOT_ALLOWED && (s != StatusCode::NOT_FOUND || path.contains('{'));
        assert!(routed, "{m} {path}: {s}");
        // Every operation documents its replies and its errors.
        let op = &doc["paths"][path][m.to_lowercase()];
        assert!(op["summary"].is_string(), "{m} {path} has no summary");
        if path != "/healthz" {
            assert!(op["responses"]["400"].is_object() && op["responses"]["500"].is_object(), "{m} {path}");
        }
    }
    // The other direction: a method the document does not list is refused, not served.
    let documented_paths: std::collections::BTreeSet<&str> = routes.iter().map(|(_, p)| p.as_str()).collect();
    for path in documented_paths {
        for m in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if routes.iter().any(|(rm, rp)| rm == m && rp == path) {
                continue;
            }
            let s = status_only(&api, m, path).await;
            assert_eq!(s, StatusCode::METHOD_NOT_ALLOWED, "{m} {path} is served but not documented");
        }
    }
}

#[tokio::test]
async fn submit_show_list_and_idempotency() {
    let api = api();
    let (s, v) = post(&api, "/v1/tasks", json!({"command": ["true"], "labels": ["x"], "idempotency_key": "k"})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    let (s, v2) = post(&api, "/v1/tasks", json!({"command": ["true"], "idempotency_key": "k"})).await;
    assert_eq!((s, v2["id"].as_i64().unwrap(), v2["created"].as_bool().unwrap()), (StatusCode::OK, id, false));
    let (s, t) = call(&api, "GET", &format!("/v1/tasks/{id}"), Some(TOKEN), None).await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(t["labels"], json!(["x"]));
    assert!(t["runs"].is_array());
    let (_, l) = call(&api, "GET", "/v1/tasks?label=x", Some(TOKEN), None).await;
    assert_eq!(l["tasks"].as_array().unwrap().len(), 1);
    let (_, w) = call(&api, "GET", &format!("/v1/wait?ids={id}&timeout=10s"), Some(TOKEN), None).await;
    assert_eq!(w["done"], true, "{w}");
    assert_eq!(w["tasks"][0]["status"], "succeeded");
}

#[tokio::test]
async fn batches_link_items_and_refuse_cycles() {
    let api = api();
    let (s, v) = post(&api, "/v1/tasks/batch", json!({"tasks": [{"shell": "true", "after_items": [1]}, {"shell": "true"}]})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
    assert_eq!(v["tasks"][0]["status"], "waiting");
    let (s, v) =
        post(&api, "/v1/tasks/batch", json!({"tasks": [{"shell": "a", "after_items": [1]}, {"shell": "b", "after_items": [0]}]})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert!(v["error"]["message"].as_str().unwrap().contains("cycle"), "{v}");
    let (s, v) = post(&api, "/v1/tasks/batch", json!({"tasks": [{"shell": "a"}, {"shell": "b", "timeout": "soon"}]})).await;
    assert_eq!((s, v["error"]["field"].as_str().unwrap()), (StatusCode::BAD_REQUEST, "tasks[1].timeout"));
    let (s, v) = post(&api, "/v1/tasks", json!({"shell": "a", "after": [999]})).await;
    assert_eq!((s, v["error"]["code"].as_str().unwrap()), (StatusCode::BAD_REQUEST, "unknown_dependency"));
}

#[tokio::test]
async fn bad_input_gets_a_named_4xx() {
    let api = api();
    let cases: Vec<(&str, &str, Option<(&str, Vec<u8>)>, StatusCode, &str)> = vec![
        ("POST", "/v1/tasks", Some(("application/json", br#"{"shell":"x","priorty":1}"#.to_vec())), StatusCode::BAD_REQUEST, "priorty"),
        (
            "POST",
            "/v1/tasks",
            Some(("application/json", br#"{"shell":"x","priority":"high"}"#.to_vec())),
            StatusCode::BAD_REQUEST,
            "priority",
        ),
        ("POST", "/v1/tasks", Some(("application/json", b"{not json".to_vec())), StatusCode::BAD_REQUEST, "JSON"),
        ("POST", "/v1/tasks", Some(("text/plain", b"{}".to_vec())), StatusCode::UNSUPPORTED_MEDIA_TYPE, "Content-Type"),
        ("POST", "/v1/tasks", Some(("application/json", br#"{}"#.to_vec())), StatusCode::BAD_REQUEST, "command"),
        ("POST", "/v1/tasks", Some(("application/json", br#"{"command":[]}"#.to_vec())), StatusCode::BAD_REQUEST, "command"),
        (
            "POST",
            "/v1/tasks",
            Some(("application/json", br#"{"shell":"x","run_at":"tomorrow"}"#.to_vec())),
            StatusCode::BAD_REQUEST,
            "run_at",
        ),
        ("POST", "/v1/tasks", Some(("application/json", vec![b' '; 70 * 1024])), StatusCode::PAYLOAD_TOO_LARGE, "max_body_bytes"),
        ("GET", "/v1/tasks/abc", None, StatusCode::BAD_REQUEST, "task id"),
        ("GET", "/v1/tasks/424242", None, StatusCode::NOT_FOUND, "does not exist"),
        ("GET", "/v1/tasks?status=done", None, StatusCode::BAD_REQUEST, "status"),
        ("GET", "/v1/tasks?colour=red", None, StatusCode::BAD_REQUEST, "colour"),
        ("GET", "/v1/tasks?limit=0", None, StatusCode::BAD_REQUEST, "limit"),
        ("GET", "/v1/wait?ids=1&timeout=1h", None, StatusCode::BAD_REQUEST, "timeout"),
        ("PUT", "/v1/groups/g", Some(("application/json", br#"{"parallel":0}"#.to_vec())), StatusCode::BAD_REQUEST, "parallel"),
        ("PUT", "/v1/groups/g", Some(("application/json", br#"{}"#.to_vec())), StatusCode::BAD_REQUEST, "parallel"),
        ("PUT", "/v1/groups/g", Some(("application/json", b"[1]".to_vec())), StatusCode::BAD_REQUEST, "JSON object"),
        ("PUT", "/v1/groups/bad%20name", Some(("application/json", br#"{"parallel":1}"#.to_vec())), StatusCode::BAD_REQUEST, "group"),
        ("POST", "/v1/tasks/424242/cancel", None, StatusCode::NOT_FOUND, "does not exist"),
        ("DELETE", "/v1/tasks", None, StatusCode::METHOD_NOT_ALLOWED, "DELETE"),
        ("GET", "/v2/nothing", None, StatusCode::NOT_FOUND, "/v1"),
    ];
    for (m, p, body, want, needle) in cases {
        let (s, v) = call(&api, m, p, Some(TOKEN), body).await;
        assert_eq!(s, want, "{m} {p}: {v}");
        let msg = v["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle) || v["error"]["field"].as_str().unwrap_or_default().contains(needle), "{m} {p}: {v}");
    }
}

#[tokio::test]
async fn garbage_bodies_never_cause_a_server_error() {
    let api = api();
    let seeds = [
        json!({"shell": "true", "env": {"A": "1"}, "priority": 3, "group": "g", "retries": 2, "timeout": "1s", "labels": ["a"]}),
        json!({"tasks": [{"shell": "true"}, {"command": ["true"], "after_items": [0]}]}),
    ];
    let mut rng: u64 = 0x9E3779B97F4A7C15;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    for i in 0..300 {
        let seed = seeds[i % 2].to_string().into_bytes();
        let mut body = seed.clone();
        for _ in 0..(1 + next() % 4) {
            let pos = (next() as usize) % body.len();
            match next() % 3 {
                0 => body[pos] = (next() % 256) as u8,
                1 => {
                    body.remove(pos);
                }
                _ => body.insert(pos, b"{}[]\",:0-e\\"[(next() % 11) as usize]),
            }
        }
        let path = if i % 2 == 0 { "/v1/tasks" } else { "/v1/tasks/batch" };
        let (s, v) = call(&api, "POST", path, Some(TOKEN), Some(("application/json", body.clone()))).await;
        assert!(s.is_success() || s.is_client_error(), "{s} for {}: {v}", String::from_utf8_lossy(&body));
        if s.is_client_error() {
            assert!(v["error"]["message"].is_string(), "error body has a message: {v}");
        }
    }
}

#[tokio::test]
async fn groups_can_be_limited_and_listed() {
    let api = api();
    let (s, v) = call(&api, "PUT", "/v1/groups/gpu", Some(TOKEN), Some(("application/json", br#"{"parallel":1}"#.to_vec()))).await;
    assert_eq!((s, v["parallel"].as_u64()), (StatusCode::OK, Some(1)));
    let (_, v) = call(&api, "GET", "/v1/groups", Some(TOKEN), None).await;
    assert!(v["groups"].as_array().unwrap().iter().any(|g| g["name"] == "gpu" && g["parallel"] == 1), "{v}");
}

#[tokio::test]
async fn deep_nesting_is_a_clear_400_not_a_crash() {
    let api = api();
    // The reproduction: a condition with 1,000 nested parentheses.
    let condition = format!("{}1{} > 0", "(".repeat(1000), ")".repeat(1000));
    let (s, v) =
        post(&api, "/v1/triggers", json!({"name": "x", "condition": condition, "every": "1m", "task": {"command": ["true"]}})).await;
    assert_eq!((s, v["error"]["field"].as_str()), (StatusCode::BAD_REQUEST, Some("condition")), "{v}");
    let condition = format!("{}1{} > 0", "(".repeat(100), ")".repeat(100));
    let (s, v) =
        post(&api, "/v1/triggers", json!({"name": "x", "condition": condition, "every": "1m", "task": {"command": ["true"]}})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
    assert!(v["error"]["message"].as_str().unwrap().contains("levels deep"), "{v}");
    // JSON nested past the limit, in a free-form field and at the top.
    for body in [format!(r#"{{"shell":"true","input":{}1{}}}"#, "[".repeat(5000), "]".repeat(5000)), "[".repeat(50_000)] {
        let (s, v) = call(&api, "POST", "/v1/tasks", Some(TOKEN), Some(("application/json", body.into_bytes()))).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{v}");
        assert!(v["error"]["message"].as_str().unwrap().contains("levels deep"), "{v}");
    }
    // Brackets inside strings are text, not nesting.
    let (s, v) = post(&api, "/v1/tasks", json!({"shell": format!("echo '{}'", "[".repeat(1000))})).await;
    assert_eq!(s, StatusCode::CREATED, "{v}");
}

#[test]
fn memory_wire_types_say_exactly_what_memory_says() {
    // The wire mirrors owl-memory's types so owl-api links no model code; the JSON must match.
    use crate::routes::memory::{added, hit, item, new_memory};
    let m = owl_memory::MemoryItem {
        id: 7,
        text: "t".into(),
        kind: "knowledge".into(),
        tags: vec!["a".into()],
        source: Some("cli".into()),
        agent: None,
        user: Some("u".into()),
        created_at: 1,
        accessed_at: Some(2),
        access_count: 3,
    };
    assert_eq!(serde_json::to_value(item(m.clone())).unwrap(), serde_json::to_value(&m).unwrap());
    let h = owl_memory::Hit {
        item: m,
        score: 0.5,
        vector_rank: Some(1),
        similarity: Some(0.9),
        text_rank: None,
        bm25: Some(1.5),
        recency_boost: None,
    };
    assert_eq!(serde_json::to_value(hit(h.clone())).unwrap(), serde_json::to_value(&h).unwrap());
    for a in [owl_memory::Added::Created { id: 1 }, owl_memory::Added::Merged { id: 2 }] {
        assert_eq!(serde_json::to_value(added(a.clone())).unwrap(), serde_json::to_value(&a).unwrap());
    }
    let wire = owl_api::NewMemory { text: "x".into(), kind: "k".into(), tags: vec![], source: None, agent: Some("a".into()), user: None };
    assert_eq!(serde_json::to_value(new_memory(wire.clone())).unwrap(), serde_json::to_value(&wire).unwrap());
}

/// The MCP tools over the real router, as `/v1/mcp` builds them.
fn mcp_server(api: &Api, approvals: bool) -> owl_mcp::OwlServer {
    mcp_server_scoped(api, owl_mcp::Scope { approvals, task: None })
}

fn mcp_server_scoped(api: &Api, scope: owl_mcp::Scope) -> owl_mcp::OwlServer {
    struct Direct(Router);
    #[async_trait::async_trait]
    impl owl_mcp::Backend for Direct {
        async fn send(&self, method: &str, path: &str, body: Option<Value>) -> Result<owl_mcp::Reply, String> {
            let req = Request::builder().method(method).uri(path).header("authorization", format!("Bearer {TOKEN}"));
            let req = match body {
                Some(b) => req.header("content-type", "application/json").body(Body::from(b.to_string())).unwrap(),
                None => req.body(Body::empty()).unwrap(),
            };
            let resp = self.0.clone().oneshot(req).await.unwrap();
            let status = resp.status().as_u16();
            let bytes = axum::body::to_bytes(resp.into_body(), 10 << 20).await.unwrap();
            Ok(owl_mcp::Reply { status, body: String::from_utf8_lossy(&bytes).into_owned() })
        }
    }
    let doc = serde_json::to_value(openapi_document()).unwrap();
    owl_mcp::OwlServer::new(Arc::new(Direct(api.app.clone())), scope, &doc).unwrap()
}

#[test]
fn every_mcp_tool_is_built_from_an_operation_of_the_api() {
    let api_doc = serde_json::to_value(openapi_document()).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let api = rt.block_on(async { api() });
    let tools = mcp_server(&api, true).tools();
    assert_eq!(tools.len(), owl_mcp::server::tool_names().len());
    for t in &tools {
        let schema = serde_json::to_value(&t.input_schema).unwrap();
        let text = schema.to_string();
        assert!(!text.contains("#/components/"), "{}: every $ref points into $defs: {text}", t.name);
        assert_eq!(schema["type"], "object", "{}", t.name);
        assert_eq!(schema["additionalProperties"], false, "{}", t.name);
        let mut refs = vec![];
        collect(&schema, &mut refs);
        for r in refs {
            let name = r.strip_prefix("#/$defs/").unwrap();
            assert!(schema["$defs"].get(name).is_some(), "{}: `{r}` is defined", t.name);
        }
        assert!(t.description.as_deref().is_some_and(|d| d.len() < 300), "{}: a short description", t.name);
    }
    let add = tools.iter().find(|t| t.name == "task_add").unwrap();
    let props = add.input_schema["properties"].as_object().unwrap();
    let submit = api_doc["components"]["schemas"]["SubmitTask"]["properties"].as_object().unwrap();
    assert_eq!(props.keys().collect::<Vec<_>>(), submit.keys().collect::<Vec<_>>(), "task_add takes exactly what POST /v1/tasks takes");
    let logs = tools.iter().find(|t| t.name == "task_logs").unwrap();
    assert!(logs.input_schema["properties"].get("follow").is_none(), "a tool call must not hang on a followed log");
    assert_eq!(logs.input_schema["required"], json!(["id"]));

    fn collect(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                if let Some(r) = o.get("$ref").and_then(Value::as_str) {
                    out.push(r.to_string());
                }
                o.values().for_each(|x| collect(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| collect(x, out)),
            _ => {}
        }
    }
}

#[tokio::test]
async fn mcp_tools_refuse_hostile_arguments_with_named_errors_and_never_fail_the_server() {
    let api = api();
    let server = mcp_server(&api, false);
    let deep = (0..200).fold(json!(1), |v, _| json!([v]));
    let cases: Vec<(&str, Value, &str)> = vec![
        ("task_show", json!({}), "`id` is required"),
        ("task_show", json!({"id": [1]}), "`id` must be a number or a string"),
        ("task_show", json!({"id": "../../v1/approvals"}), "id"),
        ("task_show", json!({"id": 0}), "id"),
        ("task_show", json!({"id": u64::MAX}), "id"),
        ("task_show", json!({"id": 1, "extra": true}), "unknown argument `extra`"),
        ("task_logs", json!({"id": 1, "tail": -1}), "`tail` must be a whole number"),
        ("task_list", json!({"limit": "many"}), "limit"),
        ("task_add", json!({}), "command"),
        ("task_add", json!({"shell": "true", "nested": deep}), "64 levels"),
        ("task_add", json!({"shell": 7}), "shell"),
        ("task_wait", json!({"ids": "1,x"}), "ids"),
        ("schedule_pause", json!({"name": "no such/../schedule"}), "schedule"),
        ("approval_list", json!({}), "allow_approvals"),
        ("no_such_tool", json!({}), "unknown tool"),
    ];
    for (tool, args, needle) in cases {
        let args = args.as_object().cloned().unwrap_or_default();
        let err = server.call(tool, args.clone()).await.expect_err(&format!("{tool} {args:?} is refused"));
        assert!(err.contains(needle), "{tool} {args:?}: `{err}` should mention {needle}");
        assert!(!err.contains("answered 5"), "{tool}: never a server error: {err}");
    }
    // And a good call goes through to the queue.
    let out = server.call("task_add", json!({"shell": "echo hi", "labels": ["mcp"]}).as_object().cloned().unwrap()).await.unwrap();
    let task: Value = serde_json::from_str(&out).unwrap();
    let shown = server.call("task_show", json!({"id": task["id"]}).as_object().cloned().unwrap()).await.unwrap();
    assert!(shown.contains("\"labels\":[\"mcp\"]"), "{shown}");
}

#[tokio::test]
async fn a_tasks_own_mcp_server_reaches_only_that_task_and_what_it_queued() {
    let api = api();
    let full = mcp_server(&api, false);
    let args = |v: Value| v.as_object().cloned().unwrap();
    let other: Value = serde_json::from_str(&full.call("task_add", args(json!({"shell": "echo private"}))).await.unwrap()).unwrap();
    let parent: Value = serde_json::from_str(&full.call("task_add", args(json!({"shell": "sleep 0"}))).await.unwrap()).unwrap();
    let owner = parent["id"].as_i64().unwrap();
    let scoped = mcp_server_scoped(&api, owl_mcp::Scope { approvals: false, task: Some(owner) });
    let names: Vec<String> = scoped.tools().iter().map(|t| t.name.to_string()).collect();
    assert!(!names.iter().any(|n| n.starts_with("schedule_") || n.starts_with("approval_")), "{names:?}");

    let child: Value = serde_json::from_str(
        &scoped.call("task_add", args(json!({"shell": "echo child", "sandbox": {"enabled": false, "allow_net": true}}))).await.unwrap(),
    )
    .unwrap();
    let child: Value = serde_json::from_str(&full.call("task_show", args(json!({"id": child["id"]}))).await.unwrap()).unwrap();
    assert_eq!(child["labels"], json!([owl_mcp::server::child_label(owner)]));
    assert_eq!(child["sandbox"]["enabled"], true, "what a task queues is sandboxed whatever it asked: {child}");
    assert_eq!(child["sandbox"]["allow_net"], false, "{child}");
    for refused in [json!({"agent": "a", "prompt": "p"}), json!({"cli": "claude", "prompt": "p", "repo": {"path": "/src"}})] {
        let e = scoped.call("task_add", args(refused.clone())).await.unwrap_err();
        assert!(e.contains("is not allowed here"), "{refused}: {e}");
    }
    assert!(scoped.call("task_show", args(json!({"id": child["id"]}))).await.is_ok());
    assert!(scoped.call("task_show", args(json!({"id": owner}))).await.is_ok());
    let e = scoped.call("task_show", args(json!({"id": other["id"]}))).await.unwrap_err();
    assert!(e.contains("out of reach"), "{e}");
    let e = scoped.call("task_cancel", args(json!({"id": other["id"]}))).await.unwrap_err();
    assert!(e.contains("out of reach"), "{e}");
    let e = scoped.call("task_wait", args(json!({"ids": format!("{},{}", child["id"], other["id"])}))).await.unwrap_err();
    assert!(e.contains("out of reach"), "{e}");
    let listed: Value = serde_json::from_str(&scoped.call("task_list", args(json!({}))).await.unwrap()).unwrap();
    let ids: Vec<i64> = listed["tasks"].as_array().unwrap().iter().map(|t| t["id"].as_i64().unwrap()).collect();
    assert_eq!(ids, vec![child["id"].as_i64().unwrap()]);
    assert!(scoped.call("task_list", args(json!({"label": "x"}))).await.is_err(), "the label filter is the scope's");
}
