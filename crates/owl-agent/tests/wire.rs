//! Wire-format tests: each provider against a local HTTP server that answers exactly as the
//! real API does (bodies, SSE streams, status codes, Retry-After), recording what it was sent.

use axum::body::Body;
use axum::http::{HeaderMap, Response, StatusCode};
use owl_agent::msg::{ChatRequest, Delta, Message, ToolSpec};
use owl_agent::provider::{call_with_fallback, Provider, ProviderError, RetryPolicy, Route};
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One scripted reply: status, extra headers, body, and whether it is an event stream.
#[derive(Clone)]
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    sse: bool,
}

fn ok_json(v: Value) -> Reply {
    Reply { status: 200, headers: vec![], body: v.to_string(), sse: false }
}

fn sse(events: &[(Option<&str>, Value)], done: bool) -> Reply {
    let mut body = String::new();
    for (name, data) in events {
        if let Some(n) = name {
            body.push_str(&format!("event: {n}\n"));
        }
        body.push_str(&format!("data: {data}\n\n"));
    }
    if done {
        body.push_str("data: [DONE]\n\n");
    }
    Reply { status: 200, headers: vec![], body, sse: true }
}

#[derive(Default)]
struct Seen {
    requests: Vec<(HeaderMap, Value, Instant)>,
}

struct Fake {
    url: String,
    seen: Arc<Mutex<Seen>>,
}

async fn fake(replies: Vec<Reply>) -> Fake {
    let queue = Arc::new(Mutex::new(VecDeque::from(replies)));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let (q, s) = (queue.clone(), seen.clone());
    let handler = move |headers: HeaderMap, body: String| {
        let (q, s) = (q.clone(), s.clone());
        async move {
            let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            s.lock().unwrap().requests.push((headers, v, Instant::now()));
            let r =
                q.lock().unwrap().pop_front().unwrap_or(Reply { status: 599, headers: vec![], body: "no more replies".into(), sse: false });
            let mut b = Response::builder().status(StatusCode::from_u16(r.status).unwrap());
            b = b.header("content-type", if r.sse { "text/event-stream" } else { "application/json" });
            for (k, v) in r.headers {
                b = b.header(k, v);
            }
            b.body(Body::from(r.body)).unwrap()
        }
    };
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(handler.clone()))
        .route("/v1/messages", axum::routing::post(handler));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Fake { url: format!("http://{addr}"), seen }
}

fn req(stream: bool) -> ChatRequest {
    ChatRequest {
        model: "m-1".into(),
        messages: vec![
            Message::System { content: "be brief".into() },
            Message::User { content: "list files".into() },
            Message::Assistant {
                content: String::new(),
                tool_calls: vec![owl_agent::msg::ToolCall { id: "c0".into(), name: "list_dir".into(), arguments: json!({}) }],
            },
            Message::Tool { call_id: "c0".into(), name: "list_dir".into(), content: "a.txt".into(), is_error: false },
        ],
        tools: vec![ToolSpec { name: "read_file".into(), description: "read".into(), parameters: json!({"type": "object"}) }],
        max_output_tokens: 100,
        temperature: Some(0.0),
        require_tool: true,
        forbid_tools: false,
        stream,
    }
}

fn openai(url: &str) -> Arc<dyn Provider> {
    Arc::new(owl_agent::openai::OpenAi::new("oa", Some(&format!("{url}/v1")), Some("sk-test-key".into()), Duration::from_secs(5)))
}

fn anthropic(url: &str) -> Arc<dyn Provider> {
    Arc::new(owl_agent::anthropic::Anthropic::new("an", Some(url), Some("ak-test-key".into()), Duration::from_secs(5)))
}

async fn call(p: &Arc<dyn Provider>, r: &ChatRequest) -> (Result<owl_agent::msg::ChatResponse, ProviderError>, Vec<Delta>) {
    let mut deltas = vec![];
    let out = p.chat(r, &mut |d| deltas.push(d)).await;
    (out, deltas)
}

