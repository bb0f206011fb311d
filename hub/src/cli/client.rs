//! The CLI's HTTP client for the hub API. Errors name the hub URL and the hub's message.

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::types::ErrorBody;

/// Why a call to the hub failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No connection.
    #[error(
        "cannot reach the hub at {url}: {reason} (is `wasmfleet serve` running? set --hub or WASMFLEET_HUB)"
    )]
    Unreachable {
        /// Hub base URL.
        url: String,
        /// Why.
        reason: String,
    },
    /// The hub answered with an error.
    #[error("{message}")]
    Hub {
        /// HTTP status.
        status: StatusCode,
        /// The hub's message.
        message: String,
    },
}

/// A hub API client.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    http: reqwest::Client,
}

impl Client {
    /// A client for the hub at `base` (e.g. `http://127.0.0.1:8080`).
    pub fn new(base: &str) -> Self {
        Client {
            base: base.trim_end_matches('/').to_owned(),
            http: reqwest::Client::new(),
        }
    }

    /// The hub URL.
    pub fn base(&self) -> &str {
        &self.base
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<reqwest::Body>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some(body) = body {
            req = req.body(body);
        }
        let resp = req.send().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            reason: root_cause(&e),
        })?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let text = resp.text().await.unwrap_or_default();
        let message = serde_json::from_str::<ErrorBody>(&text)
            .map(|b| b.error)
            .unwrap_or(text);
        Err(ClientError::Hub { status, message })
    }

    /// GET a JSON resource.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ClientError> {
        let resp = self.send(Method::GET, path, None).await?;
        resp.json().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        })
    }

    /// PUT a JSON body and read a JSON answer.
    pub async fn put_json<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let bytes = serde_json::to_vec(body).map_err(|e| ClientError::Hub {
            status: StatusCode::BAD_REQUEST,
            message: e.to_string(),
        })?;
        let resp = self.send(Method::PUT, path, Some(bytes.into())).await?;
        resp.json().await.map_err(|e| ClientError::Unreachable {
            url: self.base.clone(),
            reason: e.to_string(),
        })
    }

    /// PUT raw bytes.
    pub async fn put_bytes(&self, path: &str, body: Vec<u8>) -> Result<(), ClientError> {
        self.send(Method::PUT, path, Some(body.into()))
            .await
            .map(|_| ())
    }

    /// HEAD: does the resource exist?
    pub async fn exists(&self, path: &str) -> Result<bool, ClientError> {
        match self.send(Method::HEAD, path, None).await {
            Ok(_) => Ok(true),
            Err(ClientError::Hub {
                status: StatusCode::NOT_FOUND,
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// DELETE.
    pub async fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.send(Method::DELETE, path, None).await.map(|_| ())
    }
}

fn root_cause(e: &dyn std::error::Error) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
