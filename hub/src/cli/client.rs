//! The CLI's HTTP client for the hub API. Errors name the hub URL and the hub's message.
//!
//! Paths are built from segments with [`path`], which percent-encodes each one, so a name
//! typed by a user can never change which resource a request reaches. Every request has a
//! connect timeout and a read timeout: a hub that accepts a connection and then says nothing
//! gets a clear error instead of a hung terminal.

use std::time::Duration;

use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::api::types::ErrorBody;

/// Characters escaped in a path segment or query value: everything but unreserved ones.
const COMPONENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b'/')
    .add(b':')
    .add(b';')
    .add(b'<')
    .add(b'=')
    .add(b'>')
    .add(b'?')
    .add(b'@')
    .add(b'[')
    .add(b'\\')
    .add(b']')
    .add(b'^')
    .add(b'`')
    .add(b'{')
    .add(b'|')
    .add(b'}');

/// `/seg1/seg2…` with every segment percent-encoded.
pub fn path(segments: &[&str]) -> String {
    segments
        .iter()
        .map(|s| format!("/{}", utf8_percent_encode(s, COMPONENT)))
        .collect()
}

/// `path?k1=v1&k2=v2` with every value percent-encoded.
pub fn with_query(path: &str, query: &[(&str, &str)]) -> String {
    let mut out = path.to_owned();
    for (i, (k, v)) in query.iter().enumerate() {
        out.push(if i == 0 { '?' } else { '&' });
        out.push_str(k);
        out.push('=');
        out.push_str(&utf8_percent_encode(v, COMPONENT).to_string());
    }
    out
}

/// How long the CLI waits to connect to the hub.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

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
    /// Connected, but no answer in time.
    #[error(
        "the hub at {url} did not answer within {secs}s (raise --request-timeout if it is busy)"
    )]
    Timeout {
        /// Hub base URL.
        url: String,
        /// The timeout.
        secs: u64,
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
    timeout: Duration,
}

impl Client {
    /// A client for the hub at `base` (e.g. `http://127.0.0.1:8080`) that waits at most
    /// `timeout` for any answer.
    pub fn new(base: &str, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(timeout)
            .build()
            .unwrap_or_default();
        Client {
            base: base.trim_end_matches('/').to_owned(),
            http,
            timeout,
        }
    }

    fn failed(&self, e: &reqwest::Error) -> ClientError {
        if e.is_timeout() && !e.is_connect() {
            return ClientError::Timeout {
                url: self.base.clone(),
                secs: self.timeout.as_secs(),
            };
        }
        ClientError::Unreachable {
            url: self.base.clone(),
            reason: root_cause(e),
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
        body: Option<(reqwest::Body, &'static str)>,
    ) -> Result<reqwest::Response, ClientError> {
        let url = format!("{}{path}", self.base);
        let mut req = self.http.request(method, &url);
        if let Some((body, content_type)) = body {
            req = req
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body);
        }
        let resp = req.send().await.map_err(|e| self.failed(&e))?;
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
        resp.json().await.map_err(|e| self.failed(&e))
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
        let resp = self
            .send(Method::PUT, path, Some((bytes.into(), "application/json")))
            .await?;
        resp.json().await.map_err(|e| self.failed(&e))
    }

    /// PUT raw bytes.
    pub async fn put_bytes(&self, path: &str, body: Vec<u8>) -> Result<(), ClientError> {
        self.send(
            Method::PUT,
            path,
            Some((body.into(), "application/octet-stream")),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_escape_their_segment() {
        assert_eq!(
            path(&["v1", "deployments", "hello"]),
            "/v1/deployments/hello"
        );
        assert_eq!(
            path(&["v1", "deployments", "../blobs/x?y#z"]),
            "/v1/deployments/..%2Fblobs%2Fx%3Fy%23z"
        );
        assert_eq!(
            with_query("/v1/events", &[("kind", "Node"), ("name", "a&limit=1")]),
            "/v1/events?kind=Node&name=a%26limit%3D1"
        );
    }

    #[tokio::test]
    async fn a_silent_hub_times_out_with_a_clear_message() {
        // Accepts connections and never answers.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let client = Client::new(&url, Duration::from_millis(300));
        let err = client
            .get::<serde_json::Value>("/v1/nodes")
            .await
            .unwrap_err();
        assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
        assert!(err.to_string().contains("did not answer"), "{err}");
        drop(listener);
        let err = client
            .get::<serde_json::Value>("/v1/nodes")
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with("cannot reach the hub at"),
            "{err}"
        );
    }
}
