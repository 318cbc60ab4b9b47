//! SigV4 query presigning of the one request a token is, done directly.
//!
//! `aws-sigv4`'s general path parses the URL, canonicalises every parameter
//! and header, and derives the signing key, every time: about 16 µs a token.
//! A token request is always the same shape, so here the canonical request is
//! a template in which only the date, the credential scope and the session
//! token vary, hashed piece by piece; the signing key is kept per (secret,
//! date) (region and service are the signer's own), and the encoded session
//! token per session token. `aws-sigv4` still derives the key
//! ([`v4::generate_signing_key`]) and computes the signature
//! ([`v4::calculate_signature`]); `sha2` hashes the canonical request.
//!
//! The output is the token `aws-sigv4`'s presigning gives, byte for byte, in
//! its parameter order (the property test in `tests/vectors.rs` compares the
//! two on random inputs; the reference vectors and the stand-in's independent
//! verifier check both).

use std::borrow::Cow;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::SystemTime;

use aws_sigv4::sign::v4;
use percent_encoding::utf8_percent_encode;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::lock::lock;
use crate::signer::SIGV4_QUERY;

/// The SHA-256 of an empty body, the payload hash of every token request.
const EMPTY_PAYLOAD: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The parameters before the credential, in the token (with its `&`) and,
/// without the `&`, in the canonical query.
const ALGORITHM_AND_CREDENTIAL: &str = "&X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=";

/// The session token's parameter, before its encoded value (the canonical
/// query sorts it after `X-Amz-Expires`; `aws-sigv4` puts it last in the
/// token).
const SESSION_TOKEN: &str = "&X-Amz-Security-Token=";

/// Presigns the token request of one signer (one host, region, service,
/// user).
pub(crate) struct Presigner {
    /// `{name}/?Action=connect&User=...[&ResourceType=...]`: the token's start.
    token_start: String,
    /// `GET\n/\n` and the canonical query's fixed leading parameters
    /// (`Action`, `ResourceType`, `User`, sorted), then `&`.
    canonical_start: String,
    /// `\nhost:{name}\n\nhost\n{empty payload hash}`.
    canonical_end: String,
    /// `%2F{region}%2F{service}%2Faws4_request`: the credential scope after
    /// the date, encoded as in the query.
    scope_encoded: String,
    /// `/{region}/{service}/aws4_request`: the same, as in the string to sign.
    scope: String,
    region: String,
    service: &'static str,
    /// `X-Amz-Expires`, in seconds.
    expires: String,
    /// What the last signings derived: kept while it applies.
    cache: Mutex<Cache>,
}

/// The signing key for the secret and the day it was derived for, and the
/// session token with its encoded form. Zeroized on replacement and drop.
#[derive(Default)]
struct Cache {
    key: Option<KeyFor>,
    session: Option<(Zeroizing<String>, Zeroizing<String>)>,
}

/// A signing key, with the secret and the day (`YYYYMMDD`) it is for.
type KeyFor = (Zeroizing<String>, [u8; 8], Zeroizing<Vec<u8>>);

impl Presigner {
    /// For requests to `host` (the cache name) with the fixed parameters
    /// `fixed` in the token's order (`Action`, `User`, then `ResourceType`
    /// when present), already SigV4-encoded, valid `expires_secs`.
    pub(crate) fn new(
        host: &str,
        fixed: &[(&str, &str)],
        region: &str,
        service: &'static str,
        expires_secs: u64,
    ) -> Self {
        let mut token_start = format!("{host}/?");
        for (i, (name, value)) in fixed.iter().enumerate() {
            if i > 0 {
                token_start.push('&');
            }
            let _ = write!(token_start, "{name}={value}");
        }
        let mut sorted = fixed.to_vec();
        sorted.sort_unstable();
        let mut canonical_start = String::from("GET\n/\n");
        for (name, value) in sorted {
            let _ = write!(canonical_start, "{name}={value}&");
        }
        canonical_start.push_str(&ALGORITHM_AND_CREDENTIAL[1..]);
        Self {
            token_start,
            canonical_start,
            canonical_end: format!(
                "&X-Amz-SignedHeaders=host\nhost:{host}\n\nhost\n{EMPTY_PAYLOAD}"
            ),
            scope_encoded: format!("%2F{region}%2F{service}%2Faws4_request"),
            scope: format!("/{region}/{service}/aws4_request"),
            region: region.to_owned(),
            service,
            expires: expires_secs.to_string(),
            cache: Mutex::new(Cache::default()),
        }
    }

