//! Values read from environment variables.

use std::time::Duration;

use crate::error::{Error, quoted};

/// The value of variable `name` as `lookup` finds it; an empty (or blank)
/// value counts as unset.
pub(crate) fn var(lookup: &impl Fn(&str) -> Option<String>, name: &str) -> Option<String> {
    lookup(name).filter(|value| !value.trim().is_empty())
}

/// Variable `name` as a duration, if set.
pub(crate) fn duration_var(
    lookup: &impl Fn(&str) -> Option<String>,
    name: &'static str,
) -> Option<Result<Duration, Error>> {
    var(lookup, name).map(|value| parse_duration(name, &value))
}

/// A duration such as `10m`, `2s`, `1h 30m` or `500ms`, from the variable
/// `name` (named in the error).
pub(crate) fn parse_duration(name: &'static str, value: &str) -> Result<Duration, Error> {
    humantime::parse_duration(value.trim()).map_err(|err| {
        Error::config(
            name,
            format!(
                "{name}={} is not a duration ({err}): write a number with a unit, such as \
                 10m, 2s or 1h 30m",
                quoted(value)
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_with_units() {
        let parse = |v| parse_duration("X", v).unwrap();
        assert_eq!(parse("10m"), Duration::from_secs(600));
        assert_eq!(parse("2s"), Duration::from_secs(2));
        assert_eq!(parse(" 1h 30m "), Duration::from_secs(5400));
        assert_eq!(parse("500ms"), Duration::from_millis(500));
    }

    #[test]
    fn bad_values_name_the_variable() {
        for bad in ["600", "ten minutes", "-5s", "10 parsecs"] {
            let err = parse_duration("ELASTICACHE_TOKEN_REFRESH_INTERVAL", bad).unwrap_err();
            assert_eq!(err.parameter(), Some("ELASTICACHE_TOKEN_REFRESH_INTERVAL"));
            assert!(
                err.to_string()
                    .starts_with("ELASTICACHE_TOKEN_REFRESH_INTERVAL=\""),
                "{err}"
            );
        }
    }
}
