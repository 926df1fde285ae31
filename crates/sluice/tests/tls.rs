//! TLS on the listener (`--tls-cert`/`--tls-key`, SPEC §6): a generated certificate, real
//! HTTPS clients on loopback.
#![allow(clippy::unwrap_used, clippy::expect_used)] // tests and tools: a broken setup should panic

use sluice::serve::{self, ServeOptions};
use std::path::Path;
use std::time::Duration;

struct Cert {
    cert_pem: String,
    key_pem: String,
}

fn generate() -> Cert {
    let rcgen::CertifiedKey { cert, signing_key } =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .expect("generate a certificate");
    Cert {
        cert_pem: cert.pem(),
        key_pem: signing_key.serialize_pem(),
    }
}

fn write(dir: &Path, c: &Cert) -> (std::path::PathBuf, std::path::PathBuf) {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, &c.cert_pem).expect("write cert");
    std::fs::write(&key, &c.key_pem).expect("write key");
    (cert, key)
}

fn options(dir: &Path, cert: &Path, key: &Path) -> ServeOptions {
    ServeOptions {
        listen: "127.0.0.1:0".parse().expect("address"),
        data_dir: dir.join("data"),
        admin_token: Some("tls-admin-token".into()),
        banner: false,
        tls_cert: Some(cert.to_path_buf()),
        tls_key: Some(key.to_path_buf()),
        ..ServeOptions::default()
    }
}

/// A server with a freshly generated certificate (the TempDir keeps its data alive).
async fn tls_server() -> (tempfile::TempDir, Cert, serve::Server) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let c = generate();
    let (cert, key) = write(tmp.path(), &c);
    let server = serve::start(options(tmp.path(), &cert, &key))
        .await
        .expect("starts with TLS");
    (tmp, c, server)
}

fn trusting(c: &Cert) -> reqwest::Client {
    sluice::install_crypto_provider();
    let root = reqwest::Certificate::from_pem(c.cert_pem.as_bytes()).expect("root cert");
    reqwest::Client::builder()
        .add_root_certificate(root)
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

#[tokio::test]
async fn https_serves_admin_and_ingest_with_a_generated_certificate() {
    let (_tmp, c, server) = tls_server().await;
    assert!(
        server.url("/").starts_with("https://"),
        "{}",
        server.url("/")
    );
    let client = trusting(&c);

    let r = client
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("healthz over TLS");
    assert_eq!(r.status(), 200);

    let r = client
        .post(server.url("/v1/environments"))
        .bearer_auth("tls-admin-token")
        .json(&serde_json::json!({"id": "prod", "name": "Prod", "sdkKeys": ["sdk-tls-key"]}))
        .send()
        .await
        .expect("admin over TLS");
    assert_eq!(r.status(), 201, "{:?}", r.text().await);

    let bulk = serde_json::json!([{"f": "flag", "i": [
        {"k": "user-1", "t": "on", "m": 1_700_000_000_000i64, "c": 1, "r": "default rule"}
    ]}]);
    let r = client
        .post(server.url("/api/testImpressions/bulk"))
        .bearer_auth("sdk-tls-key")
        .json(&bulk)
        .send()
        .await
        .expect("ingest over TLS");
    assert_eq!(r.status(), 200, "{:?}", r.text().await);
    assert_eq!(
        server.log.bounds("prod").await.map(|b| b.next).ok(),
        Some(1)
    );
    server.shutdown().await;
}

#[tokio::test]
async fn plain_http_and_untrusting_clients_get_no_answer() {
    let (_tmp, c, server) = tls_server().await;
    sluice::install_crypto_provider();
    let plain = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client");
    let http_url = format!("http://{}/healthz", server.addr);
    let r = plain.get(&http_url).send().await;
    assert!(
        r.is_err(),
        "plain HTTP to the TLS port must not be answered: {r:?}"
    );
    // A client that does not trust the certificate refuses the connection.
    let r = plain.get(server.url("/healthz")).send().await;
    let err = r.expect_err("an untrusted certificate is refused");
    assert!(err.is_connect(), "{err:?}");
    // The server is unharmed by both.
    let r = trusting(&c)
        .get(server.url("/healthz"))
        .send()
        .await
        .expect("a trusting client still gets through");
    assert_eq!(r.status(), 200);
    server.shutdown().await;
}

#[tokio::test]
async fn a_silent_connection_does_not_hold_up_other_clients() {
    let (_tmp, c, server) = tls_server().await;
    // Connections that never start their handshake (the handshake timeout is 10 s).
    let mut silent = Vec::new();
    for _ in 0..8 {
        silent.push(
            tokio::net::TcpStream::connect(server.addr)
                .await
                .expect("tcp connect"),
        );
    }
    let client = trusting(&c);
    for _ in 0..3 {
        let r = client
            .get(server.url("/healthz"))
            .send()
            .await
            .expect("served while others are silent");
        assert_eq!(r.status(), 200);
    }
    drop(silent);
    server.shutdown().await;
}

#[tokio::test]
async fn certificate_problems_are_start_up_errors() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let a = generate();
    let b = generate();
    let (cert, _) = write(tmp.path(), &a);
    let other_key = tmp.path().join("other-key.pem");
    std::fs::write(&other_key, &b.key_pem).expect("write key");

    let err = serve::start(options(tmp.path(), &cert, &other_key))
        .await
        .err()
        .expect("a key of another certificate is refused");
    assert!(
        format!("{err:#}").contains("do not form a usable pair"),
        "{err:#}"
    );

    let missing = tmp.path().join("missing.pem");
    let err = serve::start(options(tmp.path(), &missing, &other_key))
        .await
        .err()
        .expect("a missing certificate file is refused");
    assert!(format!("{err:#}").contains("missing.pem"), "{err:#}");

    let mut only_cert = options(tmp.path(), &cert, &other_key);
    only_cert.tls_key = None;
    let err = serve::start(only_cert)
        .await
        .err()
        .expect("a certificate without a key is refused");
    assert!(format!("{err:#}").contains("go together"), "{err:#}");
}
