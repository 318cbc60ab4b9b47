//! `elasticache-localstack`: run the local ElastiCache stand-in from the command
//! line until terminated.
//!
//! ```text
//! elasticache-localstack (--serverless-cache NAME [--shards N] [--replicas R]
//!                         | --replication-group ID [--cluster-mode [--shards N] [--replicas R]]
//!                         | --memorydb-cluster NAME [--shards N] [--replicas R])
//!     --user-id ID --region REGION [--engine valkey|redis] [--port P]
//!     [--max-auth-age DUR] [--credential-lifetime DUR] [--env-file PATH] [--tls13-only]
//!     [--require-client-cert]
//! ```
//!
//! When ready it writes the env file (sourceable `KEY=VALUE` lines) and serves
//! until SIGINT / SIGTERM, then stops the upstream and removes its files.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{ArgGroup, Parser, ValueEnum};
use elasticache_localstack::{ClusterShape, Engine, Stack, StackConfig};

/// A local Amazon ElastiCache stand-in: TLS, IAM token verification and the
/// 12-hour rule in front of a real valkey-server, with mock AWS credential
/// endpoints and an admin endpoint.
#[derive(Debug, Parser)]
#[command(name = "elasticache-localstack", version)]
#[command(group(ArgGroup::new("target").required(true).args(["serverless_cache", "replication_group", "memorydb_cluster"])))]
struct Args {
    /// Act as an ElastiCache Serverless cache with this name: one endpoint
    /// (and a replica-read endpoint) in front of a real Valkey cluster.
    #[arg(long, value_name = "NAME")]
    serverless_cache: Option<String>,
    /// Act as a node-based replication group with this id: one primary
    /// (cluster mode disabled) unless --cluster-mode.
    #[arg(long, value_name = "ID")]
    replication_group: Option<String>,
    /// With --replication-group: cluster mode enabled, a real Valkey cluster
    /// with one front per node.
    #[arg(long)]
    cluster_mode: bool,
    /// Act as a MemoryDB cluster with this name (always a cluster).
    #[arg(long, value_name = "NAME")]
    memorydb_cluster: Option<String>,
    /// Shards of the cluster (--cluster-mode or --memorydb-cluster) [default: 3;
    /// serverless: 1]
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=1000))]
    shards: Option<u16>,
    /// Replicas per shard (--cluster-mode, --memorydb-cluster or
    /// --serverless-cache) [default: 1]
    #[arg(long, value_name = "R", value_parser = clap::value_parser!(u16).range(0..=5))]
    replicas: Option<u16>,
    /// The IAM-enabled user id (== user name) tokens must sign.
    #[arg(long, value_name = "ID")]
    user_id: String,
    /// The region tokens must be signed for.
    #[arg(long, value_name = "REGION")]
    region: String,
    /// The upstream server.
    #[arg(long, value_enum, default_value = "valkey")]
    engine: EngineArg,
    /// The front's TLS port (default: a free one).
    #[arg(long, value_name = "P", default_value_t = 0)]
    port: u16,
    /// Close connections whose last authentication is older than this (the 12-hour rule).
    #[arg(long, value_name = "DUR", default_value = "12h", value_parser = parse_duration)]
    max_auth_age: Duration,
    /// Lifetime of the temporary credentials the mock endpoints issue.
    #[arg(long, value_name = "DUR", default_value = "1h", value_parser = parse_duration)]
    credential_lifetime: Duration,
    /// Accept TLS 1.3 only, as ElastiCache public endpoints do (default: 1.2 and 1.3).
    #[arg(long)]
    tls13_only: bool,
    /// Mutual TLS: every front demands a client certificate signed by the
    /// stack's CA; one is made at start-up and its files are listed in the env
    /// file (REDIS_SSL_CERTFILE, REDIS_SSL_KEYFILE).
    #[arg(long)]
    require_client_cert: bool,
    /// Write the environment for clients here when ready.
    #[arg(long, value_name = "PATH")]
    env_file: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum EngineArg {
    Valkey,
    Redis,
}

