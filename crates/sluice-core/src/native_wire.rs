//! The native ingest format (`POST /v1/impressions`): impressions in their outgoing form, as
//! a JSON array or as NDJSON. `key`, `split`, `treatment` and `time` are required; the
//! environment fields are always taken from the SDK key, never from the body.

use crate::error::DecodeError;
use crate::impression::ImpressionIn;
use crate::limits::{MAX_FIELD_BYTES, MAX_IMPRESSIONS_PER_REQUEST, MAX_PROPERTIES_BYTES};
use crate::wire_str::WireStr;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;

/// Per-impression producer facts a native body may carry; when absent, the request's
/// headers (or defaults) apply.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NativeExtras<'a> {
    pub sdk: Option<Cow<'a, str>>,
    pub sdk_version: Option<Cow<'a, str>>,
    pub machine_name: Option<Cow<'a, str>>,
    pub machine_ip: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Native<'a> {
    #[serde(borrow)]
    key: WireStr<'a>,
    #[serde(borrow)]
    split: WireStr<'a>,
    #[serde(borrow)]
    treatment: WireStr<'a>,
    time: i64,
    #[serde(borrow, default)]
    bucketing_key: Option<WireStr<'a>>,
    #[serde(borrow, default)]
    label: Option<WireStr<'a>>,
    #[serde(default)]
    split_version_number: Option<i64>,
    #[serde(borrow, default)]
    properties: Option<&'a RawValue>,
    #[serde(borrow, default)]
    sdk: Option<WireStr<'a>>,
    #[serde(borrow, default)]
    sdk_version: Option<WireStr<'a>>,
    #[serde(borrow, default)]
    machine_name: Option<WireStr<'a>>,
    #[serde(borrow, default)]
    machine_ip: Option<WireStr<'a>>,
}

fn convert<'a>(
    n: Native<'a>,
    index: usize,
) -> Result<(ImpressionIn<'a>, NativeExtras<'a>), DecodeError> {
    let properties = match n.properties {
        None => None,
        Some(raw) => {
            let text = raw.get();
            if text == "null" {
                None
            } else if text.starts_with('"') {
                let s: String = serde_json::from_str(text).map_err(|e| DecodeError::Invalid {
                    index,
                    reason: format!("properties: {e}"),
                })?;
                Some(Cow::Owned(s))
            } else if text.starts_with('{') {
                // A producer that sent an object instead of its JSON encoding: keep its text.
                Some(Cow::Borrowed(text))
            } else {
                return Err(DecodeError::Invalid {
                    index,
                    reason: "properties: must be a JSON-encoded string, an object or null".into(),
                });
            }
        }
    };
    let imp = ImpressionIn {
        key: n.key.0,
        split: n.split.0,
        treatment: n.treatment.0,
        time: n.time,
        bucketing_key: n.bucketing_key.map(|s| s.0),
        label: n.label.map(|s| s.0),
        change_number: n.split_version_number.unwrap_or(0),
        properties,
    };
    validate(&imp).map_err(|reason| DecodeError::Invalid { index, reason })?;
    let extras = NativeExtras {
        sdk: n.sdk.map(|s| s.0),
        sdk_version: n.sdk_version.map(|s| s.0),
        machine_name: n.machine_name.map(|s| s.0),
        machine_ip: n.machine_ip.map(|s| s.0),
    };
    Ok((imp, extras))
}

/// A JSON array of native impressions.
pub fn decode_array(body: &[u8]) -> Result<Vec<(ImpressionIn<'_>, NativeExtras<'_>)>, DecodeError> {
    let items: Vec<Native<'_>> =
        serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))?;
    if items.len() > MAX_IMPRESSIONS_PER_REQUEST {
        return Err(DecodeError::TooMany {
            count: items.len(),
            max: MAX_IMPRESSIONS_PER_REQUEST,
        });
    }
    items
        .into_iter()
        .enumerate()
        .map(|(i, n)| convert(n, i))
        .collect()
}

