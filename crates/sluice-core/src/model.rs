//! Admin objects (SPEC §1): projects, environments, integrations, with their validation.
//! JSON is camelCase, as the admin API speaks it.

use crate::error::ValidationError;
use crate::limits::{Bound, settings};
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
    /// Requests per second at most to this endpoint (SPEC §3: catch-up never floods an
    /// endpoint); `None`: no fixed cap.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_second: Option<u32>,
    /// Delivery protection settings; defaults when absent.
    #[serde(default)]
    pub protection: Protection,
}

/// Delivery protection thresholds (SPEC §3). Defaults are justified in ARCHITECTURE.md
/// ("Delivery protection defaults").
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", default)]
pub struct Protection {
    /// How many recent attempts the failure rate is computed over.
    pub window: u32,
    /// The failure-rate rule applies once the window holds this many attempts.
    pub min_attempts: u32,
    /// Pause when failures / attempts in the window reach this percentage (and the latest
    /// attempt failed).
    pub failure_rate_percent: u32,
    /// Pause when every attempt has failed for this long, counted from the start of the
    /// first failed one (a dead destination: refusing, hanging, timing out, non-200) ...
    pub failing_for_ms: u64,
    /// ... and at least this many attempts failed in that time.
    pub min_failed_attempts: u32,
    /// First cooldown after a pause.
    pub initial_cooldown_ms: u64,
    /// Cooldowns double after each failed probe, up to this.
    pub max_cooldown_ms: u64,
    /// Connect timeout for one attempt.
    pub connect_timeout_ms: u64,
    /// Total timeout for one attempt (connect, send, answer).
    pub request_timeout_ms: u64,
}

impl Protection {
    pub fn validate(&self) -> Result<(), ValidationError> {
        check(settings::WINDOW, self.window.into())?;
        check(settings::MIN_ATTEMPTS, self.min_attempts.into())?;
        if self.min_attempts > self.window {
            return Err(ValidationError::new(
                settings::MIN_ATTEMPTS.field,
                "must be at most protection.window",
            ));
        }
        check(
            settings::FAILURE_RATE_PERCENT,
            self.failure_rate_percent.into(),
        )?;
        check(settings::FAILING_FOR_MS, self.failing_for_ms)?;
        check(
            settings::MIN_FAILED_ATTEMPTS,
            self.min_failed_attempts.into(),
        )?;
        check(settings::INITIAL_COOLDOWN_MS, self.initial_cooldown_ms)?;
        check(settings::MAX_COOLDOWN_MS, self.max_cooldown_ms)?;
        if self.max_cooldown_ms < self.initial_cooldown_ms {
            return Err(ValidationError::new(
                settings::MAX_COOLDOWN_MS.field,
                "must be at least protection.initialCooldownMs",
            ));
        }
        check(settings::CONNECT_TIMEOUT_MS, self.connect_timeout_ms)?;
        check(settings::REQUEST_TIMEOUT_MS, self.request_timeout_ms)
    }
}

