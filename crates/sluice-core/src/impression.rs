//! The impression as it moves through sluice.

use std::borrow::Cow;

/// Request-level facts shared by every impression of one ingest request (or one group of
/// them): they are stored once per log entry, not once per impression.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Context<'a> {
    pub environment_name: Cow<'a, str>,
    pub sdk: Cow<'a, str>,
    pub sdk_version: Cow<'a, str>,
    pub machine_name: Option<Cow<'a, str>>,
    pub machine_ip: Option<Cow<'a, str>>,
}

impl Context<'_> {
    pub fn into_owned(self) -> Context<'static> {
        Context {
            environment_name: Cow::Owned(self.environment_name.into_owned()),
            sdk: Cow::Owned(self.sdk.into_owned()),
            sdk_version: Cow::Owned(self.sdk_version.into_owned()),
            machine_name: self.machine_name.map(|s| Cow::Owned(s.into_owned())),
            machine_ip: self.machine_ip.map(|s| Cow::Owned(s.into_owned())),
        }
    }
}

/// One impression's own fields, as decoded from any ingest format.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImpressionIn<'a> {
    pub key: Cow<'a, str>,
    pub split: Cow<'a, str>,
    pub treatment: Cow<'a, str>,
    pub time: i64,
    pub bucketing_key: Option<Cow<'a, str>>,
    pub label: Option<Cow<'a, str>>,
    pub change_number: i64,
    pub properties: Option<Cow<'a, str>>,
}

/// Splits a `SplitSDKVersion` header (`python-10.7.0`, `nodejs-11.11.2`, `go-6.1.0`) into
/// language and version at the first `-`. A value with no `-` is all language.
pub fn split_sdk_version(header: &str) -> (&str, &str) {
    match header.split_once('-') {
        Some((lang, version)) => (lang, version),
        None => (header, ""),
    }
}

/// Machine headers: absent, empty, or the SDKs' placeholder `NA` mean "unknown" (null).
pub fn machine_header(value: Option<&str>) -> Option<&str> {
    match value.map(str::trim) {
        None | Some("") => None,
        Some(v) if v.eq_ignore_ascii_case("NA") => None,
        Some(v) => Some(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sdk_version_splits_at_first_dash() {
        assert_eq!(split_sdk_version("python-10.7.0"), ("python", "10.7.0"));
        assert_eq!(split_sdk_version("nodejs-11.11.2"), ("nodejs", "11.11.2"));
        assert_eq!(
            split_sdk_version("javascript-10.0.0-beta.1"),
            ("javascript", "10.0.0-beta.1")
        );
        assert_eq!(split_sdk_version("custom"), ("custom", ""));
    }

    #[test]
    fn machine_na_is_null() {
        assert_eq!(machine_header(Some("NA")), None);
        assert_eq!(machine_header(Some("na")), None);
        assert_eq!(machine_header(Some("")), None);
        assert_eq!(machine_header(None), None);
        assert_eq!(machine_header(Some("10.1.2.3")), Some("10.1.2.3"));
    }
}
