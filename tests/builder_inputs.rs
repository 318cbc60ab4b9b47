//! No numeric input to the builders makes the crate panic: every value is
//! either accepted or refused with a configuration error that names its
//! parameter (tokio's semaphore, bb8's builder and `Duration` arithmetic
//! panic on some of them if they get that far).

use std::time::Duration;

use elasticache_iam::{ConnectionConfig, ErrorKind, Pool, TokenRefresher};
use proptest::prelude::*;

/// Durations from zero to `Duration::MAX`, weighted towards the edges.
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        Just(Duration::ZERO),
        Just(Duration::from_nanos(1)),
        Just(Duration::MAX),
        (0u64..100_000, 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
        any::<u64>().prop_map(Duration::from_secs),
        (any::<u64>(), 0u32..1_000_000_000).prop_map(|(s, n)| Duration::new(s, n)),
    ]
}

fn size() -> impl Strategy<Value = u32> {
    prop_oneof![Just(0), Just(1), Just(u32::MAX), 0u32..64, any::<u32>()]
}

fn count() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0),
        Just(usize::MAX),
        Just(usize::MAX >> 3),
        Just((usize::MAX >> 3) + 1),
        0usize..64,
        any::<usize>(),
    ]
}

fn check<T: std::fmt::Debug>(
    result: Result<T, elasticache_iam::Error>,
) -> Result<(), TestCaseError> {
    if let Err(err) = result {
        prop_assert_eq!(err.kind(), ErrorKind::Configuration, "{}", err);
        prop_assert!(err.parameter().is_some(), "{}", err);
    }
    Ok(())
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn connection_config(
        port in any::<u16>(),
        db in any::<i64>(),
        refresh in duration(),
        reauth in duration(),
        max_age in duration(),
    ) {
        let result = ConnectionConfig::builder()
            .url("rediss://cache.example")
            .serverless_cache("my-cache")
            .user_id("app")
            .region("us-east-1")
            .port(port)
            .db(db)
            .token_refresh_interval(refresh)
            .reauth_after(reauth)
            .max_connection_age(max_age)
            .build();
        if let Ok(config) = &result {
            let lifecycle = config.lifecycle();
            prop_assert!(lifecycle.reauth_after < lifecycle.max_connection_age);
            prop_assert!(lifecycle.max_connection_age < Duration::from_secs(12 * 3600));
            prop_assert!(config.port() > 0 && config.db() >= 0);
        }
        check(result)?;
    }

    #[test]
    fn pool_builder(
        max_size in size(),
        min_idle in proptest::option::of(size()),
        connection_timeout in duration(),
        connect_timeout in duration(),
        response_timeout in proptest::option::of(duration()),
        idle_timeout in proptest::option::of(duration()),
        max_concurrent_connects in count(),
    ) {
        let config = ConnectionConfig::from_url("redis://127.0.0.1:1").unwrap();
        let result = runtime().block_on(
            Pool::builder(config)
                .max_size(max_size)
                .min_idle(min_idle)
                .connection_timeout(connection_timeout)
                .connect_timeout(connect_timeout)
                .response_timeout(response_timeout)
                .idle_timeout(idle_timeout)
                .max_concurrent_connects(max_concurrent_connects)
                .build_lazy(),
        );
        check(result)?;
    }

    #[test]
    fn refresher_builder(rotation in duration(), reauth in duration()) {
        let result = runtime().block_on(
            TokenRefresher::builder()
                .replication_group("my-group")
                .user_id("app")
                .region("eu-west-1")
                .credentials_provider(aws_credential_types::Credentials::for_tests())
                .token_refresh_interval(rotation)
                .reauth_after(reauth)
                .build(),
        );
        check(result)?;
    }
}
