//! Names sluice gives things in JetStream: streams, subjects, buckets, keys.
//!
//! Environment ids (`[A-Za-z0-9_.-]`) may hold `.`, a subject token separator, which
//! stream names refuse; [`env_token`] escapes them injectively. Meta keys are arbitrary
//! strings; [`encode_key`] maps them injectively onto KV's key alphabet.

/// Prefix of every impression-log stream (`SLUICE_LOG_<token>`).
pub const LOG_STREAM_PREFIX: &str = "SLUICE_LOG_";
/// Subject prefix of log messages (`sluice.log.<token>`).
const LOG_SUBJECT_PREFIX: &str = "sluice.log.";
/// Core-NATS subject on which a writer announces an environment's new committed end.
pub const END_SUBJECT_PREFIX: &str = "sluice.end.";
/// Core-NATS subject prefix on which a node takes appends for the environments it is the
/// appender of (`sluice.append.<encoded node name>`).
const APPEND_SUBJECT_PREFIX: &str = "sluice.append.";

/// `[A-Za-z0-9-]` kept; `_` → `__`; `.` → `_d` (injective, and a valid stream name and
/// subject token).
pub fn env_token(env: &str) -> String {
    let mut out = String::with_capacity(env.len() + 4);
    for c in env.chars() {
        match c {
            '_' => out.push_str("__"),
            '.' => out.push_str("_d"),
            c => out.push(c),
        }
    }
    out
}

pub fn log_stream(env: &str) -> String {
    format!("{LOG_STREAM_PREFIX}{}", env_token(env))
}

pub fn log_subject(env: &str) -> String {
    format!("{LOG_SUBJECT_PREFIX}{}", env_token(env))
}

pub fn end_subject(env: &str) -> String {
    format!("{END_SUBJECT_PREFIX}{}", env_token(env))
}

/// The subject node `node` takes forwarded appends on (node names are arbitrary strings:
/// encoded like KV keys, free of `.`, `*`, `>` and whitespace).
pub fn append_subject(node: &str) -> String {
    format!("{APPEND_SUBJECT_PREFIX}{}", encode_key(node))
}

/// The environment whose token is `token` (inverse of [`env_token`]).
pub fn env_from_token(token: &str) -> Option<String> {
    let mut out = String::with_capacity(token.len());
    let mut chars = token.chars();
    while let Some(c) = chars.next() {
        match c {
            '_' => match chars.next()? {
                '_' => out.push('_'),
                'd' => out.push('.'),
                _ => return None,
            },
            c => out.push(c),
        }
    }
    Some(out)
}

/// KV keys: `[A-Za-z0-9/-]` kept, `_` → `__`, any other byte → `_XX` (hex). Keeps keys
/// free of `.` (no empty tokens) and of characters KV refuses.
pub fn encode_key(key: &str) -> String {
    let mut out = String::with_capacity(key.len() + 8);
    for b in key.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' => out.push(b as char),
            b'_' => out.push_str("__"),
            b => out.push_str(&format!("_{b:02X}")),
        }
    }
    out
}

pub fn decode_key(encoded: &str) -> Option<String> {
    let bytes = encoded.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            if bytes.get(i + 1) == Some(&b'_') {
                out.push(b'_');
                i += 2;
            } else {
                let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
                out.push(u8::from_str_radix(hex, 16).ok()?);
                i += 3;
            }
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn env_tokens_are_valid_names() {
        assert_eq!(env_token("prod.eu_1-x"), "prod_deu__1-x");
        assert_eq!(log_stream("a.b"), "SLUICE_LOG_a_db");
        assert_eq!(log_subject("a_b"), "sluice.log.a__b");
        assert_eq!(
            env_from_token("prod_deu__1-x").as_deref(),
            Some("prod.eu_1-x")
        );
        assert_eq!(env_from_token("bad_x"), None);
        assert_eq!(append_subject("host 1.a"), "sluice.append.host_201_2Ea");
    }

    #[test]
    fn keys_escape_what_kv_refuses() {
        assert_eq!(encode_key("int-1/2025.gap"), "int-1/2025_2Egap");
        assert_eq!(encode_key("a_b c"), "a__b_20c");
        assert_eq!(decode_key("a__b_20c").as_deref(), Some("a_b c"));
    }

    proptest! {
        #[test]
        fn env_tokens_are_injective(env in "[A-Za-z0-9_.-]{1,64}") {
            let t = env_token(&env);
            prop_assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
            prop_assert_eq!(env_from_token(&t), Some(env));
        }

        #[test]
        fn keys_round_trip(key in ".{0,40}") {
            let e = encode_key(&key);
            prop_assert!(e.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'/' | b'-')));
            prop_assert_eq!(decode_key(&e), Some(key));
        }
    }
}
