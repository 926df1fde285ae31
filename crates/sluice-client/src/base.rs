//! Reading a server address as given on a command line: `localhost:8080`,
//! `http://127.0.0.1:8080/`, `https://sluice.example.com/base`.

use crate::ClientError;

/// The base URL of a sluice server. Without a scheme `http://` is assumed (so `localhost:8080`
/// works); a trailing `/` is dropped; only `http` and `https` are accepted.
pub fn server_url(server: &str) -> Result<url::Url, ClientError> {
    let trimmed = server.trim();
    let invalid = |reason: String| ClientError::InvalidServer {
        server: server.to_owned(),
        reason,
    };
    if trimmed.is_empty() {
        return Err(invalid("it is empty".to_owned()));
    }
    let with_scheme = if trimmed.contains("://") {
        trimmed.to_owned()
    } else {
        format!("http://{trimmed}")
    };
    let mut url = url::Url::parse(&with_scheme).map_err(|e| invalid(e.to_string()))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(invalid(format!(
            "the scheme {} is not http or https",
            url.scheme()
        )));
    }
    if url.cannot_be_a_base() || url.host().is_none() {
        return Err(invalid("it has no host".to_owned()));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid("it has a user name or password".to_owned()));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid("it has a query or a fragment".to_owned()));
    }
    let path = url.path().trim_end_matches('/').to_owned();
    url.set_path(&path);
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(s: &str) -> String {
        server_url(s).unwrap().to_string()
    }

    #[test]
    fn a_bare_host_and_port_is_http() {
        assert_eq!(ok("localhost:8080"), "http://localhost:8080/");
        assert_eq!(ok("127.0.0.1:8080"), "http://127.0.0.1:8080/");
        assert_eq!(ok(" [::1]:8080 "), "http://[::1]:8080/");
    }

    #[test]
    fn a_full_url_is_kept_without_its_trailing_slash() {
        assert_eq!(ok("http://127.0.0.1:8080/"), "http://127.0.0.1:8080/");
        assert_eq!(
            ok("https://sluice.example.com"),
            "https://sluice.example.com/"
        );
        assert_eq!(ok("http://h:1/base/"), "http://h:1/base");
    }

    #[test]
    fn other_schemes_and_empty_addresses_are_refused() {
        for bad in ["", "ftp://h/", "http://", "http://h/?q=1", "mailto:x@y"] {
            let e = server_url(bad).unwrap_err();
            assert!(matches!(e, ClientError::InvalidServer { .. }), "{bad}: {e}");
        }
    }
}
