//! The Split / Harness FME SDK impressions wire format (`POST /api/testImpressions/bulk`):
//! `[{"f": flag, "i": [{"k","t","m","c","r","b","pt","properties"}]}]`.
//!
//! Python SDKs send `b`, `r`, `pt` as null when unset; JS SDKs omit them. `properties` is a
//! JSON-encoded string when present.

use crate::error::DecodeError;
use crate::impression::ImpressionIn;
use crate::limits::MAX_IMPRESSIONS_PER_REQUEST;
use crate::native_wire::validate;
use crate::wire_str::WireStr;
use serde::Deserialize;

#[derive(Deserialize)]
struct Group<'a> {
    #[serde(borrow)]
    f: WireStr<'a>,
    #[serde(borrow)]
    i: Vec<Item<'a>>,
}

#[derive(Deserialize)]
struct Item<'a> {
    #[serde(borrow)]
    k: WireStr<'a>,
    #[serde(borrow)]
    t: WireStr<'a>,
    m: i64,
    #[serde(default)]
    c: Option<i64>,
    #[serde(borrow, default)]
    r: Option<WireStr<'a>>,
    #[serde(borrow, default)]
    b: Option<WireStr<'a>>,
    #[serde(default)]
    #[allow(dead_code)]
    pt: Option<i64>,
    #[serde(borrow, default)]
    properties: Option<WireStr<'a>>,
}

/// Decodes a bulk body into impressions, validating every one. Either the whole body is
/// accepted or an error says which impression is wrong.
pub fn decode_bulk(body: &[u8]) -> Result<Vec<ImpressionIn<'_>>, DecodeError> {
    let groups: Vec<Group<'_>> =
        serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))?;
    let count: usize = groups.iter().map(|g| g.i.len()).sum();
    if count > MAX_IMPRESSIONS_PER_REQUEST {
        return Err(DecodeError::TooMany {
            count,
            max: MAX_IMPRESSIONS_PER_REQUEST,
        });
    }
    let mut out = Vec::with_capacity(count);
    for group in groups {
        for item in group.i {
            let imp = ImpressionIn {
                key: item.k.0,
                split: group.f.0.clone(),
                treatment: item.t.0,
                time: item.m,
                bucketing_key: item.b.map(|s| s.0),
                label: item.r.map(|s| s.0),
                change_number: item.c.unwrap_or(0),
                properties: item.properties.map(|s| s.0),
            };
            validate(&imp).map_err(|reason| DecodeError::Invalid {
                index: out.len(),
                reason,
            })?;
            out.push(imp);
        }
    }
    Ok(out)
}

/// `POST /api/testImpressions/count` body: `{"pf":[{"f","m","rc"}]}`. Returns the total
/// count it reports, for metrics.
pub fn decode_counts(body: &[u8]) -> Result<u64, DecodeError> {
    #[derive(Deserialize)]
    struct Counts {
        #[serde(default)]
        pf: Vec<Count>,
    }
    #[derive(Deserialize)]
    struct Count {
        #[allow(dead_code)]
        f: String,
        #[allow(dead_code)]
        m: i64,
        rc: u64,
    }
    let counts: Counts =
        serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))?;
    Ok(counts
        .pf
        .iter()
        .map(|c| c.rc)
        .fold(0u64, u64::saturating_add))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_shape_with_nulls() {
        let body = br#"[{"f":"dark_mode","i":[{"k":"user-0","t":"on","m":1795353299739,"c":1700000000000,"r":"default rule","b":null,"pt":null}]}]"#;
        let imps = decode_bulk(body).unwrap();
        assert_eq!(imps.len(), 1);
        let i = &imps[0];
        assert_eq!(i.key, "user-0");
        assert_eq!(i.split, "dark_mode");
        assert_eq!(i.treatment, "on");
        assert_eq!(i.time, 1795353299739);
        assert_eq!(i.change_number, 1700000000000);
        assert_eq!(i.label.as_deref(), Some("default rule"));
        assert_eq!(i.bucketing_key, None);
        assert_eq!(i.properties, None);
    }

    #[test]
    fn js_shape_with_properties_and_omitted_fields() {
        let body = br#"[{"f":"new_checkout","i":[{"k":"user-1","t":"off","m":5,"c":7,"properties":"{\"page\":\"cart\",\"i\":1}"}]}]"#;
        let imps = decode_bulk(body).unwrap();
        assert_eq!(
            imps[0].properties.as_deref(),
            Some(r#"{"page":"cart","i":1}"#)
        );
        assert_eq!(imps[0].label, None);
        assert_eq!(imps[0].bucketing_key, None);
    }

    #[test]
    fn missing_required_fields_and_wrong_types_are_rejected() {
        assert!(matches!(
            decode_bulk(br#"[{"f":"x","i":[{"t":"on","m":1}]}]"#),
            Err(DecodeError::Json(_))
        ));
        assert!(matches!(
            decode_bulk(br#"[{"f":"x","i":[{"k":"a","t":"on","m":"1"}]}]"#),
            Err(DecodeError::Json(_))
        ));
        assert!(matches!(
            decode_bulk(br#"[{"f":"x","i":[{"k":5,"t":"on","m":1}]}]"#),
            Err(DecodeError::Json(_))
        ));
        assert!(matches!(
            decode_bulk(br#"{"f":"x"}"#),
            Err(DecodeError::Json(_))
        ));
        assert!(matches!(decode_bulk(b"[{"), Err(DecodeError::Json(_))));
        assert!(matches!(
            decode_bulk(br#"[{"f":"x","i":[{"k":"","t":"on","m":1}]}]"#),
            Err(DecodeError::Invalid { index: 0, .. })
        ));
    }

    #[test]
    fn counts_are_summed() {
        assert_eq!(
            decode_counts(br#"{"pf":[{"f":"a","m":1,"rc":3},{"f":"b","m":1,"rc":4}]}"#).unwrap(),
            7
        );
    }

    #[test]
    fn real_sdk_fixtures_decode() {
        for name in [
            "python-10.7.0-debug-bulk.json",
            "nodejs-11.11.2-debug-bulk-properties.json",
        ] {
            let path = format!(
                "{}/../../fixtures/split-sdk/{name}",
                env!("CARGO_MANIFEST_DIR")
            );
            let text = std::fs::read_to_string(&path).unwrap();
            let v: serde_json::Value = serde_json::from_str(&text).unwrap();
            let body = serde_json::to_vec(&v["body"]).unwrap();
            let imps = decode_bulk(&body).unwrap();
            assert!(imps.len() >= 6, "{name}");
        }
    }
}
