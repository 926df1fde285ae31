//! Admin objects (SPEC §1): projects, environments, integrations, with their validation.
//! JSON is camelCase, as the admin API speaks it.

use crate::error::ValidationError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const DEFAULT_PROJECT: &str = "default";
pub const DEFAULT_FLUSH_INTERVAL_MS: u64 = 10_000;
pub const DEFAULT_MAX_BATCH_IMPRESSIONS: u32 = 5_000;
pub const DEFAULT_MAX_BACKLOG_AGE_MS: u64 = 24 * 3600 * 1000;
/// Shown instead of a webhook secret in admin responses; sending it back keeps the secret.
pub const REDACTED: &str = "********";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Project {
    pub id: String,
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Environment {
    pub id: String,
    pub name: String,
    #[serde(default = "default_project")]
    pub project: String,
    #[serde(default)]
    pub sdk_keys: Vec<String>,
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Json,
    Slack,
    Fivetran,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct Integration {
    pub id: String,
    pub name: String,
    #[serde(default = "default_project")]
    pub project: String,
    pub url: String,
    pub environments: Vec<String>,
    /// `None`: detected from the URL host (see [`Integration::effective_format`]).
    #[serde(default)]
    pub format: Option<Format>,
    /// `None`: gzip unless the format is Slack or Fivetran.
    #[serde(default)]
    pub gzip: Option<bool>,
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    #[serde(default = "default_flush")]
    pub flush_interval_ms: u64,
    #[serde(default = "default_max_batch")]
    pub max_batch_impressions: u32,
    #[serde(default = "default_backlog_age")]
    pub max_backlog_age_ms: u64,
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Requests in flight at most for this integration. Each environment always has at most
    /// one (so impressions of an environment arrive in order); more than 1 lets an
    /// integration of several environments send them concurrently.
    #[serde(default = "default_in_flight")]
    pub max_in_flight: u32,
    /// Delivery protection settings; defaults when absent.
    #[serde(default)]
    pub protection: Protection,
}

/// Delivery protection thresholds (SPEC §3). Defaults are justified in ARCHITECTURE.md.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Protection {
    /// How many recent attempts the failure rate is computed over.
    pub window: u32,
    /// No pause before this many attempts are in the window.
    pub min_attempts: u32,
    /// Pause when failures / attempts in the window reach this percentage.
    pub failure_rate_percent: u32,
    /// First cooldown after a pause.
    pub initial_cooldown_ms: u64,
    /// Cooldowns double after each failed probe, up to this.
    pub max_cooldown_ms: u64,
    /// Connect timeout for one attempt.
    pub connect_timeout_ms: u64,
    /// Total timeout for one attempt (connect, send, answer).
    pub request_timeout_ms: u64,
}

impl Default for Protection {
    fn default() -> Self {
        Protection {
            window: 20,
            min_attempts: 6,
            failure_rate_percent: 50,
            initial_cooldown_ms: 5_000,
            max_cooldown_ms: 300_000,
            connect_timeout_ms: 5_000,
            request_timeout_ms: 15_000,
        }
    }
}

fn default_project() -> String {
    DEFAULT_PROJECT.to_owned()
}
fn default_flush() -> u64 {
    DEFAULT_FLUSH_INTERVAL_MS
}
fn default_max_batch() -> u32 {
    DEFAULT_MAX_BATCH_IMPRESSIONS
}
fn default_backlog_age() -> u64 {
    DEFAULT_MAX_BACKLOG_AGE_MS
}
fn default_in_flight() -> u32 {
    1
}
fn default_true() -> bool {
    true
}

/// Identifiers: 1–64 of `A-Z a-z 0-9 _ - .`, not starting with `.`.
pub fn validate_id(field: &str, id: &str) -> Result<(), ValidationError> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(ValidationError::new(
            field,
            "must be 1-64 characters of A-Z a-z 0-9 _ - . (not starting with .)",
        ))
    }
}

