//! The optional `metrics` feature: without it the crate does not depend on
//! the `metrics` crate at all (what `cargo tree` resolves for it alone).

use std::process::Command;

/// The crate's normal dependencies, one `name vX.Y.Z` per line, with
/// `features` enabled.
fn dependencies(features: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["tree", "--offline", "--locked", "-p", "elasticache-iam"])
        .args(["-e", "normal", "--prefix", "none", "--format", "{p}"]);
    for feature in features {
        command.args(["--features", feature]);
    }
    let output = command.output().expect("cargo tree runs");
    assert!(
        output.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8")
}

fn has(tree: &str, name: &str) -> bool {
    tree.lines()
        .any(|line| line.split_whitespace().next() == Some(name))
}

#[test]
fn without_the_metrics_feature_the_metrics_crate_is_not_a_dependency() {
    let plain = dependencies(&[]);
    assert!(has(&plain, "redis"), "the tree lists dependencies: {plain}");
    assert!(
        !has(&plain, "metrics"),
        "metrics without the feature: {plain}"
    );
    let with = dependencies(&["metrics"]);
    assert!(has(&with, "metrics"), "the feature brings metrics: {with}");
}