#[tokio::test]
async fn openai_request_and_tool_call_reply() {
    let f = fake(vec![ok_json(json!({
        "id": "chatcmpl-1", "object": "chat.completion", "model": "m-1-2026",
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant", "content": null,
            "tool_calls": [{"id": "call_9", "type": "function", "function": {"name": "read_file", "arguments": "{\"path\":\"a.txt\"}"}}]}}],
        "usage": {"prompt_tokens": 50, "completion_tokens": 7, "total_tokens": 57, "prompt_tokens_details": {"cached_tokens": 20}}
    }))])
    .await;
    let (out, _) = call(&openai(&f.url), &req(false)).await;
    let out = out.unwrap();
    assert_eq!(out.tool_calls.len(), 1);
    assert_eq!((out.tool_calls[0].id.as_str(), out.tool_calls[0].name.as_str()), ("call_9", "read_file"));
    assert_eq!(out.tool_calls[0].arguments, json!({"path": "a.txt"}));
    assert_eq!((out.usage.input, out.usage.output, out.usage.cached), (50, 7, 20));
    assert_eq!((out.model.as_str(), out.stop_reason.as_str()), ("m-1-2026", "tool_calls"));
    let seen = f.seen.lock().unwrap();
    let (headers, body, _) = &seen.requests[0];
    assert_eq!(headers["authorization"], "Bearer sk-test-key");
    assert_eq!(body["model"], "m-1");
    assert_eq!(body["tool_choice"], "required");
    assert_eq!(body["tools"][0]["type"], "function");
    assert_eq!(body["tools"][0]["function"]["name"], "read_file");
    assert_eq!(body["messages"][0], json!({"role": "system", "content": "be brief"}));
    assert_eq!(body["messages"][2]["tool_calls"][0]["function"]["arguments"], "{}", "arguments travel as a JSON string");
    assert_eq!(body["messages"][3], json!({"role": "tool", "tool_call_id": "c0", "content": "a.txt"}));
    assert!(body.get("stream").is_none());
    assert_eq!(body["max_tokens"], 100, "compatible servers get max_tokens");
    assert!(body.get("max_completion_tokens").is_none());
}

#[tokio::test]
async fn openai_switches_the_output_limit_field_when_the_server_refuses_it() {
    let refusal = |field: &str, other: &str| {
        Reply {
        status: 400,
        headers: vec![],
        body: json!({"error": {"message": format!("Unsupported parameter: '{field}' is not supported with this model. Use '{other}' instead."),
            "type": "invalid_request_error", "param": field, "code": "unsupported_parameter"}})
        .to_string(),
        sse: false,
    }
    };
    let f = fake(vec![refusal("max_tokens", "max_completion_tokens"), answer("one"), answer("two")]).await;
    let p = openai(&f.url);
    assert_eq!(call(&p, &req(false)).await.0.unwrap().content, "one");
    assert_eq!(call(&p, &req(false)).await.0.unwrap().content, "two");
    {
        let seen = f.seen.lock().unwrap();
        let bodies: Vec<&Value> = seen.requests.iter().map(|r| &r.1).collect();
        assert_eq!(bodies.len(), 3);
        assert_eq!(bodies[0]["max_tokens"], 100);
        for b in &bodies[1..] {
            assert_eq!(b["max_completion_tokens"], 100, "retried, then remembered: {b}");
            assert!(b.get("max_tokens").is_none());
        }
    }
    // A server that refuses both names: one switch, then the error, not a loop.
    let f = fake(vec![refusal("max_tokens", "max_completion_tokens"), refusal("max_completion_tokens", "max_tokens")]).await;
    let err = call(&openai(&f.url), &req(false)).await.0.unwrap_err();
    assert!(!err.is_retryable() && err.to_string().contains("max_completion_tokens"), "{err}");
    assert_eq!(f.seen.lock().unwrap().requests.len(), 2);
    // Another 400 is not mistaken for the field's refusal.
    let f =
        fake(vec![Reply { status: 400, headers: vec![], body: json!({"error": {"message": "context too long"}}).to_string(), sse: false }])
            .await;
    assert!(call(&openai(&f.url), &req(false)).await.0.is_err());
    assert_eq!(f.seen.lock().unwrap().requests.len(), 1);
}

