//! [`AdminClient`]: bearer-token JSON calls to one sluice server.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::{ClientError, server_url};

/// A server's answer, whatever its status (see [`AdminClient::send`]).
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    /// The body as JSON; `Null` when empty, a JSON string when it is not JSON.
    pub body: Value,
}

impl Answer {
    /// The error answer's `detail` (SPEC: every error is `{"error","detail"}`), else the body.
    pub fn detail(&self) -> String {
        match self.body.get("detail").and_then(Value::as_str) {
            Some(d) => d.to_owned(),
            None => match &self.body {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            },
        }
    }
}

/// A client for one sluice server's admin API, authenticated with its admin token.
#[derive(Debug, Clone)]
pub struct AdminClient {
    base: url::Url,
    token: String,
    http: reqwest::Client,
}

impl AdminClient {
    /// A client for `server` (see [`server_url`]: `localhost:8080` means
    /// `http://localhost:8080`). Connecting gives up after 10 s and a stalled answer after
    /// 300 s; there is no limit on the whole call, so a long export still ends.
    pub fn new(server: &str, token: impl Into<String>) -> Result<AdminClient, ClientError> {
        crate::install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(Duration::from_secs(300))
            .build()
            .map_err(ClientError::Build)?;
        AdminClient::with_http(server, token, http)
    }

    /// [`AdminClient::new`] with a caller's token, if it has one.
    pub fn from_args(server: &str, token: Option<&str>) -> Result<AdminClient, ClientError> {
        AdminClient::new(server, token.ok_or(ClientError::MissingToken)?)
    }

    /// A client that sends with `http` (its timeouts, its pool).
    pub fn with_http(
        server: &str,
        token: impl Into<String>,
        http: reqwest::Client,
    ) -> Result<AdminClient, ClientError> {
        Ok(AdminClient {
            base: server_url(server)?,
            token: token.into(),
            http,
        })
    }

    /// The server's base URL (no trailing `/` unless it is just the host).
    pub fn base(&self) -> &url::Url {
        &self.base
    }

    /// The admin token sent as the bearer.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// The underlying HTTP client.
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `path` (starting with `/`) on this server, as a string.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base.as_str().trim_end_matches('/'))
    }

    /// The base URL with `segments` appended, each percent-encoded (for ids in paths).
    pub fn url_of(&self, segments: &[&str]) -> url::Url {
        let mut url = self.base.clone();
        if let Ok(mut s) = url.path_segments_mut() {
            s.pop_if_empty().extend(segments);
        }
        url
    }

    /// One call, answered with any status. An error only when there is no answer.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ClientError> {
        self.send_to(method, self.url(path), path, body).await
    }

    /// One call; a status other than 2xx is [`ClientError::Status`].
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ClientError> {
        let answer = self.send(method.clone(), path, body).await?;
        ok_or_status(method, path, answer)
    }

    /// `GET path`, 2xx expected.
    pub async fn get(&self, path: &str) -> Result<Value, ClientError> {
        self.call(Method::GET, path, None).await
    }

    /// `POST path` with a JSON body, 2xx expected.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        self.call(Method::POST, path, Some(body)).await
    }

    /// `DELETE path`, 2xx expected.
    pub async fn delete(&self, path: &str) -> Result<Value, ClientError> {
        self.call(Method::DELETE, path, None).await
    }

    /// `GET url` (on this server) with the admin token, answered 2xx; the response is
    /// returned unread so that a large body (an export) can be streamed.
    pub async fn get_streamed(
        &self,
        url: url::Url,
        headers: reqwest::header::HeaderMap,
    ) -> Result<reqwest::Response, ClientError> {
        let path = url.path().to_owned();
        let resp = self
            .http
            .get(url)
            .headers(headers)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|source| self.unreachable(Method::GET, &path, source))?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        let status = resp.status();
        let text = resp.text().await.unwrap_or_default();
        Err(status_error(Method::GET, &path, answer(status, text)))
    }

    async fn send_to(
        &self,
        method: Method,
        url: String,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ClientError> {
        let mut req = self
            .http
            .request(method.clone(), url)
            .bearer_auth(&self.token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req
            .send()
            .await
            .map_err(|source| self.unreachable(method.clone(), path, source))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|source| self.unreachable(method, path, source))?;
        Ok(answer(status, text))
    }

    fn unreachable(&self, method: Method, path: &str, source: reqwest::Error) -> ClientError {
        ClientError::Unreachable {
            server: self.base.to_string(),
            method,
            path: path.to_owned(),
            source,
        }
    }
}

