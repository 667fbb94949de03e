//! The embedded provider with the real gemma-3-270m model (fetched by scripts/fetch-models).
#![cfg(feature = "local")]

use owl_agent::msg::{ChatRequest, Message};
use owl_agent::provider::Provider;

pub fn model_path() -> std::path::PathBuf {
    let dir = std::env::var_os("OWL_MODEL_DIR").map(std::path::PathBuf::from).unwrap_or_else(|| {
        let cache = std::env::var_os("XDG_CACHE_HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| std::path::PathBuf::from(std::env::var("HOME").unwrap()).join(".cache"));
        cache.join("owl/models")
    });
    let p = dir.join("gemma-3-270m-q4_k_m.gguf");
    assert!(p.is_file(), "{} is missing: run scripts/fetch-models gemma", p.display());
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gemma_emits_a_well_formed_tool_call_under_the_grammar_then_answers() {
    // A short keep-alive, to see the model unloaded when idle and loaded again on demand.
    let keep_alive = std::time::Duration::from_millis(300);
    let p = owl_agent::local::Local::new("local", model_path().to_str().unwrap(), 2, 4096, keep_alive).unwrap();
    assert!(!p.is_loaded().await, "nothing is loaded before the first call");
    let mut req = ChatRequest {
        model: String::new(),
        messages: vec![
            Message::System { content: "You are a helpful agent.".into() },
            Message::User { content: "Read the file notes.txt and tell me what it says.".into() },
        ],
        tools: owl_agent::tools::specs(&["read_file".into(), "list_dir".into()]),
        max_output_tokens: 128,
        temperature: Some(0.0),
        require_tool: true,
        forbid_tools: false,
        stream: false,
    };
    let out = p.chat(&req, &mut |_| {}).await.unwrap();
    assert_eq!(out.tool_calls.len(), 1, "{out:?}");
    let call = &out.tool_calls[0];
    assert!(call.name == "read_file" || call.name == "list_dir", "{call:?}");
    if call.name == "read_file" {
        assert!(call.arguments["path"].is_string(), "{call:?}");
    }
    assert!(out.usage.input > 20 && out.usage.output > 3, "{:?}", out.usage);
    // Next turn: free to answer.
    req.messages.push(Message::Assistant { content: String::new(), tool_calls: out.tool_calls.clone() });
    req.messages.push(Message::Tool { call_id: call.id.clone(), name: call.name.clone(), content: "Buy milk.".into(), is_error: false });
    req.require_tool = false;
    let mut streamed = String::new();
    req.stream = true;
    let out2 = p
        .chat(&req, &mut |d| {
            if let owl_agent::msg::Delta::Text(t) = d {
                streamed.push_str(&t)
            }
        })
        .await
        .unwrap();
    assert!(out2.tool_calls.len() == 1 || !out2.content.is_empty(), "{out2:?}");
    assert!(
        serde_json::from_str::<serde_json::Value>(owl_agent::local::unfence(&streamed)).is_ok(),
        "the streamed text is the constrained JSON: {streamed}"
    );
    assert!(p.is_loaded().await);
    let t0 = std::time::Instant::now();
    while p.is_loaded().await {
        assert!(t0.elapsed() < std::time::Duration::from_secs(5), "the idle model was never unloaded");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(t0.elapsed() >= std::time::Duration::from_millis(200), "unloaded only after the keep-alive");
    let again = p.chat(&req, &mut |_| {}).await.unwrap();
    assert!(again.tool_calls.len() == 1 || !again.content.is_empty(), "loaded again on demand: {again:?}");
}