#[tokio::test]
async fn openai_streamed_text_and_fragmented_tool_calls() {
    let chunk = |delta: Value, finish: Value| json!({"id": "c", "object": "chat.completion.chunk", "model": "m-1", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
    let f = fake(vec![sse(
        &[
            (None, chunk(json!({"role": "assistant", "content": "Look"}), Value::Null)),
            (None, chunk(json!({"content": "ing."}), Value::Null)),
            (None, chunk(json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "read_file", "arguments": ""}}]}), Value::Null)),
            (None, chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"pa"}}]}), Value::Null)),
            (None, chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "th\":\"b.md\"}"}}]}), Value::Null)),
            (None, chunk(json!({}), json!("tool_calls"))),
            (None, json!({"id": "c", "object": "chat.completion.chunk", "model": "m-1", "choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 5}})),
        ],
        true,
    )])
    .await;
    let (out, deltas) = call(&openai(&f.url), &req(true)).await;
    let out = out.unwrap();
    assert_eq!(out.content, "Looking.");
    assert_eq!(out.tool_calls[0].arguments, json!({"path": "b.md"}));
    assert_eq!((out.usage.input, out.usage.output), (12, 5));
    assert_eq!(deltas, vec![Delta::Text("Look".into()), Delta::Text("ing.".into()), Delta::ToolStart { name: "read_file".into() }]);
    let seen = f.seen.lock().unwrap();
    assert_eq!(seen.requests[0].1["stream"], true);
    assert_eq!(seen.requests[0].1["stream_options"]["include_usage"], true);
}

#[tokio::test]
async fn anthropic_request_shape_and_tool_use_reply() {
    let f = fake(vec![ok_json(json!({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-x",
        "content": [{"type": "text", "text": "Reading."}, {"type": "tool_use", "id": "toolu_1", "name": "read_file", "input": {"path": "a.txt"}}],
        "stop_reason": "tool_use", "usage": {"input_tokens": 30, "output_tokens": 9, "cache_read_input_tokens": 100, "cache_creation_input_tokens": 0}
    }))])
    .await;
    let (out, _) = call(&anthropic(&f.url), &req(false)).await;
    let out = out.unwrap();
    assert_eq!(out.content, "Reading.");
    assert_eq!(out.tool_calls[0].id, "toolu_1");
    assert_eq!(out.tool_calls[0].arguments, json!({"path": "a.txt"}));
    assert_eq!((out.usage.input, out.usage.output, out.usage.cached), (130, 9, 100));
    let seen = f.seen.lock().unwrap();
    let (headers, body, _) = &seen.requests[0];
    assert_eq!(headers["x-api-key"], "ak-test-key");
    assert_eq!(headers["anthropic-version"], "2023-06-01");
    assert_eq!(body["system"], "be brief");
    assert_eq!(body["tool_choice"], json!({"type": "any"}));
    assert_eq!(body["tools"][0]["input_schema"], json!({"type": "object"}));
    let msgs = body["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 3, "user, assistant (tool_use), user (tool_result): {msgs:?}");
    assert_eq!(msgs[1]["content"][0]["type"], "tool_use");
    assert_eq!(msgs[2]["content"][0], json!({"type": "tool_result", "tool_use_id": "c0", "content": "a.txt", "is_error": false}));
}

#[tokio::test]
async fn anthropic_stream_with_input_json_deltas() {
    let f = fake(vec![sse(
        &[
            (Some("message_start"), json!({"type": "message_start", "message": {"id": "m", "model": "claude-x", "usage": {"input_tokens": 21, "output_tokens": 1}}})),
            (Some("content_block_start"), json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})),
            (Some("ping"), json!({"type": "ping"})),
            (Some("content_block_delta"), json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hi"}})),
            (Some("content_block_stop"), json!({"type": "content_block_stop", "index": 0})),
            (Some("content_block_start"), json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_2", "name": "list_dir", "input": {}}})),
            (Some("content_block_delta"), json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"path\": "}})),
            (Some("content_block_delta"), json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"src\"}"}})),
            (Some("content_block_stop"), json!({"type": "content_block_stop", "index": 1})),
            (Some("message_delta"), json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 15}})),
            (Some("message_stop"), json!({"type": "message_stop"})),
        ],
        false,
    )])
    .await;
    let (out, deltas) = call(&anthropic(&f.url), &req(true)).await;
    let out = out.unwrap();
    assert_eq!(out.content, "Hi");
    assert_eq!(out.tool_calls[0].arguments, json!({"path": "src"}));
    assert_eq!((out.usage.input, out.usage.output, out.stop_reason.as_str()), (21, 15, "tool_use"));
    assert_eq!(deltas[0], Delta::Text("Hi".into()));
}