/// `8s`, `250ms`, `10m`, `12h`.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    let n: u64 = number
        .parse()
        .map_err(|_| format!("expected a duration such as 8s, 10m or 12h, not {s:?}"))?;
    let secs = match unit {
        "ms" => return Ok(Duration::from_millis(n)),
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => {
            return Err(format!(
                "expected a duration such as 8s, 10m or 12h, not {s:?}"
            ));
        }
    };
    if secs == 0 {
        return Err("the duration must be positive".to_owned());
    }
    Ok(Duration::from_secs(secs))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "elasticache_localstack=info".into()),
        )
        .with_writer(std::io::stderr)
        // Colour only for a terminal: a log file or CI output stays plain.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    let shape = |config: StackConfig, default: ClusterShape| {
        config.cluster_mode(
            args.shards.map_or(default.shards, usize::from),
            args.replicas.map_or(default.replicas, usize::from),
        )
    };
    let config = match (
        &args.serverless_cache,
        &args.replication_group,
        &args.memorydb_cluster,
    ) {
        (Some(name), None, None) => shape(StackConfig::serverless(name), ClusterShape::SERVERLESS),
        (None, Some(id), None) if args.cluster_mode => {
            shape(StackConfig::replication_group(id), ClusterShape::DEFAULT)
        }
        (None, Some(id), None) => StackConfig::replication_group(id),
        (None, None, Some(name)) => shape(StackConfig::memorydb(name), ClusterShape::DEFAULT),
        _ => unreachable!("clap enforces exactly one target"),
    };
    if args.cluster_mode && args.replication_group.is_none() {
        eprintln!("elasticache-localstack: error: --cluster-mode goes with --replication-group");
        return ExitCode::from(2);
    }
    let clustered = args.cluster_mode || args.replication_group.is_none();
    if !clustered && (args.shards.is_some() || args.replicas.is_some()) {
        eprintln!(
            "elasticache-localstack: error: --shards and --replicas need --cluster-mode (or \
             --memorydb-cluster, --serverless-cache)"
        );
        return ExitCode::from(2);
    }
    let config = config
        .user_id(&args.user_id)
        .region(&args.region)
        .engine(match args.engine {
            EngineArg::Valkey => Engine::Valkey,
            EngineArg::Redis => Engine::Redis,
        })
        .port(args.port)
        .max_auth_age(args.max_auth_age)
        .credential_lifetime(args.credential_lifetime)
        .tls13_only(args.tls13_only)
        .require_client_cert(args.require_client_cert);
    let stack = match Stack::start(config).await {
        Ok(stack) => stack,
        Err(e) => {
            eprintln!("elasticache-localstack: error: {e}");
            return ExitCode::from(1);
        }
    };
    let env: String = stack
        .env_vars()
        .iter()
        .map(|(k, v)| format!("{k}={}\n", shell_quote(v)))
        .collect();
    if let Some(path) = &args.env_file
        && let Err(e) = std::fs::write(path, &env)
    {
        eprintln!(
            "elasticache-localstack: error: writing {}: {e}",
            path.display()
        );
        return ExitCode::from(1);
    }
    eprintln!(
        "elasticache-localstack: ready on 127.0.0.1:{}",
        stack.endpoint().port()
    );
    eprint!("{env}");

    let mut terminate =
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(signal) => signal,
            Err(e) => {
                eprintln!("elasticache-localstack: error: cannot listen for SIGTERM: {e}");
                return ExitCode::from(1);
            }
        };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    eprintln!("elasticache-localstack: stopping");
    stack.stop_upstream().await;
    drop(stack);
    ExitCode::SUCCESS
}

/// Quote a value for `source` when it holds anything but safe characters.
fn shell_quote(value: &str) -> String {
    if value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-_./:=+@%,".contains(&b))
    {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', "'\\''"))
    }
}