    /// The token for these credentials at `time`: the same bytes
    /// `aws-sigv4`'s query presigning produces. `session_token` is `None` or
    /// not empty.
    pub(crate) fn presign(
        &self,
        access_key_id: &str,
        secret: &str,
        session_token: Option<&str>,
        time: SystemTime,
    ) -> Zeroizing<String> {
        let date_time = amz_date(time);
        let date_time = std::str::from_utf8(&date_time).unwrap_or_default();
        let date = &date_time[..8];
        let access_key_id: Cow<'_, str> = utf8_percent_encode(access_key_id, SIGV4_QUERY).into();
        let expires = self.expires.as_str();
        let mut cache = lock(&self.cache);
        let cache = &mut *cache;

        // The session token, encoded once per token (not per signing).
        let encoded_session = match session_token {
            None => None,
            Some(token) => {
                let fresh = cache
                    .session
                    .as_ref()
                    .is_some_and(|(raw, _)| **raw == token);
                if !fresh {
                    let encoded = utf8_percent_encode(token, SIGV4_QUERY).to_string();
                    cache.session =
                        Some((Zeroizing::new(token.to_owned()), Zeroizing::new(encoded)));
                }
                cache.session.as_ref().map(|(_, encoded)| encoded.as_str())
            }
        };

        // What this signing puts in both the canonical request and the
        // token: the credential, the date and the expiry.
        let credential_to_expires = [
            &*access_key_id,
            "%2F",
            date,
            &self.scope_encoded,
            "&X-Amz-Date=",
            date_time,
            "&X-Amz-Expires=",
            expires,
        ];

        // The canonical request, hashed piece by piece: the template with
        // this signing's values, never assembled in memory.
        let mut canonical = Sha256::new();
        canonical.update(self.canonical_start.as_bytes());
        for piece in credential_to_expires {
            canonical.update(piece.as_bytes());
        }
        if let Some(encoded) = encoded_session {
            canonical.update(SESSION_TOKEN.as_bytes());
            canonical.update(encoded.as_bytes());
        }
        canonical.update(self.canonical_end.as_bytes());
        let mut hash = [0u8; 64];
        // A fixed-size digest always fits its hex form.
        let _ = hex::encode_to_slice(canonical.finalize(), &mut hash);
        let hash = std::str::from_utf8(&hash).unwrap_or_default();
        let pieces = [
            "AWS4-HMAC-SHA256\n",
            date_time,
            "\n",
            date,
            self.scope.as_str(),
            "\n",
            hash,
        ];
        let mut string_to_sign = String::with_capacity(pieces.iter().map(|p| p.len()).sum());
        for piece in pieces {
            string_to_sign.push_str(piece);
        }

        // The signing key, derived once per secret and day.
        let fresh = cache
            .key
            .as_ref()
            .is_some_and(|(s, day, _)| day.as_slice() == date.as_bytes() && **s == secret);
        if !fresh {
            let key = v4::generate_signing_key(secret, time, &self.region, self.service);
            let mut day = [0u8; 8];
            day.copy_from_slice(date.as_bytes());
            cache.key = Some((
                Zeroizing::new(secret.to_owned()),
                day,
                Zeroizing::new(key.as_ref().to_vec()),
            ));
        }
        let key = cache
            .key
            .as_ref()
            .map(|(_, _, key)| key.as_slice())
            .unwrap_or_default();
        let signature = v4::calculate_signature(key, string_to_sign.as_bytes());

        // Sized exactly, so the string never reallocates and leaves no
        // unzeroized copy of the token behind.
        let before = [self.token_start.as_str(), ALGORITHM_AND_CREDENTIAL];
        let after = ["&X-Amz-SignedHeaders=host&X-Amz-Signature=", &signature];
        let pieces = || before.iter().chain(&credential_to_expires).chain(&after);
        let length = pieces().map(|p| p.len()).sum::<usize>()
            + encoded_session.map_or(0, |t| SESSION_TOKEN.len() + t.len());
        let mut token = Zeroizing::new(String::with_capacity(length));
        for piece in pieces() {
            token.push_str(piece);
        }
        if let Some(encoded) = encoded_session {
            token.push_str(SESSION_TOKEN);
            token.push_str(encoded);
        }
        token
    }
}