#[tokio::test]
async fn malformed_and_truncated_replies_are_errors_not_answers() {
    let f = fake(vec![
        Reply { status: 200, headers: vec![], body: "<html>gateway</html>".into(), sse: false },
        ok_json(json!({"choices": []})),
        sse(&[(None, json!({"choices": [{"index": 0, "delta": {"content": "half"}, "finish_reason": null}]}))], false),
        Reply { status: 401, headers: vec![], body: json!({"error": {"message": "bad key"}}).to_string(), sse: false },
    ])
    .await;
    let p = openai(&f.url);
    let e = call(&p, &req(false)).await.0.unwrap_err();
    assert!(matches!(&e, ProviderError::Fatal(m) if m.contains("not JSON")), "{e:?}");
    let e = call(&p, &req(false)).await.0.unwrap_err();
    assert!(matches!(&e, ProviderError::Fatal(m) if m.contains("no choices")), "{e:?}");
    let e = call(&p, &req(true)).await.0.unwrap_err();
    assert!(e.is_retryable(), "a stream cut short may be retried: {e:?}");
    let e = call(&p, &req(false)).await.0.unwrap_err();
    assert!(matches!(&e, ProviderError::Fatal(m) if m.contains("401") && m.contains("bad key") && !m.contains("sk-test-key")), "{e:?}");
}

fn answer(text: &str) -> Reply {
    ok_json(
        json!({"model": "m-1", "choices": [{"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": text}}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}),
    )
}

#[tokio::test]
async fn rate_limits_honour_retry_after_and_server_errors_are_retried() {
    let f = fake(vec![
        Reply {
            status: 429,
            headers: vec![("retry-after", "1".into())],
            body: json!({"error": {"message": "slow down"}}).to_string(),
            sse: false,
        },
        Reply { status: 500, headers: vec![], body: "oops".into(), sse: false },
        answer("finally"),
    ])
    .await;
    let route = Route {
        provider: openai(&f.url),
        model: "m-1".into(),
        retry: RetryPolicy { max_retries: 3, base: Duration::from_millis(10), max_delay: Duration::from_secs(5) },
        breaker: Default::default(),
    };
    let (out, idx, failures) = call_with_fallback(&[route], &mut req(false), &mut |_| {}).await.unwrap();
    assert_eq!((out.content.as_str(), idx, failures.len()), ("finally", 0, 2));
    let seen = f.seen.lock().unwrap();
    let gap = seen.requests[1].2 - seen.requests[0].2;
    assert!(gap >= Duration::from_millis(950), "the second call waited for Retry-After: {gap:?}");
    assert!(seen.requests[2].2 - seen.requests[1].2 < Duration::from_millis(900), "a 500 without Retry-After backs off briefly");
}

#[tokio::test]
async fn the_fallback_chain_answers_when_the_first_provider_fails() {
    let a = fake(vec![Reply { status: 401, headers: vec![], body: "{}".into(), sse: false }]).await;
    let b = fake(vec![ok_json(json!({"model": "claude-x", "content": [{"type": "text", "text": "from b"}], "stop_reason": "end_turn", "usage": {"input_tokens": 1, "output_tokens": 1}}))]).await;
    let routes = vec![
        Route {
            provider: openai(&a.url),
            model: "m-1".into(),
            retry: RetryPolicy { max_retries: 3, ..RetryPolicy::default() },
            breaker: Default::default(),
        },
        Route { provider: anthropic(&b.url), model: "claude-x".into(), retry: RetryPolicy::default(), breaker: Default::default() },
    ];
    let (out, idx, failures) = call_with_fallback(&routes, &mut req(false), &mut |_| {}).await.unwrap();
    assert_eq!((out.content.as_str(), idx), ("from b", 1));
    assert_eq!(failures.len(), 1, "a 401 is not retried on the same provider");
    assert_eq!(b.seen.lock().unwrap().requests[0].1["model"], "claude-x");
    // Every provider failing returns the last error with the whole history.
    let c = fake(vec![Reply { status: 400, headers: vec![], body: "{}".into(), sse: false }]).await;
    let routes = vec![Route { provider: openai(&c.url), model: "m".into(), retry: RetryPolicy::default(), breaker: Default::default() }];
    let (e, hist) = call_with_fallback(&routes, &mut req(false), &mut |_| {}).await.unwrap_err();
    assert!(!e.is_retryable() && hist.len() == 1);
}

