//! AWS region ids, checked before they are signed into a credential scope.
//!
//! AWS's own toolkit signs whatever region it is given, so `US-EAST-1` or
//! `us-east-1 ` produce a token that ElastiCache refuses an hour later with a bare
//! `WRONGPASS`. Here a region must look like an AWS region id: a two-letter area,
//! an optional partition word (`gov`, `iso`, `isob`, ...), a direction word and a
//! number, all lowercase: `us-east-1`, `eu-central-2`, `cn-north-1`,
//! `us-gov-west-1`, `us-isob-east-1`.

use crate::error::{Error, Problems, quoted};

/// The region given (with the method or variable that gave it), validated;
/// or `None` with the problem noted: invalid, or missing (`missing` says what
/// to set).
pub(crate) fn checked_region(
    region: Option<(String, &'static str)>,
    missing: &'static str,
    problems: &mut Problems,
) -> Option<String> {
    match region {
        Some((region, parameter)) => problems.check(
            validate_region(&region)
                .map(|()| region)
                .map_err(|e| e.with_parameter(parameter)),
        ),
        None => {
            problems.push(Error::config("region", missing));
            None
        }
    }
}

/// Validate an AWS region id.
pub(crate) fn validate_region(region: &str) -> Result<(), Error> {
    if region.is_empty() {
        return Err(Error::config("region", "region must not be empty"));
    }
    if is_plausible_region(region) {
        return Ok(());
    }
    let hint = if is_plausible_region(&region.trim().to_ascii_lowercase()) {
        " (write it lowercase, without spaces)"
    } else {
        ""
    };
    Err(Error::config(
        "region",
        format!(
            "invalid region {}: expected an AWS region id such as \"us-east-1\", \
             \"cn-north-1\" or \"us-gov-west-1\"{hint}",
            quoted(region)
        ),
    ))
}

fn is_plausible_region(region: &str) -> bool {
    let parts: Vec<&str> = region.split('-').collect();
    let lowercase_word = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_lowercase());
    let (area, middle, number) = match parts.as_slice() {
        [area, middle @ .., number] if (1..=2).contains(&middle.len()) => (area, middle, number),
        _ => return false,
    };
    let partition_ok = match middle {
        [_direction] => true,
        [partition, _direction] => *partition == "gov" || partition.starts_with("iso"),
        _ => false,
    };
    area.len() == 2
        && lowercase_word(area)
        && partition_ok
        && middle.iter().all(|w| lowercase_word(w))
        && (1..=2).contains(&number.len())
        && number.bytes().all(|b| b.is_ascii_digit())
        && !number.starts_with('0')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_regions_pass() {
        for region in [
            "us-east-1",
            "us-west-2",
            "eu-central-2",
            "ap-southeast-5",
            "cn-north-1",
            "cn-northwest-1",
            "us-gov-west-1",
            "us-iso-east-1",
            "us-isob-east-1",
            "eu-isoe-west-1",
            "il-central-1",
            "mx-central-1",
        ] {
            assert!(validate_region(region).is_ok(), "{region}");
        }
    }

    #[test]
    fn implausible_regions_fail_naming_the_parameter() {
        for region in [
            "",
            "US-EAST-1",
            "us-east-1 ",
            "us-east-1\n",
            "useast1",
            "us-east",
            "east-1",
            "usa-east-1",
            "us-east-01",
            "us-east-100",
            "us-foo-west-1",
            "us-west-2-lax-1",
            "us_east_1",
            "us-\u{212a}ast-1",
        ] {
            let err = validate_region(region).unwrap_err();
            assert_eq!(err.parameter(), Some("region"), "{region:?}");
        }
    }

    #[test]
    fn uppercase_region_gets_a_hint() {
        let err = validate_region("US-EAST-1").unwrap_err();
        assert!(err.to_string().contains("write it lowercase"), "{err}");
    }
}
