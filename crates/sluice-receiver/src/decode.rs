//! Turning a delivery body into counts: gzip decompression (capped), signature verification over
//! the uncompressed body, and strict validation of the outgoing form without allocating per
//! impression (unless impressions are kept).

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::io::Read;
use std::sync::Arc;

use bytes::Bytes;
use serde::de::{self, Deserialize, Deserializer, SeqAccess, Visitor};
use sluice_core::outgoing::OwnedImpression;

/// A valid delivery body.
#[derive(Debug)]
pub(crate) enum Parsed {
    /// A JSON array of impressions in the outgoing form.
    Impressions(Batch),
    /// A Slack `{"text": ...}` message.
    Slack,
    /// A sluice operator alert `{type, timestamp, data}`.
    Alert(sluice_core::alert::AlertEvent),
}

/// What a valid impressions batch held.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub count: u64,
    /// Impressions per `environmentName`.
    pub per_environment: Vec<(String, u64)>,
    /// Impressions per `split`.
    pub per_split: Vec<(String, u64)>,
    /// The impressions themselves, when kept.
    pub kept: Vec<OwnedImpression>,
}

/// Why a body was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Reject {
    /// Decompressed body over the cap (413).
    TooLarge(String),
    /// Not valid gzip / JSON / outgoing form (400).
    BadBody(String),
    /// Missing or wrong signature (401).
    BadSignature(String),
}

/// Everything needed to check one body, owned so it can run on a blocking thread.
#[derive(Debug)]
pub(crate) struct Job {
    pub body: Bytes,
    pub gzip: bool,
    pub max_bytes: usize,
    /// `(secret, webhook-id, webhook-timestamp, webhook-signature header)` when verifying.
    pub verify: Option<(Arc<str>, String, i64, String)>,
    pub keep: bool,
}

/// The result of a [`Job`].
#[derive(Debug)]
pub(crate) struct Checked {
    pub decoded_bytes: Option<u64>,
    pub signature_ok: Option<bool>,
    pub result: Result<Parsed, Reject>,
}

impl Job {
    /// Decompresses, verifies and parses, in that order.
    pub(crate) fn run(self) -> Checked {
        let mut out = Checked {
            decoded_bytes: None,
            signature_ok: None,
            result: Ok(Parsed::Slack),
        };
        let plain: Cow<'_, [u8]> = if self.gzip {
            match gunzip(&self.body, self.max_bytes) {
                Ok(v) => Cow::Owned(v),
                Err(e) => {
                    out.result = Err(e);
                    return out;
                }
            }
        } else {
            Cow::Borrowed(&self.body[..])
        };
        out.decoded_bytes = Some(plain.len() as u64);
        if let Some((secret, id, ts, header)) = &self.verify {
            let ok = sluice_core::signature::verify(secret, id, *ts, &plain, header);
            out.signature_ok = Some(ok);
            if !ok {
                out.result = Err(Reject::BadSignature(
                    "webhook-signature does not match the body for this secret".into(),
                ));
                return out;
            }
        }
        out.result = parse(&plain, self.keep).map_err(Reject::BadBody);
        out
    }
}

/// What the receiver makes of one delivery body — gzip inflated (capped at `max_bytes`)
/// when `gzip`, then validated: `Ok(impressions)` (0 for a Slack message or an alert) or why it was
/// refused. The same path as a real request, without HTTP; the entry point of
/// `fuzz/fuzz_targets/receiver_body.rs`.
pub fn check_body(body: &[u8], gzip: bool, max_bytes: usize, keep: bool) -> Result<u64, String> {
    let plain: Cow<'_, [u8]> = if gzip {
        Cow::Owned(gunzip(body, max_bytes).map_err(|e| format!("{e:?}"))?)
    } else {
        Cow::Borrowed(body)
    };
    match parse(&plain, keep)? {
        Parsed::Impressions(b) => Ok(b.count),
        Parsed::Slack | Parsed::Alert(_) => Ok(0),
    }
}

/// Decompresses a gzip body (one or more members), refusing more than `max` bytes of output.
pub(crate) fn gunzip(data: &[u8], max: usize) -> Result<Vec<u8>, Reject> {
    let mut out = Vec::with_capacity(data.len().saturating_mul(4).min(max).min(16 << 20));
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    let mut dec = flate2::bufread::MultiGzDecoder::new(data).take(limit);
    dec.read_to_end(&mut out)
        .map_err(|e| Reject::BadBody(format!("body is not valid gzip: {e}")))?;
    if out.len() > max {
        return Err(Reject::TooLarge(format!(
            "decompressed body is over {max} bytes"
        )));
    }
    Ok(out)
}

/// Validates a body: a JSON array of impressions in the exact outgoing form (all 14 fields
/// present, no others, right types), or a Slack message `{"text": "..."}`.
pub(crate) fn parse(body: &[u8], keep: bool) -> Result<Parsed, String> {
    match body.iter().find(|b| !b.is_ascii_whitespace()) {
        Some(b'[') => {
            let mut tally = Tally::default();
            let mut de = serde_json::Deserializer::from_slice(body);
            de.deserialize_seq(BatchVisitor {
                tally: &mut tally,
                keep,
            })
            .and_then(|()| de.end())
            .map_err(|e| format!("not a JSON array of impressions in the outgoing form: {e}"))?;
            Ok(Parsed::Impressions(tally.finish()))
        }
        Some(b'{') => {
            if let Ok(alert) = serde_json::from_slice(body) {
                return Ok(Parsed::Alert(alert));
            }
            serde_json::from_slice::<SlackMessage<'_>>(body).map_err(|e| {
                format!("not a Slack message {{\"text\": ...}} nor a sluice alert event: {e}")
            })?;
            Ok(Parsed::Slack)
        }
        _ => Err(
            "expected a JSON array of impressions, a Slack {\"text\": ...} message or a sluice alert event"
                .into(),
        ),
    }
}

