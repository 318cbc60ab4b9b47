//! `elasticache-iam-service`: the example HTTP service (see the library's
//! docs for its routes and the README for its settings).
//!
//! ```text
//! USE_IAM_AUTH=true REDIS_URL=rediss://my-cache-abc123.serverless.use1.cache.amazonaws.com:6379 \
//! ELASTICACHE_SERVERLESS_CACHE=my-cache ELASTICACHE_USER_ID=iam-user-01 AWS_REGION=us-east-1 \
//!   cargo run -p elasticache-iam-service
//! ```

use std::process::ExitCode;

#[tokio::main]
async fn main() -> ExitCode {
    elasticache_iam_service::startup::run().await
}