impl Default for Protection {
    fn default() -> Self {
        Protection {
            window: 20,
            min_attempts: 10,
            failure_rate_percent: 50,
            failing_for_ms: 15_000,
            min_failed_attempts: 3,
            initial_cooldown_ms: 5_000,
            max_cooldown_ms: 300_000,
            connect_timeout_ms: 5_000,
            request_timeout_ms: 10_000,
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

/// A value outside `bound` is refused naming `bound.field`.
pub(crate) fn check(bound: Bound, value: u64) -> Result<(), ValidationError> {
    if bound.contains(value) {
        Ok(())
    } else {
        Err(ValidationError::new(bound.field, bound.reason()))
    }
}

/// As [`check`], naming `field` (an id's own field, or the list it is in).
fn check_as(field: &str, bound: Bound, value: u64) -> Result<(), ValidationError> {
    check(bound, value).map_err(|e| ValidationError::new(field, e.reason))
}

pub(crate) fn len(s: &str) -> u64 {
    s.len() as u64
}

/// Identifiers: 1–64 of `A-Z a-z 0-9 _ - .`, not starting with `.`.
pub fn validate_id(field: &str, id: &str) -> Result<(), ValidationError> {
    let ok = settings::ID.contains(len(id))
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
    if name.trim().is_empty() {
        return Err(ValidationError::new("name", "must not be blank"));
    }
    check(settings::NAME, len(name))
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
        check(settings::SDK_KEYS, self.sdk_keys.len() as u64)?;
        for k in &self.sdk_keys {
            check(settings::SDK_KEY, len(k))?;
            if !k.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(ValidationError::new(
                    "sdkKeys",
                    "each key must be printable ASCII without spaces",
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
        check(settings::URL, len(&self.url))?;
        check(settings::ENVIRONMENTS, self.environments.len() as u64)?;
        for e in &self.environments {
            validate_id("environments", e)?;
        }
        check(settings::FLUSH_INTERVAL_MS, self.flush_interval_ms)?;
        check(settings::MAX_IN_FLIGHT, self.max_in_flight.into())?;
        check(
            settings::MAX_BATCH_IMPRESSIONS,
            self.max_batch_impressions.into(),
        )?;
        check(settings::MAX_BACKLOG_AGE_MS, self.max_backlog_age_ms)?;
        if let Some(r) = self.max_requests_per_second {
            check(settings::MAX_REQUESTS_PER_SECOND, r.into())?;
        }
        if let Some(secret) = &self.secret {
            check(settings::SECRET, len(secret))?;
        }
        check(settings::HEADERS, self.headers.len() as u64)?;
        for (k, v) in &self.headers {
            check_as(&format!("headers.{k}"), settings::HEADER_NAME, len(k))?;
            if !k
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
            {
                return Err(ValidationError::new(
                    "headers",
                    format!("{k:?} is not a valid header name"),
                ));
            }
            if RESERVED_HEADERS.contains(&k.to_ascii_lowercase().as_str()) {
                return Err(ValidationError::new(
                    format!("headers.{k}"),
                    "set by sluice; cannot be overridden",
                ));
            }
            check_as(&format!("headers.{k}"), settings::HEADER_VALUE, len(v))?;
            if v.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
                return Err(ValidationError::new(
                    format!("headers.{k}"),
                    "value must not contain CR, LF or NUL",
                ));
            }
        }
        self.protection.validate()
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
        assert_eq!(i.validate().unwrap_err().field, "headers.Content-Type");
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

    /// Every numeric setting: its bounds are accepted, one past either end is refused
    /// naming the field (with `protection.` for protection settings).
    #[test]
    fn numeric_settings_are_bounded_and_errors_name_the_field() {
        use crate::limits::settings::*;
        let numeric = [
            FLUSH_INTERVAL_MS,
            MAX_BATCH_IMPRESSIONS,
            MAX_BACKLOG_AGE_MS,
            MAX_IN_FLIGHT,
            MAX_REQUESTS_PER_SECOND,
            WINDOW,
            MIN_ATTEMPTS,
            FAILURE_RATE_PERCENT,
            FAILING_FOR_MS,
            MIN_FAILED_ATTEMPTS,
            INITIAL_COOLDOWN_MS,
            MAX_COOLDOWN_MS,
            CONNECT_TIMEOUT_MS,
            REQUEST_TIMEOUT_MS,
        ];
        for b in numeric {
            let with = |v: u64| {
                let mut body = serde_json::json!({
                    "id": "i1", "name": "n", "url": "https://example.com/h",
                    "environments": ["e1"],
                    // Room for minAttempts and cooldowns at either end of their range.
                    "protection": {"window": 1000, "minAttempts": 1,
                                   "initialCooldownMs": 100, "maxCooldownMs": 86_400_000},
                });
                match b.field.strip_prefix("protection.") {
                    Some(f) => body["protection"][f] = v.into(),
                    None => body[b.field] = v.into(),
                }
                serde_json::from_value::<Integration>(body)
                    .map(|i| i.validate())
                    .map_err(|e| e.to_string())
            };
            for ok in [b.min, b.max] {
                assert_eq!(with(ok), Ok(Ok(())), "{} = {ok}", b.field);
            }
            let mut outside = vec![b.max + 1];
            if b.min > 0 {
                outside.push(b.min - 1);
            }
            for bad in outside {
                match with(bad) {
                    Ok(Err(e)) => assert_eq!(e.field, b.field, "{} = {bad}: {e}", b.field),
                    // Past the Rust type's range: refused while decoding.
                    Err(_) => assert!(b.max >= u64::from(u32::MAX), "{} = {bad}", b.field),
                    Ok(Ok(())) => panic!("{} = {bad} accepted", b.field),
                }
            }
        }
    }

    /// Issue 11: u64::MAX was accepted and became -1 (every impression into a gap).
    #[test]
    fn backlog_age_of_u64_max_is_refused() {
        let mut i = integ("https://example.com/hook");
        i.max_backlog_age_ms = u64::MAX;
        let e = i.validate().unwrap_err();
        assert_eq!(e.field, "maxBacklogAgeMs");
        assert!(e.reason.contains("31536000000"), "{e}");
    }

    #[test]
    fn cross_field_rules_name_the_field() {
        let mut i = integ("https://example.com/hook");
        i.protection.window = 5;
        i.protection.min_attempts = 6;
        assert_eq!(i.validate().unwrap_err().field, "protection.minAttempts");
        let mut i = integ("https://example.com/hook");
        i.protection.max_cooldown_ms = 1_000;
        assert_eq!(i.validate().unwrap_err().field, "protection.maxCooldownMs");
        let mut i = integ("https://example.com/hook");
        i.headers.insert("X-Long".into(), "v".repeat(1025));
        assert_eq!(i.validate().unwrap_err().field, "headers.X-Long");
        let mut i = integ("https://example.com/hook");
        i.name = "n".repeat(201);
        assert_eq!(i.validate().unwrap_err().field, "name");
    }

    #[test]
    fn redaction_hides_secret() {
        let mut i = integ("https://example.com/hook");
        i.secret = Some("s3cret".into());
        assert_eq!(i.redacted().secret.as_deref(), Some(REDACTED));
    }
}