/// Typed calls, one per admin operation the tools use (SPEC §4).
impl AdminClient {
    /// `GET /v1/environments`.
    pub async fn environments(&self) -> Result<Value, ClientError> {
        self.get("/v1/environments").await
    }

    /// `POST /v1/environments`.
    pub async fn create_environment(&self, body: &Value) -> Result<Value, ClientError> {
        self.post("/v1/environments", body).await
    }

    /// `DELETE /v1/environments/{id}` (and its stored impressions).
    pub async fn delete_environment(&self, id: &str) -> Result<Value, ClientError> {
        self.delete(&path(&["v1", "environments", id])).await
    }

    /// `GET /v1/environments/{id}`.
    pub async fn environment(&self, id: &str) -> Result<Value, ClientError> {
        self.get(&path(&["v1", "environments", id])).await
    }

    /// `PATCH /v1/environments/{id}`: a JSON merge patch (only the members given change).
    pub async fn patch_environment(&self, id: &str, patch: &Value) -> Result<Value, ClientError> {
        self.call(
            Method::PATCH,
            &path(&["v1", "environments", id]),
            Some(patch),
        )
        .await
    }

    /// `GET /v1/alert-destinations` (secrets redacted).
    pub async fn alert_destinations(&self) -> Result<Value, ClientError> {
        self.get("/v1/alert-destinations").await
    }

    /// `GET /v1/alert-destinations/{id}` (the secret redacted).
    pub async fn alert_destination(&self, id: &str) -> Result<Value, ClientError> {
        self.get(&path(&["v1", "alert-destinations", id])).await
    }

    /// `GET /v1/alert-destinations/{id}/status`.
    pub async fn alert_destination_status(&self, id: &str) -> Result<Value, ClientError> {
        self.get(&path(&["v1", "alert-destinations", id, "status"]))
            .await
    }

    /// `POST /v1/alert-destinations`.
    pub async fn create_alert_destination(&self, body: &Value) -> Result<Value, ClientError> {
        self.post("/v1/alert-destinations", body).await
    }

    /// `PATCH /v1/alert-destinations/{id}`: a JSON merge patch.
    pub async fn patch_alert_destination(
        &self,
        id: &str,
        patch: &Value,
    ) -> Result<Value, ClientError> {
        self.call(
            Method::PATCH,
            &path(&["v1", "alert-destinations", id]),
            Some(patch),
        )
        .await
    }

    /// `DELETE /v1/alert-destinations/{id}` (and the events waiting for it).
    pub async fn delete_alert_destination(&self, id: &str) -> Result<Value, ClientError> {
        self.delete(&path(&["v1", "alert-destinations", id])).await
    }

    /// `GET /v1/integrations/{id}` (the secret redacted).
    pub async fn integration(&self, id: &str) -> Result<Value, ClientError> {
        self.get(&path(&["v1", "integrations", id])).await
    }

    /// `PATCH /v1/integrations/{id}`: a JSON merge patch (only the members given change).
    pub async fn patch_integration(&self, id: &str, patch: &Value) -> Result<Value, ClientError> {
        self.call(
            Method::PATCH,
            &path(&["v1", "integrations", id]),
            Some(patch),
        )
        .await
    }

