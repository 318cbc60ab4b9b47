//! `elasticache-iam-token`: print an IAM auth token for Amazon ElastiCache or
//! MemoryDB, for `valkey-cli` / `redis-cli` and scripts.
//!
//! Contract: the token alone on stdout followed by a newline, exit status 0. On
//! any error: nothing on stdout, one line on stderr, exit status 2 for usage
//! errors (bad or missing flags) and 1 for anything else (no credentials, no
//! region).

use std::error::Error as StdError;
use std::process::ExitCode;
use std::time::SystemTime;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::provider::ProvideCredentials;
use clap::error::ErrorKind as ClapErrorKind;
use clap::{ArgGroup, Parser};
use elasticache_iam::{AuthToken, Error, ErrorKind, TokenSigner, display_chain};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

const AFTER_HELP: &str = "\
Credentials come from the AWS default chain: environment variables
(AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN), shared profiles
(AWS_PROFILE), SSO, web identity (EKS IRSA), ECS task role and EKS Pod Identity
container credentials, and EC2 instance metadata. So does the region, unless
--region is given (AWS_REGION, AWS_DEFAULT_REGION, the profile's region).

The token is valid for 15 minutes, or less if the credentials that signed it
expire sooner. It is the password of the IAM-enabled user, over TLS:

  valkey-cli --tls -h my-cache-abc123.serverless.use1.cache.amazonaws.com \\
    --user iam-user-01 \\
    --pass \"$(elasticache-iam-token --serverless-cache my-cache --user-id iam-user-01)\"

(valkey-cli and redis-cli also read the password from REDISCLI_AUTH, which keeps
it out of the process list.)

Exit status: 0 with the token alone on stdout; 2 for usage errors; 1 for
anything else (no credentials, no region), with one line on stderr.";

/// Print an IAM authentication token for Amazon ElastiCache (Valkey / Redis OSS)
/// or MemoryDB.
#[derive(Debug, Parser)]
#[command(name = "elasticache-iam-token", version, after_help = AFTER_HELP)]
#[command(group(
    ArgGroup::new("target")
        .required(true)
        .args(["serverless_cache", "replication_group", "memorydb_cluster"])
))]
struct Args {
    /// Name of the ElastiCache Serverless cache (its name, not its endpoint host
    /// name). Lowercased.
    #[arg(long, value_name = "NAME")]
    serverless_cache: Option<String>,

    /// Id of the node-based ElastiCache replication group (its id, not its
    /// endpoint host name). Lowercased.
    #[arg(long, value_name = "ID")]
    replication_group: Option<String>,

    /// Name of the MemoryDB cluster. Signed as given.
    #[arg(long, value_name = "NAME")]
    memorydb_cluster: Option<String>,

    /// The IAM-enabled user's id, which must equal its user name. Lowercased for
    /// ElastiCache.
    #[arg(long, value_name = "ID")]
    user_id: String,

    /// AWS region of the cache, such as us-east-1. Defaults to the region the
    /// AWS default chain finds.
    #[arg(long, value_name = "REGION")]
    region: Option<String>,

    /// Sign as of this instant instead of now, such as 2024-01-15T12:34:56Z:
    /// reproducible output, or a check for clock skew.
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    signing_time: Option<SystemTime>,
}

fn parse_rfc3339(value: &str) -> Result<SystemTime, String> {
    OffsetDateTime::parse(value, &Rfc3339)
        .map(SystemTime::from)
        .map_err(|_| "expected an RFC 3339 instant such as 2024-01-15T12:34:56Z".to_owned())
}

/// Why the program failed: one line for stderr and an exit status.
struct Failure {
    status: u8,
    message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Self {
            status: 2,
            message: message.into(),
        }
    }

    fn runtime(message: impl Into<String>) -> Self {
        Self {
            status: 1,
            message: message.into(),
        }
    }

    /// A library error about values that came from flags: each problem
    /// prefixed with its flag.
    fn from_flag(err: Error) -> Self {
        let problems = match err.problems() {
            [] => std::slice::from_ref(&err),
            several => several,
        };
        let lines: Vec<Option<String>> = problems
            .iter()
            .map(|problem| Some(format!("{}: {}", flag(problem)?, one_line(problem))))
            .collect();
        match lines.into_iter().collect::<Option<Vec<String>>>() {
            Some(lines) if lines.len() == 1 => Self::usage(lines.concat()),
            Some(lines) => Self::usage(format!(
                "{} problems: {}",
                lines.len(),
                lines
                    .iter()
                    .enumerate()
                    .map(|(i, line)| format!("({}) {line}", i + 1))
                    .collect::<Vec<_>>()
                    .join("; ")
            )),
            None => Self::runtime(one_line(&err)),
        }
    }
}

