//! redis-rs with IAM authentication: a `TokenRefresher` as the credentials
//! provider of a redis-rs connection, credentials from the AWS default chain.
//!
//! A replication group gets a multiplexed connection; a serverless cache (which
//! speaks the cluster protocol) a cluster connection. The example runs PING,
//! SET and GET, then INCR once a second for `--seconds`, and prints the
//! refresher's status as one JSON line.
//!
//! ```text
//! cargo run --example redis_rs -- --url rediss://my-group.xxxxxx.use1.cache.amazonaws.com:6379 \
//!     --replication-group my-group --user-id iam-user-01 --region us-east-1
//! ```
//!
//! `ELASTICACHE_TOKEN_REFRESH_INTERVAL` and `ELASTICACHE_REAUTH_AFTER` are read
//! from the environment.

use std::error::Error;
use std::process::ExitCode;
use std::time::{Duration, UNIX_EPOCH};

use clap::Parser;
use elasticache_iam::TokenRefresher;
use redis::aio::ConnectionLike;
use redis::cluster::ClusterClientBuilder;
use redis::{AsyncConnectionConfig, Client, TlsCertificates};

#[derive(Parser)]
struct Args {
    /// `rediss://host:port` of the cache's endpoint.
    #[arg(long)]
    url: String,
    /// A serverless cache's name (cluster protocol).
    #[arg(
        long,
        conflicts_with = "replication_group",
        required_unless_present = "replication_group"
    )]
    serverless_cache: Option<String>,
    /// A replication group's id.
    #[arg(long)]
    replication_group: Option<String>,
    /// The IAM-enabled user id.
    #[arg(long)]
    user_id: String,
    /// The cache's region.
    #[arg(long)]
    region: String,
    /// A CA certificate (PEM) to trust instead of the system's roots.
    #[arg(long)]
    ca_file: Option<std::path::PathBuf>,
    /// How long to keep running commands after the first round.
    #[arg(long, default_value_t = 0)]
    seconds: u64,
}

#[tokio::main]
async fn main() -> ExitCode {
    // Errors are printed with Display: one readable message, not Debug.
    match run_example(Args::parse()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run_example(args: Args) -> Result<(), Box<dyn Error>> {
    let builder = match (&args.serverless_cache, &args.replication_group) {
        (Some(name), _) => TokenRefresher::builder().serverless_cache(name),
        (None, Some(id)) => TokenRefresher::builder().replication_group(id),
        (None, None) => unreachable!("clap requires one"),
    };
    // Credentials: the AWS default chain, loaded once.
    let refresher = builder
        .user_id(&args.user_id)
        .region(&args.region)
        .from_env()
        .build()
        .await?;
    // Fail early, with the reason, if no token can be signed.
    refresher.token().await?;

    let certs = TlsCertificates {
        client_tls: None,
        root_cert: args.ca_file.as_ref().map(std::fs::read).transpose()?,
    };
    if args.serverless_cache.is_some() {
        let client = ClusterClientBuilder::new(vec![args.url.as_str()])
            .certs(certs)
            .set_credentials_provider(refresher.clone())
            .build()?;
        run(&mut client.get_async_connection().await?, args.seconds).await?;
    } else {
        let config = AsyncConnectionConfig::new().set_credentials_provider(refresher.clone());
        let client = Client::build_with_tls(args.url.as_str(), certs)?;
        let mut con = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        run(&mut con, args.seconds).await?;
    }

    let status = refresher.status();
    let secs = |t: Option<std::time::SystemTime>| {
        t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
    };
    println!(
        "{}",
        serde_json::json!({
            "rotations": status.rotations,
            "consecutive_failures": status.consecutive_failures,
            "signed_at": secs(status.signed_at),
            "usable_until": secs(status.usable_until),
        })
    );
    Ok(())
}

async fn run(con: &mut impl ConnectionLike, seconds: u64) -> Result<(), Box<dyn Error>> {
    let pong: String = redis::cmd("PING").query_async(con).await?;
    if pong != "PONG" {
        return Err(format!("PING answered {pong:?}").into());
    }
    let _: () = redis::cmd("SET")
        .arg("example:key")
        .arg("value")
        .arg("EX")
        .arg(60)
        .query_async(con)
        .await?;
    let value: String = redis::cmd("GET")
        .arg("example:key")
        .query_async(con)
        .await?;
    if value != "value" {
        return Err(format!("GET answered {value:?}, not the value just set").into());
    }
    for _ in 0..seconds {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let _: i64 = redis::cmd("INCR")
            .arg("example:counter")
            .query_async(con)
            .await?;
    }
    Ok(())
}
