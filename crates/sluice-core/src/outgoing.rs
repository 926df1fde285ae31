//! What customer endpoints receive: the outgoing impression form (exactly 14 fields) and
//! batch bodies (a JSON array, or a Slack message).

use crate::record::{ContextRef, RecordRef};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The 14 field names of the outgoing form, in SPEC order (SPEC §1): the keys of every
/// delivered or exported object and the CSV header row. Checked against [`OutImpression`]'s
/// serialization by `fields_are_the_serialized_keys_in_order`.
pub const FIELDS: [&str; 14] = [
    "key",
    "split",
    "environmentId",
    "environmentName",
    "treatment",
    "time",
    "bucketingKey",
    "label",
    "machineName",
    "machineIp",
    "splitVersionNumber",
    "sdk",
    "sdkVersion",
    "properties",
];

/// The outgoing form of one impression (SPEC §1). Field order is the SPEC's.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct OutImpression<'a> {
    pub key: &'a str,
    pub split: &'a str,
    pub environment_id: &'a str,
    pub environment_name: &'a str,
    pub treatment: &'a str,
    pub time: i64,
    pub bucketing_key: Option<&'a str>,
    pub label: Option<&'a str>,
    pub machine_name: Option<&'a str>,
    pub machine_ip: Option<&'a str>,
    pub split_version_number: i64,
    pub sdk: &'a str,
    pub sdk_version: &'a str,
    pub properties: Option<&'a str>,
}

/// The outgoing form, owned: what tests and receivers decode into.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OwnedImpression {
    pub key: String,
    pub split: String,
    pub environment_id: String,
    pub environment_name: String,
    pub treatment: String,
    pub time: i64,
    pub bucketing_key: Option<String>,
    pub label: Option<String>,
    pub machine_name: Option<String>,
    pub machine_ip: Option<String>,
    pub split_version_number: i64,
    pub sdk: String,
    pub sdk_version: String,
    pub properties: Option<String>,
}

impl<'a> OutImpression<'a> {
    pub fn new(environment_id: &'a str, c: &ContextRef<'a>, r: &RecordRef<'a>) -> Self {
        OutImpression {
            key: r.key,
            split: r.split,
            environment_id,
            environment_name: c.environment_name,
            treatment: r.treatment,
            time: r.time,
            bucketing_key: r.bucketing_key,
            label: r.label,
            machine_name: c.machine_name,
            machine_ip: c.machine_ip,
            split_version_number: r.change_number,
            sdk: c.sdk,
            sdk_version: c.sdk_version,
            properties: r.properties,
        }
    }
}

/// Builds a JSON array body one impression at a time, without an intermediate `Vec`.
#[derive(Debug, Default)]
pub struct JsonArrayWriter {
    buf: Vec<u8>,
    count: usize,
}

impl JsonArrayWriter {
    pub fn with_capacity(bytes: usize) -> Self {
        let mut buf = Vec::with_capacity(bytes);
        buf.push(b'[');
        JsonArrayWriter { buf, count: 0 }
    }
    pub fn push(&mut self, imp: &OutImpression<'_>) {
        if self.buf.is_empty() {
            self.buf.push(b'[');
        }
        if self.count > 0 {
            self.buf.push(b',');
        }
        // Serializing plain strings and integers into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut self.buf, imp);
        self.count += 1;
    }
    pub fn len(&self) -> usize {
        self.count
    }
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
    pub fn byte_len(&self) -> usize {
        self.buf.len()
    }
    pub fn finish(mut self) -> Vec<u8> {
        if self.buf.is_empty() {
            self.buf.push(b'[');
        }
        self.buf.push(b']');
        self.buf
    }
}

/// Counts per flag and treatment, for the Slack summary.
#[derive(Debug, Default, Clone)]
pub struct Summary {
    pub total: u64,
    pub by_split: BTreeMap<String, BTreeMap<String, u64>>,
    pub environments: BTreeMap<String, u64>,
}

impl Summary {
    pub fn add(&mut self, imp: &OutImpression<'_>) {
        self.total += 1;
        *self
            .by_split
            .entry(imp.split.to_owned())
            .or_default()
            .entry(imp.treatment.to_owned())
            .or_default() += 1;
        *self
            .environments
            .entry(imp.environment_name.to_owned())
            .or_default() += 1;
    }

    /// A Slack incoming-webhook message: `{"text": ...}`.
    pub fn slack_body(&self) -> Vec<u8> {
        let mut text = format!(
            "*{} impression{}* ({})",
            self.total,
            if self.total == 1 { "" } else { "s" },
            self.environments
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        );
        const MAX_LINES: usize = 40;
        for (i, (split, treatments)) in self.by_split.iter().enumerate() {
            if i == MAX_LINES {
                text.push_str(&format!(
                    "\n… and {} more flags",
                    self.by_split.len() - MAX_LINES
                ));
                break;
            }
            let parts: Vec<String> = treatments
                .iter()
                .map(|(t, n)| format!("{t}: {n}"))
                .collect();
            text.push_str(&format!("\n• `{split}` — {}", parts.join(", ")));
        }
        serde_json::to_vec(&serde_json::json!({ "text": text })).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>() -> OutImpression<'a> {
        OutImpression {
            key: "k",
            split: "s",
            environment_id: "e",
            environment_name: "prod",
            treatment: "on",
            time: 1,
            bucketing_key: None,
            label: Some("l"),
            machine_name: None,
            machine_ip: Some("1.2.3.4"),
            split_version_number: 3,
            sdk: "python",
            sdk_version: "1.0",
            properties: None,
        }
    }

    #[test]
    fn fields_are_the_serialized_keys_in_order() {
        let v = serde_json::to_value(sample()).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        let mut want = FIELDS.to_vec();
        // serde_json's map is sorted unless `preserve_order`: compare as sets, then the order
        // from the serialized text.
        want.sort_unstable();
        let mut got = keys.clone();
        got.sort_unstable();
        assert_eq!(got, want);
        let text = serde_json::to_string(&sample()).unwrap();
        let positions: Vec<usize> = FIELDS
            .iter()
            .map(|f| text.find(&format!("\"{f}\":")).unwrap())
            .collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
    }

    #[test]
    fn array_has_exactly_the_fourteen_fields() {
        let mut w = JsonArrayWriter::with_capacity(0);
        w.push(&sample());
        w.push(&sample());
        let body = w.finish();
        let v: Vec<serde_json::Map<String, serde_json::Value>> =
            serde_json::from_slice(&body).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].len(), 14);
        let back: Vec<OwnedImpression> = serde_json::from_slice(&body).unwrap();
        assert_eq!(back[0].machine_ip.as_deref(), Some("1.2.3.4"));
        assert!(v[0]["bucketingKey"].is_null());
        assert_eq!(JsonArrayWriter::default().finish(), b"[]");
    }

    #[test]
    fn slack_summary_counts_flags_and_treatments() {
        let mut s = Summary::default();
        s.add(&sample());
        s.add(&OutImpression {
            treatment: "off",
            ..sample()
        });
        let v: serde_json::Value = serde_json::from_slice(&s.slack_body()).unwrap();
        let text = v["text"].as_str().unwrap();
        assert!(text.contains("2 impressions"), "{text}");
        assert!(text.contains("`s` — off: 1, on: 1"), "{text}");
    }
}