/// The flag that gave the value a configuration error is about.
fn flag(err: &Error) -> Option<&'static str> {
    Some(match err.parameter()? {
        "serverless_cache" => "--serverless-cache",
        "replication_group" => "--replication-group",
        "memorydb_cluster" => "--memorydb-cluster",
        "user_id" => "--user-id",
        "region" => "--region",
        _ => return None,
    })
}

/// An error and its sources on one line, whitespace folded.
fn one_line(err: &(dyn StdError + 'static)) -> String {
    collapse_whitespace(&display_chain(err))
}

/// Lines and runs of spaces folded into single spaces.
fn collapse_whitespace(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn main() -> ExitCode {
    let args = match Args::try_parse() {
        Ok(args) => args,
        Err(err) => {
            if matches!(
                err.kind(),
                ClapErrorKind::DisplayHelp | ClapErrorKind::DisplayVersion
            ) {
                let _ = err.print();
                return ExitCode::SUCCESS;
            }
            // clap's first paragraph says what is wrong; the usage block follows.
            let rendered = err.render().to_string();
            let first = rendered.split("\n\n").next().unwrap_or("invalid arguments");
            let first = collapse_whitespace(first.strip_prefix("error: ").unwrap_or(first));
            eprintln!("elasticache-iam-token: error: {first} (see --help)");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("elasticache-iam-token: error: cannot start the async runtime: {err}");
            return ExitCode::from(1);
        }
    };
    match runtime.block_on(run(args)) {
        Ok(token) => {
            println!("{}", token.expose_secret());
            ExitCode::SUCCESS
        }
        Err(failure) => {
            eprintln!("elasticache-iam-token: error: {}", failure.message);
            ExitCode::from(failure.status)
        }
    }
}

/// Validate the flags, load credentials and region from the default chain, sign.
async fn run(args: Args) -> Result<AuthToken, Failure> {
    let signer = TokenSigner::builder();
    let builder = match (
        &args.serverless_cache,
        &args.replication_group,
        &args.memorydb_cluster,
    ) {
        (Some(name), None, None) => signer.serverless_cache(name),
        (None, Some(id), None) => signer.replication_group(id),
        (None, None, Some(name)) => signer.memorydb_cluster(name),
        _ => return Err(Failure::usage("give exactly one target flag (see --help)")),
    }
    .user_id(&args.user_id);
    // Everything the flags say is checked, together, before any credential
    // lookup; without --region, with a stand-in (the chain's is checked when
    // it is found).
    builder
        .clone()
        .region(args.region.as_deref().unwrap_or("us-east-1"))
        .build()
        .map_err(Failure::from_flag)?;

    let mut loader = aws_config::defaults(BehaviorVersion::latest());
    if let Some(region) = &args.region {
        loader = loader.region(Region::new(region.clone()));
    }
    let config = loader.load().await;

    let region = config.region().ok_or_else(|| {
        Failure::runtime(
            "no AWS region found: pass --region, or set AWS_REGION, AWS_DEFAULT_REGION \
             or the region of the AWS config profile",
        )
    })?;
    let signer = builder.region(region.as_ref()).build().map_err(|err| {
        Failure::runtime(format!(
            "region from the AWS default chain: {}",
            one_line(&err)
        ))
    })?;

    let provider = config
        .credentials_provider()
        .ok_or_else(|| Failure::runtime("no AWS credentials provider is configured"))?;
    let credentials = provider.provide_credentials().await.map_err(|err| {
        Failure::runtime(format!(
            "no AWS credentials from the default chain (environment, profile, SSO, web identity, \
             container, instance metadata): {}",
            one_line(&err)
        ))
    })?;

    let signing_time = match args.signing_time {
        Some(at) => at,
        None => config
            .time_source()
            .ok_or_else(|| Failure::runtime("no clock configured in the AWS SDK config"))?
            .now(),
    };
    signer.sign(&credentials, signing_time).map_err(|err| {
        let prefix = match err.kind() {
            ErrorKind::Credentials => "credentials: ",
            _ => "",
        };
        Failure::runtime(format!("{prefix}{}", one_line(&err)))
    })
}