/// `YYYYMMDDTHHMMSSZ` of `time`, in UTC (its first 8 bytes are the date).
fn amz_date(time: SystemTime) -> [u8; 16] {
    let t = OffsetDateTime::from(time);
    let mut out = *b"00000000T000000Z";
    let mut put = |at: usize, width: usize, mut value: u32| {
        for i in (at..at + width).rev() {
            out[i] = b'0' + (value % 10) as u8;
            value /= 10;
        }
    };
    put(0, 4, t.year().clamp(0, 9999) as u32);
    put(4, 2, u32::from(u8::from(t.month())));
    put(6, 2, u32::from(t.day()));
    put(9, 2, u32::from(t.hour()));
    put(11, 2, u32::from(t.minute()));
    put(13, 2, u32::from(t.second()));
    out
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, UNIX_EPOCH};

    use aws_credential_types::Credentials;
    use proptest::prelude::*;

    use crate::signer::TokenSigner;

    /// A signer for a target of kind `kind` (0 serverless, 1 replication
    /// group, 2 MemoryDB), or `None` if the inputs are not valid ones.
    fn signer(kind: u8, name: &str, user: &str, region: &str) -> Option<TokenSigner> {
        let builder = TokenSigner::builder().user_id(user).region(region);
        let builder = match kind {
            0 => builder.serverless_cache(name),
            1 => builder.replication_group(name),
            _ => builder.memorydb_cluster(name),
        };
        builder.build().ok()
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(10_000))]

        /// The fast path and `aws-sigv4`'s general presigning give the same
        /// token, byte for byte, whatever the inputs.
        #[test]
        fn the_fast_path_signs_exactly_as_aws_sigv4(
            kind in 0u8..3,
            name in "[a-zA-Z][a-zA-Z0-9]{0,12}(-[a-zA-Z0-9]{1,8}){0,3}",
            user in "[a-zA-Z0-9_.@+=,-]{1,24}",
            region in prop::sample::select(vec![
                "us-east-1", "eu-west-2", "ap-southeast-3", "cn-north-1", "us-gov-west-1", "il-central-1",
            ]),
            access_key in "[A-Z0-9]{16,24}",
            secret in "[A-Za-z0-9/+]{40}",
            session in prop::option::of("[A-Za-z0-9/+=]{0,700}"),
            secs in 0u64..4_102_444_800,
        ) {
            let Some(signer) = signer(kind, &name, &user, region) else {
                return Ok(());
            };
            let credentials = Credentials::new(access_key, secret, session, None, "prop");
            let at = UNIX_EPOCH + Duration::from_secs(secs);
            let fast = signer.sign(&credentials, at).unwrap();
            let reference = signer.sign_with_aws_sigv4(&credentials, at).unwrap();
            prop_assert_eq!(fast.expose_secret(), reference.expose_secret());
            prop_assert_eq!(fast.usable_until(), reference.usable_until());
        }
    }

    #[test]
    fn the_signing_key_is_derived_again_for_another_day_or_secret() {
        let signer = signer(0, "cache", "user", "us-east-1").unwrap();
        let day = UNIX_EPOCH + Duration::from_secs(1_705_322_096);
        let next_day = day + Duration::from_secs(86_400);
        for (secret, at) in [
            ("s1", day),
            ("s1", day),
            ("s1", next_day),
            ("s2", next_day),
            ("s1", day),
        ] {
            let credentials = Credentials::new("AKID", secret, None, None, "test");
            let fast = signer.sign(&credentials, at).unwrap();
            let reference = signer.sign_with_aws_sigv4(&credentials, at).unwrap();
            assert_eq!(
                fast.expose_secret(),
                reference.expose_secret(),
                "{secret} {at:?}"
            );
        }
    }
}
