//! Bounds on every input (SPEC §6: "every input is bounded").

/// Longest key, split, treatment, label or bucketing key accepted, in bytes.
pub const MAX_FIELD_BYTES: usize = 1024;
/// Longest `properties` string accepted, in bytes.
pub const MAX_PROPERTIES_BYTES: usize = 32 * 1024;
/// Longest SDK / machine header value kept, in bytes.
pub const MAX_HEADER_FIELD_BYTES: usize = 256;
/// Most impressions accepted in one ingest request.
pub const MAX_IMPRESSIONS_PER_REQUEST: usize = 100_000;
/// Most integrations created by one `POST /v1/integrations/bulk`.
pub const MAX_BULK_INTEGRATIONS: usize = 1000;

/// What a [`Bound`] limits: a number's value, a string's length in bytes, a list's items,
/// or a map's entries. (In OpenAPI: minimum/maximum, minLength/maxLength,
/// minItems/maxItems, minProperties/maxProperties.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    Value,
    Length,
    Items,
    Entries,
}

/// An inclusive range an admin setting must lie in. `field` is the JSON path named in
/// the 400 answer; the same figures are the field's bounds in `openapi.json` (a test in
/// sluice-api compares them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bound {
    pub field: &'static str,
    pub measure: Measure,
    pub min: u64,
    pub max: u64,
}

impl Bound {
    const fn new(field: &'static str, measure: Measure, min: u64, max: u64) -> Bound {
        Bound {
            field,
            measure,
            min,
            max,
        }
    }

    pub fn contains(&self, v: u64) -> bool {
        self.min <= v && v <= self.max
    }

    /// The reason given when a value is outside the bound.
    pub fn reason(&self) -> String {
        let what = match self.measure {
            Measure::Value => "must be",
            Measure::Length => "length must be",
            Measure::Items => "must list",
            Measure::Entries => "must have",
        };
        let unit = match self.measure {
            Measure::Value => "",
            Measure::Length => " bytes",
            Measure::Items => " items",
            Measure::Entries => " entries",
        };
        format!("{what} {}-{}{unit}", self.min, self.max)
    }
}

/// Bounds of every admin setting (SPEC §6). Time settings are milliseconds.
pub mod settings {
    use super::{Bound, Measure::*};

    /// Project, environment and integration ids (and the ids they reference).
    pub const ID: Bound = Bound::new("id", Length, 1, 64);
    /// Project, environment and integration names.
    pub const NAME: Bound = Bound::new("name", Length, 1, 200);
    pub const SDK_KEYS: Bound = Bound::new("sdkKeys", Items, 0, 100);
    pub const SDK_KEY: Bound = Bound::new("sdkKeys", Length, 8, 256);
    pub const URL: Bound = Bound::new("url", Length, 1, 2048);
    pub const ENVIRONMENTS: Bound = Bound::new("environments", Items, 1, 100);
    pub const SECRET: Bound = Bound::new("secret", Length, 1, 256);
    pub const HEADERS: Bound = Bound::new("headers", Entries, 0, 20);
    pub const HEADER_NAME: Bound = Bound::new("headers", Length, 1, 128);
    pub const HEADER_VALUE: Bound = Bound::new("headers", Length, 0, 1024);
    pub const FLUSH_INTERVAL_MS: Bound = Bound::new("flushIntervalMs", Value, 100, 3_600_000);
    pub const MAX_BATCH_IMPRESSIONS: Bound = Bound::new("maxBatchImpressions", Value, 1, 50_000);
    /// Up to a year: older backlog is past any sensible retention.
    pub const MAX_BACKLOG_AGE_MS: Bound =
        Bound::new("maxBacklogAgeMs", Value, 1_000, 365 * 24 * 3600 * 1000);
    pub const MAX_IN_FLIGHT: Bound = Bound::new("maxInFlight", Value, 1, 16);
    pub const MAX_REQUESTS_PER_SECOND: Bound = Bound::new("maxRequestsPerSecond", Value, 1, 10_000);
    pub const WINDOW: Bound = Bound::new("protection.window", Value, 1, 1_000);
    /// Also at most `window`.
    pub const MIN_ATTEMPTS: Bound = Bound::new("protection.minAttempts", Value, 1, 1_000);
    pub const FAILURE_RATE_PERCENT: Bound =
        Bound::new("protection.failureRatePercent", Value, 1, 100);
    pub const FAILING_FOR_MS: Bound =
        Bound::new("protection.failingForMs", Value, 1_000, 3_600_000);
    pub const MIN_FAILED_ATTEMPTS: Bound =
        Bound::new("protection.minFailedAttempts", Value, 1, 1_000);
    pub const INITIAL_COOLDOWN_MS: Bound =
        Bound::new("protection.initialCooldownMs", Value, 100, 3_600_000);
    /// Also at least `initialCooldownMs`.
    pub const MAX_COOLDOWN_MS: Bound =
        Bound::new("protection.maxCooldownMs", Value, 100, 24 * 3_600_000);
    pub const CONNECT_TIMEOUT_MS: Bound =
        Bound::new("protection.connectTimeoutMs", Value, 100, 60_000);
    pub const REQUEST_TIMEOUT_MS: Bound =
        Bound::new("protection.requestTimeoutMs", Value, 100, 300_000);
    /// Event types an alert destination subscribes to (each at most once).
    pub const ALERT_EVENTS: Bound = Bound::new("events", Items, 1, 5);
}

/// Alert destinations at most (SPEC §4, operator alerts).
pub const MAX_ALERT_DESTINATIONS: usize = 1_000;
/// Undelivered events kept per alert destination; beyond that the oldest is dropped (and
/// counted) so a destination that is down for days cannot grow the store without bound.
pub const MAX_ALERT_OUTBOX_EVENTS: usize = 1_000;
