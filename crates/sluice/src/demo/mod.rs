//! `sluice demo`: one command that shows the product working — a server with embedded
//! storage, simulated SDK traffic on two environments, six webhook receivers of which two
//! fail (one hangs, one answers 500) and heal later, and a live view of delivery and
//! isolation in the terminal (and the dashboard in a browser).

use crate::serve::{self, ServeOptions};
use serde_json::{Value, json};
use sluice_client::AdminClient;
use sluice_receiver::{self as receiver, FaultMode, ReceiverConfig, ReceiverHandle};
use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Stop after this many seconds (default: run until Ctrl-C).
    #[arg(long)]
    pub seconds: Option<u64>,
    /// When the failing receivers heal.
    #[arg(long, default_value_t = 40)]
    pub heal_after: u64,
    /// Impressions per second of simulated SDK traffic.
    #[arg(long, default_value_t = 2000)]
    pub rate: u64,
    /// Address for the demo server (the dashboard is at /).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: std::net::SocketAddr,
    /// Data directory (default: a fresh temporary directory).
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
}

struct Dest {
    id: &'static str,
    role: &'static str,
    receiver: ReceiverHandle,
    fault: Option<FaultMode>,
}

const ADMIN: &str = "demo-admin-token";

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    crate::install_crypto_provider();
    let tmp = tempfile::tempdir()?;
    let data_dir = args
        .data_dir
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    let server = serve::start(ServeOptions {
        listen: args.listen,
        data_dir,
        allow_private_destinations: true,
        admin_token: Some(ADMIN.into()),
        banner: false,
        ..ServeOptions::default()
    })
    .await?;
    let base = server.url("");
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let admin = AdminClient::with_http(&base, ADMIN, client.clone())?;
    for (id, name, key) in [
        ("web", "Web", "demo-sdk-key-web"),
        ("mobile", "Mobile", "demo-sdk-key-mobile"),
    ] {
        admin
            .create_environment(&json!({"id": id, "name": name, "sdkKeys": [key]}))
            .await?;
    }
    let plan: [(&str, &str, Option<FaultMode>); 6] = [
        ("analytics", "healthy", None),
        ("warehouse", "healthy", None),
        ("experiments", "healthy", None),
        ("crm", "healthy", None),
        ("legacy-hangs", "hangs", Some(FaultMode::Hang)),
        ("broken-500", "answers 500", Some(FaultMode::Status(500))),
    ];
    let mut dests = Vec::new();
    for (id, role, fault) in plan {
        let r = receiver::start(ReceiverConfig {
            quiet: true,
            mode: fault.clone().unwrap_or(FaultMode::Ok),
            ..ReceiverConfig::default()
        })
        .await?;
        let body = json!({
            "id": id, "name": id, "url": r.url("/hook"), "environments": ["web", "mobile"],
            "flushIntervalMs": 1000,
            "protection": {"initialCooldownMs": 2000, "maxCooldownMs": 10000, "requestTimeoutMs": 3000}
        });
        admin.create_integration(&body).await?;
        dests.push(Dest {
            id,
            role,
            receiver: r,
            fault,
        });
    }
    println!("sluice demo — server {base}  (dashboard: {base}/  admin token: {ADMIN})");
    println!(
        "SDK traffic: {} impressions/s on environments web and mobile; 2 of 6 destinations fail until t={}s\n",
        args.rate, args.heal_after
    );

    // Simulated SDK traffic: 10 requests a second, alternating environments.
    let traffic = {
        let client = client.clone();
        let base = base.clone();
        let per_request = (args.rate / 10).max(1);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            let flags = ["new_checkout", "dark_mode", "search_v2", "onboarding"];
            let mut seq: u64 = 0;
            loop {
                tick.tick().await;
                seq += 1;
                let key = if seq.is_multiple_of(2) {
                    "demo-sdk-key-web"
                } else {
                    "demo-sdk-key-mobile"
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_millis() as i64)
                    .unwrap_or(0);
                let groups: Vec<Value> = flags
                    .iter()
                    .map(|f| {
                        let items: Vec<Value> = (0..per_request / 4)
                            .map(|i| json!({"k": format!("user-{}", (seq * 31 + i) % 5000), "t": if i % 3 == 0 { "on" } else { "off" }, "m": now, "c": 1700000000000i64, "r": "default rule"}))
                            .collect();
                        json!({"f": f, "i": items})
                    })
                    .collect();
                let _ = client
                    .post(format!("{base}/api/testImpressions/bulk"))
                    .bearer_auth(key)
                    .header("SplitSDKVersion", "python-10.7.0")
                    .header("SplitSDKMachineName", "demo-host")
                    .json(&groups)
                    .send()
                    .await;
            }
        })
    };

    let started = Instant::now();
    let mut healed = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = tokio::signal::ctrl_c() => break,
        }
        let t = started.elapsed().as_secs();
        if !healed && t >= args.heal_after {
            healed = true;
            for d in &dests {
                if d.fault.is_some() {
                    d.receiver.set_mode(FaultMode::Ok);
                }
            }
        }
        let mut out = String::new();
        out.push_str(&format!(
            "\x1b[2J\x1b[H sluice demo  t={t:>3}s   dashboard {base}/   (Ctrl-C to stop)\n"
        ));
        out.push_str(if healed {
            " failing destinations have HEALED: watch their backlog drain\n\n"
        } else {
            " two destinations are failing: watch them pause while the others stay on time\n\n"
        });
        out.push_str(&format!(
            " {:<14} {:<12} {:<9} {:>10} {:>8} {:>12} {:>8}  {}\n",
            "integration",
            "destination",
            "state",
            "lag (imp)",
            "lag (s)",
            "delivered",
            "failed",
            "last error"
        ));
        for d in &dests {
            let st = admin.integration_status(d.id).await.unwrap_or(Value::Null);
            let role = if healed && d.fault.is_some() {
                "healed"
            } else {
                d.role
            };
            let err = st["lastError"]
                .as_str()
                .unwrap_or("")
                .chars()
                .take(40)
                .collect::<String>();
            out.push_str(&format!(
                " {:<14} {:<12} {:<9} {:>10} {:>8.1} {:>12} {:>8}  {}\n",
                d.id,
                role,
                st["state"].as_str().unwrap_or("?"),
                st["lagImpressions"].as_u64().unwrap_or(0),
                st["lagSeconds"].as_f64().unwrap_or(0.0),
                st["deliveredImpressions"].as_u64().unwrap_or(0),
                st["failedAttempts"].as_u64().unwrap_or(0),
                err
            ));
        }
        let mut stdout = std::io::stdout().lock();
        let _ = stdout.write_all(out.as_bytes());
        let _ = stdout.flush();
        if args.seconds.is_some_and(|s| t >= s) {
            break;
        }
    }
    traffic.abort();
    println!("\nstopping…");
    server.shutdown().await;
    Ok(())
}