/// Per-batch counts, keyed by strings borrowed from the body.
#[derive(Default)]
struct Tally<'de> {
    count: u64,
    per_environment: HashMap<Cow<'de, str>, u64>,
    per_split: HashMap<Cow<'de, str>, u64>,
    kept: Vec<OwnedImpression>,
}

fn bump<'de>(map: &mut HashMap<Cow<'de, str>, u64>, key: Cow<'de, str>) {
    *map.entry(key).or_insert(0) += 1;
}

impl<'de> Tally<'de> {
    fn add(&mut self, imp: WireImpression<'de>, keep: bool) {
        self.count += 1;
        if keep {
            bump(&mut self.per_environment, imp.environment_name.0.clone());
            bump(&mut self.per_split, imp.split.0.clone());
            self.kept.push(imp.into_owned());
        } else {
            bump(&mut self.per_environment, imp.environment_name.0);
            bump(&mut self.per_split, imp.split.0);
        }
    }

    fn finish(self) -> Batch {
        let owned = |m: HashMap<Cow<'de, str>, u64>| {
            m.into_iter()
                .map(|(k, v)| (k.into_owned(), v))
                .collect::<Vec<_>>()
        };
        Batch {
            count: self.count,
            per_environment: owned(self.per_environment),
            per_split: owned(self.per_split),
            kept: self.kept,
        }
    }
}

struct BatchVisitor<'t, 'de> {
    tally: &'t mut Tally<'de>,
    keep: bool,
}

impl<'de> Visitor<'de> for BatchVisitor<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of impressions")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(imp) = seq.next_element::<WireImpression<'de>>()? {
            self.tally.add(imp, self.keep);
        }
        Ok(())
    }
}

/// The outgoing form, borrowed from the body where possible. Unlike
/// [`OwnedImpression`], every nullable field must be present (as `null` when empty).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct WireImpression<'a> {
    #[serde(borrow)]
    key: Str<'a>,
    #[serde(borrow)]
    split: Str<'a>,
    #[serde(borrow)]
    environment_id: Str<'a>,
    #[serde(borrow)]
    environment_name: Str<'a>,
    #[serde(borrow)]
    treatment: Str<'a>,
    time: i64,
    #[serde(borrow)]
    bucketing_key: Nullable<'a>,
    #[serde(borrow)]
    label: Nullable<'a>,
    #[serde(borrow)]
    machine_name: Nullable<'a>,
    #[serde(borrow)]
    machine_ip: Nullable<'a>,
    split_version_number: i64,
    #[serde(borrow)]
    sdk: Str<'a>,
    #[serde(borrow)]
    sdk_version: Str<'a>,
    #[serde(borrow)]
    properties: Nullable<'a>,
}

impl WireImpression<'_> {
    fn into_owned(self) -> OwnedImpression {
        OwnedImpression {
            key: self.key.0.into_owned(),
            split: self.split.0.into_owned(),
            environment_id: self.environment_id.0.into_owned(),
            environment_name: self.environment_name.0.into_owned(),
            treatment: self.treatment.0.into_owned(),
            time: self.time,
            bucketing_key: self.bucketing_key.0.map(Cow::into_owned),
            label: self.label.0.map(Cow::into_owned),
            machine_name: self.machine_name.0.map(Cow::into_owned),
            machine_ip: self.machine_ip.0.map(Cow::into_owned),
            split_version_number: self.split_version_number,
            sdk: self.sdk.0.into_owned(),
            sdk_version: self.sdk_version.0.into_owned(),
            properties: self.properties.0.map(Cow::into_owned),
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct SlackMessage<'a> {
    #[serde(borrow, rename = "text")]
    _text: Str<'a>,
}

/// A JSON string, borrowed unless it contains escapes.
struct Str<'a>(Cow<'a, str>);

/// A JSON string or `null` that must be present (a missing field is an error).
struct Nullable<'a>(Option<Cow<'a, str>>);

/// A JSON string; `null` too when `null_ok`.
struct StrVisitor {
    null_ok: bool,
}

impl<'de> Visitor<'de> for StrVisitor {
    type Value = Option<Cow<'de, str>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.null_ok {
            "a string or null"
        } else {
            "a string"
        })
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Some(Cow::Owned(v.to_owned())))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        if self.null_ok {
            Ok(None)
        } else {
            Err(E::invalid_type(de::Unexpected::Unit, &self))
        }
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        if self.null_ok {
            Ok(None)
        } else {
            Err(E::invalid_type(de::Unexpected::Option, &self))
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Str<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match d.deserialize_str(StrVisitor { null_ok: false })? {
            Some(s) => Ok(Str(s)),
            None => Err(de::Error::invalid_type(de::Unexpected::Unit, &"a string")),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Nullable<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        // `deserialize_any` (not `deserialize_option`) so that a missing field is an error.
        d.deserialize_any(StrVisitor { null_ok: true })
            .map(Nullable)
    }
}
