//! Signing one IAM auth token from cached credentials.
//!
//! Run with `scripts/bench-signing.sh`, which prints each median; the targets
//! are at most 3 µs per token with temporary credentials (a 648-character
//! session token) and 2 µs with long-term keys.

use std::hint::black_box;
use std::time::{Duration, UNIX_EPOCH};

use aws_credential_types::Credentials;
use criterion::{Criterion, criterion_group, criterion_main};
use elasticache_iam::TokenSigner;

fn signing(c: &mut Criterion) {
    let signer = TokenSigner::builder()
        .serverless_cache("my-serverless-cache")
        .user_id("iam-user-01")
        .region("us-east-1")
        .build()
        .expect("valid signer");
    let at = UNIX_EPOCH + Duration::from_secs(1_705_322_096);
    let long_term = Credentials::new(
        "AKIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        None,
        None,
        "bench",
    );
    let temporary = Credentials::new(
        "ASIAIOSFODNN7EXAMPLE",
        "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
        Some(
            "IQoJb3JpZ2luX2VjEXAMPLE//////////wEaCXVzLWVhc3QtMSJHMEUCIQD+FAKE+TOKEN/EXAMPLE=="
                .repeat(8),
        ),
        Some(at + Duration::from_secs(3600)),
        "bench",
    );

    let mut group = c.benchmark_group("sign_token");
    group.bench_function("long_term_credentials", |b| {
        b.iter(|| signer.sign(black_box(&long_term), black_box(at)).unwrap())
    });
    group.bench_function("temporary_credentials", |b| {
        b.iter(|| signer.sign(black_box(&temporary), black_box(at)).unwrap())
    });
    group.finish();
}

criterion_group!(benches, signing);
criterion_main!(benches);