fn validate_name(name: &str) -> Result<(), ValidationError> {
    if name.trim().is_empty() || name.len() > 200 {
        return Err(ValidationError::new("name", "must be 1-200 characters"));
    }
    Ok(())
}

impl Project {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_id("id", &self.id)?;
        validate_name(&self.name)
    }
}

impl Environment {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_id("id", &self.id)?;
        validate_name(&self.name)?;
        validate_id("project", &self.project)?;
        if self.sdk_keys.len() > 100 {
            return Err(ValidationError::new("sdkKeys", "at most 100 keys"));
        }
        for k in &self.sdk_keys {
            if k.len() < 8 || k.len() > 256 || !k.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ValidationError::new(
                    "sdkKeys",
                    "each key must be 8-256 printable ASCII characters",
                ));
            }
        }
        let mut sorted = self.sdk_keys.clone();
        sorted.sort();
        sorted.dedup();
        if sorted.len() != self.sdk_keys.len() {
            return Err(ValidationError::new("sdkKeys", "keys must be distinct"));
        }
        Ok(())
    }
}

/// Header names sluice sets itself; an integration may not override them.
const RESERVED_HEADERS: &[&str] = &[
    "content-type",
    "content-encoding",
    "content-length",
    "host",
    "user-agent",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "transfer-encoding",
    "connection",
];

impl Integration {
    pub fn effective_format(&self) -> Format {
        if let Some(f) = self.format {
            return f;
        }
        let host = url::Url::parse(&self.url)
            .ok()
            .and_then(|u| u.host_str().map(str::to_ascii_lowercase))
            .unwrap_or_default();
        if host == "hooks.slack.com" || host.ends_with(".slack.com") {
            Format::Slack
        } else if host == "fivetran.com" || host.ends_with(".fivetran.com") {
            Format::Fivetran
        } else {
            Format::Json
        }
    }

    pub fn effective_gzip(&self) -> bool {
        self.effective_format() == Format::Json && self.gzip.unwrap_or(true)
    }

    /// Shape checks that need no other object (the API also checks environments exist and
    /// belong to the integration's project, and the URL against the address policy).
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_id("id", &self.id)?;
        validate_name(&self.name)?;
        validate_id("project", &self.project)?;
        if self.url.len() > 2048 {
            return Err(ValidationError::new("url", "longer than 2048 characters"));
        }
        if self.environments.is_empty() || self.environments.len() > 100 {
            return Err(ValidationError::new(
                "environments",
                "must list 1-100 environment ids",
            ));
        }
        for e in &self.environments {
            validate_id("environments", e)?;
        }
        if !(100..=3_600_000).contains(&self.flush_interval_ms) {
            return Err(ValidationError::new(
                "flushIntervalMs",
                "must be 100-3600000",
            ));
        }
        if !(1..=16).contains(&self.max_in_flight) {
            return Err(ValidationError::new("maxInFlight", "must be 1-16"));
        }
        if !(1..=50_000).contains(&self.max_batch_impressions) {
            return Err(ValidationError::new(
                "maxBatchImpressions",
                "must be 1-50000",
            ));
        }
        if self.max_backlog_age_ms < 1_000 {
            return Err(ValidationError::new(
                "maxBacklogAgeMs",
                "must be at least 1000",
            ));
        }
        if let Some(s) = &self.secret
            && (s.is_empty() || s.len() > 256)
        {
            return Err(ValidationError::new("secret", "must be 1-256 characters"));
        }
        if self.headers.len() > 20 {
            return Err(ValidationError::new("headers", "at most 20 custom headers"));
        }
        for (k, v) in &self.headers {
            let name_ok = !k.is_empty()
                && k.len() <= 128
                && k.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
            if !name_ok {
                return Err(ValidationError::new(
                    "headers",
                    format!("{k:?} is not a valid header name"),
                ));
            }
            if RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                return Err(ValidationError::new(
                    "headers",
                    format!("{k} is set by sluice and cannot be overridden"),
                ));
            }
            if v.len() > 1024 || v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(ValidationError::new(
                    "headers",
                    format!("value of {k} must be at most 1024 bytes, without CR/LF"),
                ));
            }
        }
        let p = &self.protection;
        if p.window == 0 || p.window > 1000 || p.min_attempts == 0 || p.min_attempts > p.window {
            return Err(ValidationError::new(
                "protection",
                "window must be 1-1000 and minAttempts 1..=window",
            ));
        }
        if !(1..=100).contains(&p.failure_rate_percent) {
            return Err(ValidationError::new(
                "protection.failureRatePercent",
                "must be 1-100",
            ));
        }
        if p.initial_cooldown_ms == 0 || p.max_cooldown_ms < p.initial_cooldown_ms {
            return Err(ValidationError::new(
                "protection",
                "need 0 < initialCooldownMs <= maxCooldownMs",
            ));
        }
        if p.connect_timeout_ms == 0 || p.request_timeout_ms == 0 || p.request_timeout_ms > 300_000
        {
            return Err(ValidationError::new(
                "protection",
                "timeouts must be 1-300000 ms",
            ));
        }
        Ok(())
    }

    /// A copy safe to show: the secret replaced by [`REDACTED`].
    pub fn redacted(&self) -> Integration {
        let mut c = self.clone();
        if c.secret.is_some() {
            c.secret = Some(REDACTED.to_owned());
        }
        c
    }
}