    /// `POST /v1/integrations/{id}/replay` with `{"gapId"}` or `{"from","to"}`: the job.
    pub async fn replay(&self, id: &str, body: &Value) -> Result<Value, ClientError> {
        self.post(&path(&["v1", "integrations", id, "replay"]), body)
            .await
    }

    /// `GET /v1/integrations/{id}/replays`.
    pub async fn replays(&self, id: &str) -> Result<Value, ClientError> {
        self.get(&path(&["v1", "integrations", id, "replays"]))
            .await
    }

    /// `GET /v1/integrations`.
    pub async fn integrations(&self) -> Result<Value, ClientError> {
        self.get("/v1/integrations").await
    }

    /// `POST /v1/integrations`.
    pub async fn create_integration(&self, body: &Value) -> Result<Value, ClientError> {
        self.post("/v1/integrations", body).await
    }

    /// `POST /v1/integrations/bulk` with `{"integrations": items}` (at most 1000): the
    /// answer holds one result per item (`created`, `failed`, `results[].status`); a 2xx
    /// answer does not mean every item was created.
    pub async fn create_integrations(&self, items: &[Value]) -> Result<Value, ClientError> {
        self.post(
            "/v1/integrations/bulk",
            &serde_json::json!({ "integrations": items }),
        )
        .await
    }

    /// `DELETE /v1/integrations/{id}`.
    pub async fn delete_integration(&self, id: &str) -> Result<Value, ClientError> {
        self.delete(&path(&["v1", "integrations", id])).await
    }

    /// `GET /v1/integrations/{id}/status`.
    pub async fn integration_status(&self, id: &str) -> Result<Value, ClientError> {
        self.get(&path(&["v1", "integrations", id, "status"])).await
    }

    /// `GET /v1/integrations/{id}/attempts`.
    pub async fn attempts(&self, id: &str) -> Result<Value, ClientError> {
        self.get(&path(&["v1", "integrations", id, "attempts"]))
            .await
    }

    /// `GET /v1/integrations/{id}/gaps`.
    pub async fn gaps(&self, id: &str) -> Result<Value, ClientError> {
        self.get(&path(&["v1", "integrations", id, "gaps"])).await
    }

    /// `POST /v1/integrations/{id}/pause`.
    pub async fn pause(&self, id: &str) -> Result<Value, ClientError> {
        self.call(
            Method::POST,
            &path(&["v1", "integrations", id, "pause"]),
            None,
        )
        .await
    }

    /// `POST /v1/integrations/{id}/resume`.
    pub async fn resume(&self, id: &str) -> Result<Value, ClientError> {
        self.call(
            Method::POST,
            &path(&["v1", "integrations", id, "resume"]),
            None,
        )
        .await
    }

    /// `POST /v1/integrations/{id}/test`: one sample batch; the endpoint's answer.
    pub async fn test_integration(&self, id: &str) -> Result<Value, ClientError> {
        self.call(
            Method::POST,
            &path(&["v1", "integrations", id, "test"]),
            None,
        )
        .await
    }
}

/// `/a/b/c` with each segment percent-encoded.
fn path(segments: &[&str]) -> String {
    let Ok(mut url) = url::Url::parse("http://h/") else {
        return format!("/{}", segments.join("/"));
    };
    if let Ok(mut s) = url.path_segments_mut() {
        s.pop_if_empty().extend(segments);
    }
    url.path().to_owned()
}

fn answer(status: StatusCode, text: String) -> Answer {
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Answer { status, body }
}

fn ok_or_status(method: Method, path: &str, answer: Answer) -> Result<Value, ClientError> {
    if answer.status.is_success() {
        Ok(answer.body)
    } else {
        Err(status_error(method, path, answer))
    }
}

fn status_error(method: Method, path: &str, answer: Answer) -> ClientError {
    ClientError::Status {
        method,
        path: path.to_owned(),
        status: answer.status,
        detail: answer.detail(),
        body: answer.body,
    }
}
