//! The CLI's HTTP client. It finds the daemon through the data dir: the address in
//! daemon.json and the token in the token file.

use anyhow::{anyhow, Result};
use owl_core::layout::DataLayout;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::path::Path;

/// Returned when no daemon answers for the data dir; the CLI exits with code 3.
#[derive(Debug)]
pub struct NotRunning(pub String);

impl std::fmt::Display for NotRunning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotRunning {}

pub struct Client {
    base: String,
    token: String,
    http: reqwest::Client,
}

fn not_running(dir: &Path, detail: &str) -> anyhow::Error {
    let flag = if std::env::var_os("OWL_DATA_DIR").is_some() { String::new() } else { format!(" --data-dir {}", dir.display()) };
    anyhow!(NotRunning(format!("the owl daemon is not running for data dir {}{detail}.\nStart it with: owl{flag} daemon", dir.display())))
}

impl Client {
    pub fn connect(data_dir: &Path) -> Result<Client> {
        let layout = DataLayout::new(data_dir);
        let info = crate::daemon::read_info(&layout).ok_or_else(|| not_running(data_dir, ""))?;
        let token = std::fs::read_to_string(layout.token_file())
            .map_err(|e| anyhow!("cannot read the API token {}: {e}", layout.token_file().display()))?
            .trim()
            .to_string();
        let http = reqwest::Client::builder().connect_timeout(std::time::Duration::from_secs(3)).build()?;
        Ok(Client { base: format!("http://{}", info.listen), token, http })
    }

    fn map_send_error(&self, e: reqwest::Error) -> anyhow::Error {
        if e.is_connect() {
            anyhow!(NotRunning(format!(
                "the owl daemon recorded at {} does not answer (it may have crashed; daemon.json is stale).\nStart it with: owl daemon",
                self.base
            )))
        } else {
            anyhow!("request to the owl daemon failed: {e}")
        }
    }

    pub async fn request(&self, method: reqwest::Method, path: &str, body: Option<&impl Serialize>) -> Result<reqwest::Response> {
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(|e| self.map_send_error(e))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        match serde_json::from_str::<owl_api::ErrorBody>(&text) {
            Ok(b) => Err(anyhow!("{}", b.describe())),
            Err(_) => Err(anyhow!("the daemon answered {status}: {text}")),
        }
    }

    /// Any call, whatever its status: the status and the body as text.
    pub async fn raw(&self, method: &str, path: &str, body: Option<serde_json::Value>) -> Result<(u16, String)> {
        let method = reqwest::Method::from_bytes(method.as_bytes())?;
        let mut req = self.http.request(method, format!("{}{path}", self.base)).bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.map_err(|e| self.map_send_error(e))?;
        let status = resp.status().as_u16();
        Ok((status, resp.text().await?))
    }

    /// A GET whose error statuses carry a body worth reading (the health probes answer 503).
    pub async fn get_any<T: DeserializeOwned>(&self, path: &str) -> Result<(reqwest::StatusCode, T)> {
        let resp =
            self.http.get(format!("{}{path}", self.base)).bearer_auth(&self.token).send().await.map_err(|e| self.map_send_error(e))?;
        let status = resp.status();
        Ok((status, resp.json().await?))
    }

    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T> {
        Ok(self.request(reqwest::Method::GET, path, None::<&()>).await?.json().await?)
    }

    pub async fn post<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        Ok(self.request(reqwest::Method::POST, path, Some(body)).await?.json().await?)
    }

    pub async fn put<T: DeserializeOwned>(&self, path: &str, body: &impl Serialize) -> Result<T> {
        Ok(self.request(reqwest::Method::PUT, path, Some(body)).await?.json().await?)
    }
}