/// The digest an SDK key is looked up by. Looking keys up by digest means the lookup's
/// timing depends on the digest, not on how much of a secret key a guess got right.
pub fn key_digest(key: &str) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(key.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn integ(url: &str) -> Integration {
        serde_json::from_value(
            serde_json::json!({"id":"i1","name":"n","url":url,"environments":["e1"]}),
        )
        .unwrap()
    }

    #[test]
    fn defaults_apply() {
        let i = integ("https://example.com/hook");
        assert_eq!(i.flush_interval_ms, 10_000);
        assert_eq!(i.max_batch_impressions, 5_000);
        assert_eq!(i.max_backlog_age_ms, 86_400_000);
        assert!(i.enabled);
        assert_eq!(i.project, "default");
        assert!(i.validate().is_ok());
    }

    #[test]
    fn gzip_rules() {
        assert!(integ("https://example.com/hook").effective_gzip());
        assert_eq!(
            integ("https://hooks.slack.com/services/x").effective_format(),
            Format::Slack
        );
        assert!(!integ("https://hooks.slack.com/services/x").effective_gzip());
        assert!(!integ("https://webhooks.fivetran.com/webhooks/v1/x").effective_gzip());
        let mut i = integ("https://example.com/hook");
        i.gzip = Some(false);
        assert!(!i.effective_gzip());
        i.gzip = None;
        i.format = Some(Format::Fivetran);
        assert!(!i.effective_gzip());
    }

    #[test]
    fn validation_rejects_bad_fields() {
        let mut i = integ("https://example.com/hook");
        i.headers.insert("Content-Type".into(), "x".into());
        assert_eq!(i.validate().unwrap_err().field, "headers");
        let mut i = integ("https://example.com/hook");
        i.flush_interval_ms = 1;
        assert_eq!(i.validate().unwrap_err().field, "flushIntervalMs");
        let mut i = integ("https://example.com/hook");
        i.environments.clear();
        assert_eq!(i.validate().unwrap_err().field, "environments");
        assert!(validate_id("id", "../x").is_err());
        assert!(validate_id("id", "ok_id-1.2").is_ok());
        let e = Environment {
            id: "e".into(),
            name: "E".into(),
            project: "default".into(),
            sdk_keys: vec!["short".into()],
        };
        assert!(e.validate().is_err());
    }

    #[test]
    fn redaction_hides_secret() {
        let mut i = integ("https://example.com/hook");
        i.secret = Some("s3cret".into());
        assert_eq!(i.redacted().secret.as_deref(), Some(REDACTED));
    }
}
