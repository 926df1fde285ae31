//! How the admin commands print: aligned tables and key-value blocks for people, the
//! server's JSON unchanged (`--json`) for scripts.

use serde_json::Value;
use std::fmt::Write as _;

/// A value as one table cell: strings without quotes, `null` as `-`, a list of scalars
/// joined with `, `, anything else as compact JSON.
pub fn cell(v: &Value) -> String {
    match v {
        Value::Null => "-".to_owned(),
        Value::String(s) => s.clone(),
        Value::Bool(_) | Value::Number(_) => v.to_string(),
        Value::Array(items) if items.iter().all(is_scalar) => {
            if items.is_empty() {
                "-".to_owned()
            } else {
                items.iter().map(cell).collect::<Vec<_>>().join(", ")
            }
        }
        other => other.to_string(),
    }
}

/// Members holding a time in milliseconds since the Unix epoch.
const TIME_KEYS: &[&str] = &[
    "time",
    "pausedUntil",
    "lastSuccess",
    "recordedAt",
    "from",
    "to",
    "at",
    "until",
    "createdAt",
    "startedAt",
    "finishedAt",
    "pausedAt",
    "lastErrorAt",
];

/// The member `key` of an object as a cell: times (ms since the epoch) as RFC 3339 UTC.
pub fn member(item: &Value, key: &str) -> String {
    let v = item.get(key).unwrap_or(&Value::Null);
    if TIME_KEYS.contains(&key)
        && let Some(ms) = v.as_i64()
        && let Some(t) = rfc3339(ms)
    {
        return t;
    }
    cell(v)
}

fn rfc3339(ms: i64) -> Option<String> {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok()?;
    t.format(&time::format_description::well_known::Rfc3339)
        .ok()
}

fn is_scalar(v: &Value) -> bool {
    !matches!(v, Value::Array(_) | Value::Object(_))
}

/// Rows under `headers`, each column as wide as its widest cell, two spaces apart; the
/// last column is not padded. An empty list prints `(none)` under the headers.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        let mut l = String::new();
        for (i, (c, &w)) in cells.zip(&widths).enumerate() {
            if i > 0 {
                l.push_str("  ");
            }
            let _ = write!(l, "{c:<w$}");
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(&mut headers.iter().copied());
    for row in rows {
        line(&mut row.iter().map(String::as_str));
    }
    if rows.is_empty() {
        out.push_str("(none)\n");
    }
    out
}

/// The members `columns` (JSON names) of each object in `items`, as table rows.
pub fn rows(items: &Value, columns: &[&str]) -> Vec<Vec<String>> {
    items
        .as_array()
        .map(|a| {
            a.iter()
                .map(|item| columns.iter().map(|c| member(item, c)).collect())
                .collect()
        })
        .unwrap_or_default()
}

/// An object as `key: value` lines, keys padded to one width (every member, or only
/// `keys` in that order when given). A non-object is printed as one cell.
pub fn block(v: &Value, keys: Option<&[&str]>) -> String {
    let Some(obj) = v.as_object() else {
        return format!("{}\n", cell(v));
    };
    let keys: Vec<&str> = match keys {
        Some(k) => k.to_vec(),
        None => obj.keys().map(String::as_str).collect(),
    };
    let width = keys.iter().map(|k| k.chars().count()).max().unwrap_or(0) + 1;
    let mut out = String::new();
    for k in keys {
        let key = format!("{k}:");
        let _ = writeln!(out, "{key:<width$} {}", member(v, k));
    }
    out
}

/// Writes `text` to stdout; a closed pipe (`| head`) is not an error worth a panic.
pub fn emit(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Pretty JSON on stdout (`--json`).
pub fn emit_json(v: &Value) {
    emit(&format!(
        "{}\n",
        serde_json::to_string_pretty(v).unwrap_or_default()
    ));
}

/// The server's answer as `--json` asked, else the human text.
pub fn answer(json: bool, v: &Value, human: &str) {
    if json {
        emit_json(v);
    } else {
        emit(human);
    }
}

/// Sets `body[key]` when an option was given (request bodies hold only what the user named).
pub fn set_given(body: &mut Value, key: &str, value: Option<impl Into<Value>>) {
    if let Some(v) = value {
        body[key] = v.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_table_aligns_columns_and_trims_the_last() {
        let t = table(
            &["ID", "NAME", "KEYS"],
            &[
                vec!["a".into(), "Production".into(), "1".into()],
                vec!["bbbb".into(), "QA".into(), "".into()],
            ],
        );
        assert_eq!(t, "ID    NAME        KEYS\na     Production  1\nbbbb  QA\n");
    }

    #[test]
    fn an_empty_table_says_none() {
        assert_eq!(table(&["ID"], &[]), "ID\n(none)\n");
    }

    #[test]
    fn cells_and_blocks_read_like_text() {
        assert_eq!(cell(&json!(null)), "-");
        assert_eq!(cell(&json!(["a", "b"])), "a, b");
        assert_eq!(cell(&json!({"x": 1})), r#"{"x":1}"#);
        assert_eq!(
            block(&json!({"id": "e1", "sdkKeys": ["k"], "n": 3}), None),
            "id:      e1\nn:       3\nsdkKeys: k\n"
        );
        assert_eq!(
            block(
                &json!({"time": 1_700_000_000_123_i64, "x": 1}),
                Some(&["time"])
            ),
            "time: 2023-11-14T22:13:20.123Z\n"
        );
    }
}
