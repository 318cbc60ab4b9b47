//! IAM auth token verification, as ElastiCache and MemoryDB do it.
//!
//! The signature is recomputed independently of the client library: the
//! canonical request is built here from the token's own parameters (SigV4,
//! query presigning, signed header `host`, empty payload), and only the key
//! derivation and HMAC come from `aws-sigv4`. Then every claim is checked
//! against what the stack is configured as.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};
use sha2::{Digest, Sha256};
use time::PrimitiveDateTime;
use time::macros::format_description;

use crate::registry::Registry;

const SIGV4_QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');
const EMPTY_PAYLOAD_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// What the front expects every token to claim.
#[derive(Clone, Debug)]
pub struct Expectations {
    /// `elasticache` or `memorydb`.
    pub service: String,
    /// The region of the cache.
    pub region: String,
    /// The cache name (the token's host).
    pub cache_name: String,
    /// The IAM-enabled user id (== user name).
    pub user_id: String,
    /// Whether `ResourceType=ServerlessCache` is required (and otherwise refused).
    pub serverless: bool,
    /// How far in the future a token's `X-Amz-Date` may be.
    pub clock_skew: Duration,
}

/// Why a token was refused: the counter key in `auth_failed`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// Not a presigned request: no `host/?query`, a parameter missing or repeated.
    Malformed,
    /// `X-Amz-Algorithm` is not `AWS4-HMAC-SHA256`, or the signed headers are not `host`.
    UnsupportedSigning,
    /// The access key id is not known.
    UnknownAccessKey,
    /// The signature does not match (wrong secret, or anything in the token altered).
    SignatureMismatch,
    /// A token signed with temporary credentials without their session token, or with another one.
    SessionTokenMismatch,
    /// The credential scope's region is not the cache's.
    WrongRegion,
    /// The credential scope's service is not `elasticache` / `memorydb` as configured.
    WrongService,
    /// The host is the cache name but not in lowercase.
    HostNotLowercase,
    /// The host is an endpoint host name, not the cache name.
    HostIsEndpoint,
    /// The host is another name.
    WrongHost,
    /// `Action` is not `connect`.
    WrongAction,
    /// `ResourceType=ServerlessCache` missing for a serverless cache.
    ResourceTypeMissing,
    /// `ResourceType` present for a node-based cache (or not `ServerlessCache`).
    ResourceTypeUnexpected,
    /// The signed `User` is not the configured IAM user.
    WrongUser,
    /// `AUTH` named another user than the token signs.
    AuthUserMismatch,
    /// `AUTH <token>` without a user name.
    NoUserName,
    /// `X-Amz-Expires` above 900 seconds.
    ExpiresTooLong,
    /// Past `X-Amz-Date + X-Amz-Expires`.
    TokenExpired,
    /// `X-Amz-Date` further in the future than the clock skew allowance.
    NotYetValid,
    /// The temporary credentials that signed the token have expired.
    CredentialsExpired,
    /// The principal is not allowed to connect (no `elasticache:Connect`).
    PrincipalDenied,
    /// Refused by an injected fault.
    FaultInjected,
}

impl Refusal {
    /// The counter key.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Malformed => "malformed",
            Self::UnsupportedSigning => "unsupported_signing",
            Self::UnknownAccessKey => "unknown_access_key",
            Self::SignatureMismatch => "signature_mismatch",
            Self::SessionTokenMismatch => "session_token_mismatch",
            Self::WrongRegion => "wrong_region",
            Self::WrongService => "wrong_service",
            Self::HostNotLowercase => "host_not_lowercase",
            Self::HostIsEndpoint => "host_is_endpoint",
            Self::WrongHost => "wrong_host",
            Self::WrongAction => "wrong_action",
            Self::ResourceTypeMissing => "resource_type_missing",
            Self::ResourceTypeUnexpected => "resource_type_unexpected",
            Self::WrongUser => "wrong_user",
            Self::AuthUserMismatch => "auth_user_mismatch",
            Self::NoUserName => "no_user_name",
            Self::ExpiresTooLong => "expires_too_long",
            Self::TokenExpired => "token_expired",
            Self::NotYetValid => "not_yet_valid",
            Self::CredentialsExpired => "credentials_expired",
            Self::PrincipalDenied => "principal_denied",
            Self::FaultInjected => "fault_injected",
        }
    }
}

/// A verified token: who signed it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// The access key id that signed.
    pub access_key_id: String,
    /// Its principal.
    pub principal: String,
}

/// The parts of a token.
struct Parsed {
    host: String,
    path: String,
    params: BTreeMap<String, String>,
    signature: String,
}

fn parse(token: &str) -> Option<Parsed> {
    let (location, query) = token.split_once('?')?;
    let slash = location.find('/')?;
    let (host, path) = location.split_at(slash);
    if host.is_empty() {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut signature = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=')?;
        let k = percent_decode_str(k).decode_utf8().ok()?.into_owned();
        let v = percent_decode_str(v).decode_utf8().ok()?.into_owned();
        if k == "X-Amz-Signature" {
            if signature.replace(v).is_some() {
                return None;
            }
        } else if params.insert(k, v).is_some() {
            return None;
        }
    }
    Some(Parsed {
        host: host.to_owned(),
        path: path.to_owned(),
        params,
        signature: signature?,
    })
}