/// NDJSON: one native impression per line; blank lines are ignored.
pub fn decode_ndjson(
    body: &[u8],
) -> Result<Vec<(ImpressionIn<'_>, NativeExtras<'_>)>, DecodeError> {
    let mut out = Vec::new();
    for (line_no, line) in body.split(|&b| b == b'\n').enumerate() {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if out.len() == MAX_IMPRESSIONS_PER_REQUEST {
            return Err(DecodeError::TooMany {
                count: out.len() + 1,
                max: MAX_IMPRESSIONS_PER_REQUEST,
            });
        }
        let n: Native<'_> = serde_json::from_slice(line)
            .map_err(|e| DecodeError::Json(format!("line {}: {e}", line_no + 1)))?;
        let index = out.len();
        out.push(convert(n, index)?);
    }
    Ok(out)
}

/// Checks one impression's fields against the bounds in [`crate::limits`]. Shared by every
/// ingest format so they reject the same things.
pub fn validate(imp: &ImpressionIn<'_>) -> Result<(), String> {
    fn required(name: &str, v: &str) -> Result<(), String> {
        if v.is_empty() {
            return Err(format!("{name}: must not be empty"));
        }
        optional(name, Some(v))
    }
    fn optional(name: &str, v: Option<&str>) -> Result<(), String> {
        match v {
            Some(v) if v.len() > MAX_FIELD_BYTES => {
                Err(format!("{name}: longer than {MAX_FIELD_BYTES} bytes"))
            }
            _ => Ok(()),
        }
    }
    required("key", &imp.key)?;
    required("split", &imp.split)?;
    required("treatment", &imp.treatment)?;
    optional("label", imp.label.as_deref())?;
    optional("bucketingKey", imp.bucketing_key.as_deref())?;
    if imp.time < 0 {
        return Err("time: must be milliseconds since the epoch (>= 0)".into());
    }
    if let Some(p) = &imp.properties
        && p.len() > MAX_PROPERTIES_BYTES
    {
        return Err(format!(
            "properties: longer than {MAX_PROPERTIES_BYTES} bytes"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_with_optional_fields() {
        let body = br#"[{"key":"u","split":"s","treatment":"on","time":1,"label":"l","splitVersionNumber":9,"properties":"{\"a\":1}","sdk":"go","sdkVersion":"1.0","environmentId":"ignored"}]"#;
        let v = decode_array(body).unwrap();
        assert_eq!(v[0].0.change_number, 9);
        assert_eq!(v[0].0.properties.as_deref(), Some(r#"{"a":1}"#));
        assert_eq!(v[0].1.sdk.as_deref(), Some("go"));
    }

    #[test]
    fn object_properties_are_kept_as_text() {
        let v = decode_array(
            br#"[{"key":"u","split":"s","treatment":"on","time":1,"properties":{"a":1}}]"#,
        )
        .unwrap();
        assert_eq!(v[0].0.properties.as_deref(), Some(r#"{"a":1}"#));
    }

    #[test]
    fn ndjson_lines() {
        let body = b"{\"key\":\"a\",\"split\":\"s\",\"treatment\":\"on\",\"time\":1}\r\n\n{\"key\":\"b\",\"split\":\"s\",\"treatment\":\"off\",\"time\":2}\n";
        let v = decode_ndjson(body).unwrap();
        assert_eq!(v.len(), 2);
        assert_eq!(v[1].0.key, "b");
        let err = decode_ndjson(b"{\"key\":\"a\"}\n").unwrap_err();
        assert!(err.to_string().contains("line 1"), "{err}");
    }

    #[test]
    fn required_fields() {
        assert!(decode_array(br#"[{"split":"s","treatment":"on","time":1}]"#).is_err());
        assert!(decode_array(br#"[{"key":"a","split":"s","treatment":"on","time":-1}]"#).is_err());
        let long = "x".repeat(MAX_FIELD_BYTES + 1);
        let body = format!(r#"[{{"key":"{long}","split":"s","treatment":"on","time":1}}]"#);
        assert!(matches!(
            decode_array(body.as_bytes()),
            Err(DecodeError::Invalid { .. })
        ));
    }
}