#[tokio::test]
async fn a_provider_that_keeps_failing_is_skipped_until_its_cool_down_ends() {
    let down = || Reply { status: 503, headers: vec![], body: "overloaded".into(), sse: false };
    let a = fake((0..20).map(|_| down()).collect()).await;
    let b = fake((0..20).map(|_| answer("from b")).collect()).await;
    let breaker = Arc::new(owl_agent::provider::Breaker::new(2, Duration::from_millis(400)));
    let no_retry = RetryPolicy { max_retries: 0, ..RetryPolicy::default() };
    let routes = vec![
        Route { provider: openai(&a.url), model: "m".into(), retry: no_retry, breaker: breaker.clone() },
        Route { provider: openai(&b.url), model: "m".into(), retry: no_retry, breaker: Default::default() },
    ];
    for _ in 0..2 {
        let (out, idx, _) = call_with_fallback(&routes, &mut req(false), &mut |_| {}).await.unwrap();
        assert_eq!((out.content.as_str(), idx), ("from b", 1));
    }
    assert_eq!(a.seen.lock().unwrap().requests.len(), 2);
    assert!(breaker.status().open_for.is_some(), "two failures in a row open it");
    // Open: the failing provider is not called at all; the fallback answers.
    for _ in 0..3 {
        let (_, idx, failures) = call_with_fallback(&routes, &mut req(false), &mut |_| {}).await.unwrap();
        assert_eq!(idx, 1);
        assert!(failures[0].error.contains("skipped for") && failures[0].error.contains("overloaded"), "{failures:?}");
    }
    assert_eq!(a.seen.lock().unwrap().requests.len(), 2, "no calls while open");
    // After the cool-down one trial call goes; it fails again, so it reopens for longer.
    tokio::time::sleep(Duration::from_millis(450)).await;
    call_with_fallback(&routes, &mut req(false), &mut |_| {}).await.unwrap();
    assert_eq!(a.seen.lock().unwrap().requests.len(), 3, "one trial");
    let open = breaker.status().open_for.unwrap();
    assert!(open > Duration::from_millis(450), "doubled: {open:?}");
    call_with_fallback(&routes, &mut req(false), &mut |_| {}).await.unwrap();
    assert_eq!(a.seen.lock().unwrap().requests.len(), 3);
    // Calls that were in flight when it opened do not push it further out.
    let b = owl_agent::provider::Breaker::new(2, Duration::from_secs(60));
    b.failed("down");
    b.failed("down");
    let first = b.status().open_for.unwrap();
    for _ in 0..10 {
        b.failed("in flight");
    }
    assert!(b.status().open_for.unwrap() <= first, "still about a minute, not ten");
    // A trial that gets any answer (even a refusal) shows the provider is up.
    let refuse = fake(vec![Reply { status: 400, headers: vec![], body: "{}".into(), sse: false }]).await;
    let trial = Arc::new(owl_agent::provider::Breaker::new(1, Duration::from_millis(50)));
    trial.failed("down");
    tokio::time::sleep(Duration::from_millis(60)).await;
    let one = vec![Route { provider: openai(&refuse.url), model: "m".into(), retry: RetryPolicy::default(), breaker: trial.clone() }];
    assert!(call_with_fallback(&one, &mut req(false), &mut |_| {}).await.is_err());
    assert_eq!(trial.status().open_for, None, "closed by the answer");
    // A success closes it.
    breaker.succeeded();
    assert_eq!(breaker.status(), owl_agent::provider::BreakerStatus { open_for: None, failures: 0, last_error: None });
}