fn parse_amz_date(s: &str) -> Option<SystemTime> {
    let format = format_description!("[year][month][day]T[hour][minute][second]Z");
    PrimitiveDateTime::parse(s, format)
        .ok()
        .map(|t| t.assume_utc().into())
}

/// The SigV4 signature of a parsed token with `secret`. `amz_date` is its
/// `X-Amz-Date`, already checked to parse as `signed_at`.
fn signature_of(
    parsed: &Parsed,
    secret: &str,
    amz_date: &str,
    signed_at: SystemTime,
    region: &str,
    service: &str,
) -> String {
    let mut pairs: Vec<(String, String)> = parsed
        .params
        .iter()
        .map(|(k, v)| {
            (
                utf8_percent_encode(k, SIGV4_QUERY).to_string(),
                utf8_percent_encode(v, SIGV4_QUERY).to_string(),
            )
        })
        .collect();
    pairs.sort();
    let query = pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let canonical_request = format!(
        "GET\n{}\n{query}\nhost:{}\n\nhost\n{EMPTY_PAYLOAD_SHA256}",
        parsed.path, parsed.host
    );
    let scope_date = &amz_date[..8];
    let string_to_sign = format!(
        "AWS4-HMAC-SHA256\n{amz_date}\n{scope_date}/{region}/{service}/aws4_request\n{}",
        hex::encode(Sha256::digest(canonical_request.as_bytes()))
    );
    let key = aws_sigv4::sign::v4::generate_signing_key(secret, signed_at, region, service);
    aws_sigv4::sign::v4::calculate_signature(key, string_to_sign.as_bytes())
}

/// Check `token` presented by `AUTH <auth_user> <token>` (`auth_user` is
/// `None` for the one-argument form) at `now`.
pub fn verify(
    expect: &Expectations,
    registry: &Registry,
    auth_user: Option<&str>,
    token: &str,
    now: SystemTime,
) -> Result<Verified, Refusal> {
    let parsed = parse(token).ok_or(Refusal::Malformed)?;
    let param = |name: &str| parsed.params.get(name).map(String::as_str);
    let required = |name: &str| param(name).ok_or(Refusal::Malformed);

    if required("X-Amz-Algorithm")? != "AWS4-HMAC-SHA256"
        || required("X-Amz-SignedHeaders")? != "host"
    {
        return Err(Refusal::UnsupportedSigning);
    }
    let credential = required("X-Amz-Credential")?;
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, scope_date, region, service, "aws4_request"] = scope[..] else {
        return Err(Refusal::Malformed);
    };
    let amz_date = required("X-Amz-Date")?;
    let signed_at = parse_amz_date(amz_date).ok_or(Refusal::Malformed)?;
    if !amz_date.starts_with(scope_date) {
        return Err(Refusal::Malformed);
    }
    let expires: u64 = required("X-Amz-Expires")?
        .parse()
        .map_err(|_| Refusal::Malformed)?;
    required("Action")?;
    let signed_user = required("User")?;

    // Who signed, and is the signature theirs over exactly these parameters?
    let known = registry
        .get(access_key_id)
        .ok_or(Refusal::UnknownAccessKey)?;
    if signature_of(
        &parsed,
        &known.secret_access_key,
        amz_date,
        signed_at,
        region,
        service,
    ) != parsed.signature
    {
        return Err(Refusal::SignatureMismatch);
    }
    if param("X-Amz-Security-Token") != known.session_token.as_deref() {
        return Err(Refusal::SessionTokenMismatch);
    }

    // What the token claims, against what this cache is.
    if region != expect.region {
        return Err(Refusal::WrongRegion);
    }
    if service != expect.service {
        return Err(Refusal::WrongService);
    }
    if parsed.host != expect.cache_name {
        return Err(if parsed.host.eq_ignore_ascii_case(&expect.cache_name) {
            Refusal::HostNotLowercase
        } else if parsed.host.contains('.') {
            Refusal::HostIsEndpoint
        } else {
            Refusal::WrongHost
        });
    }
    if parsed.path != "/" || required("Action")? != "connect" {
        return Err(Refusal::WrongAction);
    }
    match (expect.serverless, param("ResourceType")) {
        (true, Some("ServerlessCache")) | (false, None) => {}
        (true, None) => return Err(Refusal::ResourceTypeMissing),
        _ => return Err(Refusal::ResourceTypeUnexpected),
    }
    if signed_user != expect.user_id {
        return Err(Refusal::WrongUser);
    }
    match auth_user {
        None => return Err(Refusal::NoUserName),
        Some(user) if user != signed_user => return Err(Refusal::AuthUserMismatch),
        Some(_) => {}
    }
    if expires > 900 {
        return Err(Refusal::ExpiresTooLong);
    }
    if signed_at > now + expect.clock_skew {
        return Err(Refusal::NotYetValid);
    }
    if now > signed_at + Duration::from_secs(expires) {
        return Err(Refusal::TokenExpired);
    }
    if known.expires.is_some_and(|expiry| now >= expiry) {
        return Err(Refusal::CredentialsExpired);
    }
    if !registry.is_allowed(&known.principal) {
        return Err(Refusal::PrincipalDenied);
    }
    Ok(Verified {
        access_key_id: known.access_key_id,
        principal: known.principal,
    })
}
