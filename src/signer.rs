//! The token signer: a pure function of credentials, request and time.
//!
//! A token is `GET http://{name}/?Action=connect&User={user_id}` (plus
//! `&ResourceType=ServerlessCache` for a serverless cache), presigned with SigV4
//! in the query string for the `elasticache` or `memorydb` service with
//! `X-Amz-Expires=900`, with the `http://` prefix removed. This module decides
//! what goes into the request and reads no clock: the caller passes the
//! signing time. The SigV4 work is done by `presign` (a template of the one
//! canonical request a token is, with `aws-sigv4` deriving the key and
//! computing the signature), which gives the same bytes as `aws-sigv4`'s
//! general presigning, kept here as the reference the tests compare with.

use std::fmt;
use std::time::SystemTime;

use aws_credential_types::Credentials;
#[cfg(test)]
use aws_sigv4::http_request::{
    SignableBody, SignableRequest, SignatureLocation, SigningSettings, sign,
};
#[cfg(test)]
use aws_sigv4::sign::v4;
#[cfg(test)]
use aws_smithy_runtime_api::client::identity::Identity;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use std::sync::Arc;

#[cfg(test)]
use crate::error::ErrorKind;
use crate::error::{Error, Problems};
use crate::presign::Presigner;
use crate::region::checked_region;
use crate::target::{Target, TargetChoice, TargetKind, UserId};
use crate::token::{AuthToken, TOKEN_VALIDITY, format_time};

/// SigV4 query encoding: everything but `A-Z a-z 0-9 - _ . ~` is percent-encoded.
pub(crate) const SIGV4_QUERY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

#[cfg(test)]
const SCHEME: &str = "http://";

/// Makes IAM auth tokens for one target, user and region.
///
/// Build it once with [`TokenSigner::builder`]; then [`sign`](Self::sign) is a
/// pure function of the credentials and the signing time.
///
/// ```
/// use std::time::{Duration, UNIX_EPOCH};
/// use aws_credential_types::Credentials;
/// use elasticache_iam::TokenSigner;
///
/// let signer = TokenSigner::builder()
///     .serverless_cache("my-serverless-cache")
///     .user_id("iam-user-01")
///     .region("us-east-1")
///     .build()?;
/// let credentials = Credentials::new("AKIDEXAMPLE", "secret", None, None, "example");
/// let at = UNIX_EPOCH + Duration::from_secs(1_705_322_096);
/// let token = signer.sign(&credentials, at)?;
/// assert!(token.expose_secret().starts_with(
///     "my-serverless-cache/?Action=connect&User=iam-user-01&ResourceType=ServerlessCache&"
/// ));
/// # Ok::<(), elasticache_iam::Error>(())
/// ```
#[derive(Clone)]
pub struct TokenSigner {
    target: Target,
    user_id: UserId,
    region: String,
    /// The request to presign, with its scheme: `http://{name}/?Action=...`
    /// (for the reference path the fast one is compared with).
    #[cfg(test)]
    unsigned_url: String,
    /// The fast path; its signing-key cache is shared by the clones.
    presigner: Arc<Presigner>,
}

impl TokenSigner {
    /// A builder; target, user id and region are required.
    pub fn builder() -> TokenSignerBuilder {
        TokenSignerBuilder::default()
    }

    /// The target the tokens are for.
    pub fn target(&self) -> &Target {
        &self.target
    }

    /// The user id as signed, which is the user name `AUTH` must send
    /// (lowercased for ElastiCache).
    pub fn user_id(&self) -> &UserId {
        &self.user_id
    }

    /// The region signed into the credential scope.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// Sign a token as of `signing_time` with `credentials`.
    ///
    /// The token's [`usable_until`](AuthToken::usable_until) is the earlier of
    /// `signing_time + 15 min` and the credentials' expiry. Credentials already
    /// expired at `signing_time` are refused ([`ErrorKind::Credentials`](crate::ErrorKind::Credentials)). An
    /// empty session token is treated as absent, as the AWS SDKs' environment
    /// providers do.
    pub fn sign(
        &self,
        credentials: &Credentials,
        signing_time: SystemTime,
    ) -> Result<AuthToken, Error> {
        if let Some(expiry) = credentials.expiry()
            && expiry <= signing_time
        {
            return Err(Error::credentials(format!(
                "the credentials expired at {}, not after the signing time {}: \
                 check that the credentials provider refreshes temporary credentials",
                format_time(expiry),
                format_time(signing_time),
            )));
        }
        let session_token = credentials.session_token().filter(|t| !t.is_empty());
        let mut token = self.presigner.presign(
            credentials.access_key_id(),
            credentials.secret_access_key(),
            session_token,
            signing_time,
        );
        // Moved out, not copied: no unzeroized copy is left behind.
        Ok(self.token(
            std::mem::take(&mut *token),
            signing_time,
            credentials.expiry(),
        ))
    }

    /// The token as `aws-sigv4`'s general query presigning makes it: the
    /// reference the fast path is compared with.
    #[cfg(test)]
    pub(crate) fn sign_with_aws_sigv4(
        &self,
        credentials: &Credentials,
        signing_time: SystemTime,
    ) -> Result<AuthToken, Error> {
        let identity: Identity = match credentials.session_token() {
            Some("") => Credentials::new(
                credentials.access_key_id(),
                credentials.secret_access_key(),
                None,
                credentials.expiry(),
                "elasticache-iam (empty session token dropped)",
            )
            .into(),
            _ => credentials.clone().into(),
        };

        let mut settings = SigningSettings::default();
        settings.signature_location = SignatureLocation::QueryParams;
        settings.expires_in = Some(TOKEN_VALIDITY);
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(self.target.service())
            .time(signing_time)
            .settings(settings)
            .build()
            .map_err(|e| {
                Error::new(ErrorKind::Signing, "invalid SigV4 signing parameters").with_source(e)
            })?
            .into();
        let request = SignableRequest::new(
            "GET",
            self.unsigned_url.as_str(),
            std::iter::empty(),
            SignableBody::Bytes(&[]),
        )
        .map_err(|e| {
            Error::new(
                ErrorKind::Signing,
                "the token request could not be prepared for signing",
            )
            .with_source(e)
        })?;
        // aws-sigv4 logs the canonical request at TRACE level. It redacts the
        // session token *header*, but presigning puts the token in the query
        // (X-Amz-Security-Token), which it logs in clear. Its events are
        // silenced for this call: a no-op dispatcher on this thread only.
        let output = tracing::dispatcher::with_default(&tracing::Dispatch::none(), || {
            sign(request, &params)
        });
        let (instructions, _signature) = output
            .map_err(|e| Error::new(ErrorKind::Signing, "SigV4 signing failed").with_source(e))?
            .into_parts();

        // Room for the worst case (every byte percent-encoded), so the string
        // never reallocates and leaves no unzeroized copy of the token behind.
        let capacity = instructions
            .params()
            .iter()
            .map(|(name, value)| name.len() + 3 * value.len() + 2)
            .sum::<usize>()
            + self.unsigned_url.len();
        let mut token = String::with_capacity(capacity);
        token.push_str(&self.unsigned_url[SCHEME.len()..]);
        for (name, value) in instructions.params() {
            token.push('&');
            token.push_str(name);
            token.push('=');
            token.extend(utf8_percent_encode(value, SIGV4_QUERY));
        }

        Ok(self.token(token, signing_time, credentials.expiry()))
    }

    /// The token from its text, logged (without its text).
    fn token(
        &self,
        text: String,
        signing_time: SystemTime,
        expiry: Option<SystemTime>,
    ) -> AuthToken {
        let token = AuthToken::new(text, signing_time, expiry);
        tracing::debug!(
            target_name = %self.target,
            user_id = %self.user_id,
            region = %self.region,
            signed_at = %format_time(token.signed_at()),
            usable_until = %format_time(token.usable_until()),
            "signed IAM auth token"
        );
        token
    }
}

impl fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSigner")
            .field("target", &self.target)
            .field("user_id", &self.user_id)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

/// Builds a [`TokenSigner`]. Every field is required; [`build`](Self::build)
/// validates them and names every parameter that is missing or wrong.
#[derive(Clone, Debug, Default)]
#[must_use]
pub struct TokenSignerBuilder {
    target: TargetChoice,
    user_id: Option<String>,
    /// The region, and the method that gave it.
    region: Option<(String, &'static str)>,
}

impl TokenSignerBuilder {
    /// Sign for an ElastiCache Serverless cache, by name (lowercased).
    pub fn serverless_cache(mut self, name: impl Into<String>) -> Self {
        let kind = TargetKind::ServerlessCache;
        self.target.name(kind, name.into(), kind.parameter());
        self
    }

    /// Sign for a node-based ElastiCache replication group, by id (lowercased).
    pub fn replication_group(mut self, id: impl Into<String>) -> Self {
        let kind = TargetKind::ReplicationGroup;
        self.target.name(kind, id.into(), kind.parameter());
        self
    }

    /// Sign for a MemoryDB cluster, by name (as given).
    pub fn memorydb_cluster(mut self, name: impl Into<String>) -> Self {
        let kind = TargetKind::MemoryDbCluster;
        self.target.name(kind, name.into(), kind.parameter());
        self
    }

    /// Sign for an already validated target.
    pub fn target(mut self, target: Target) -> Self {
        self.target.target(target);
        self
    }

    /// The ElastiCache / MemoryDB user id (which must equal its user name).
    pub fn user_id(mut self, user_id: impl Into<String>) -> Self {
        self.user_id = Some(user_id.into());
        self
    }

    /// The AWS region of the cache, such as `us-east-1`.
    pub fn region(mut self, region: impl Into<String>) -> Self {
        self.region = Some((region.into(), "region"));
        self
    }

    /// The AWS region of the cache, or none (`build` then fails, unless a
    /// later call sets one).
    pub fn set_region(&mut self, region: Option<String>) -> &mut Self {
        self.region = region.map(|region| (region, "region"));
        self
    }

    /// The region of an `SdkConfig`, where none was set.
    pub(crate) fn default_region(&mut self, region: String) {
        self.region.get_or_insert((region, "sdk_config"));
    }

    /// Validate and build. Exactly one target is required, then a user id
    /// and a region; every problem found is reported at once (see
    /// [`Error::parameters`]).
    pub fn build(self) -> Result<TokenSigner, Error> {
        let mut problems = Problems::default();
        let signer = self.build_into(&mut problems);
        problems.finish(signer)
    }

    /// [`build`](Self::build), noting problems in `problems` (for builders
    /// that hold a signer builder and report their own problems with it).
    pub(crate) fn build_into(self, problems: &mut Problems) -> Option<TokenSigner> {
        let target = self.target.build(problems);
        let user_id = match self.user_id {
            Some(user_id) => problems.check(UserId::new(&user_id)),
            None => {
                problems.push(Error::config("user_id", "user_id is required"));
                None
            }
        };
        let region = checked_region(
            self.region,
            "region is required: pass the cache's AWS region, such as \"us-east-1\"",
            problems,
        );
        let (target, user_id, region) = (target?, user_id?, region?);
        let user_id = user_id.normalized_for(target.kind());
        let user = utf8_percent_encode(user_id.as_str(), SIGV4_QUERY).to_string();
        let mut fixed = vec![("Action", "connect"), ("User", user.as_str())];
        if target.kind().is_serverless() {
            fixed.push(("ResourceType", "ServerlessCache"));
        }
        #[cfg(test)]
        let unsigned_url = {
            let query: Vec<String> = fixed.iter().map(|(k, v)| format!("{k}={v}")).collect();
            format!("{SCHEME}{}/?{}", target.name(), query.join("&"))
        };
        let presigner = Arc::new(Presigner::new(
            target.name(),
            &fixed,
            &region,
            target.service(),
            TOKEN_VALIDITY.as_secs(),
        ));
        Some(TokenSigner {
            presigner,
            target,
            user_id,
            region,
            #[cfg(test)]
            unsigned_url,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn at() -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(1_705_322_096)
    }

    fn signer() -> TokenSigner {
        TokenSigner::builder()
            .replication_group("My-RG")
            .user_id("IAM-User")
            .region("eu-west-2")
            .build()
            .unwrap()
    }

    #[test]
    fn builder_normalises_and_exposes_what_is_signed() {
        let signer = signer();
        assert_eq!(signer.target().name(), "my-rg");
        assert_eq!(signer.user_id().as_str(), "iam-user");
        assert_eq!(signer.region(), "eu-west-2");
        let token = signer
            .sign(
                &Credentials::new("AKID", "secret", None, None, "test"),
                at(),
            )
            .unwrap();
        assert!(
            token
                .expose_secret()
                .starts_with("my-rg/?Action=connect&User=iam-user&X-Amz-Algorithm=")
        );
        assert!(!token.expose_secret().contains("ResourceType"));
    }

    #[test]
    fn builder_names_the_missing_parameter() {
        let param = |b: TokenSignerBuilder| b.build().unwrap_err().parameter();
        assert_eq!(
            param(TokenSigner::builder().user_id("u").region("us-east-1")),
            Some("target")
        );
        assert_eq!(
            param(
                TokenSigner::builder()
                    .serverless_cache("a")
                    .replication_group("b")
                    .user_id("u")
                    .region("us-east-1")
            ),
            Some("target")
        );
        assert_eq!(
            param(
                TokenSigner::builder()
                    .target(Target::serverless_cache("a").unwrap())
                    .memorydb_cluster("b")
                    .user_id("u")
                    .region("us-east-1")
            ),
            Some("target")
        );
        assert_eq!(
            param(
                TokenSigner::builder()
                    .serverless_cache("a")
                    .region("us-east-1")
            ),
            Some("user_id")
        );
        assert_eq!(
            param(TokenSigner::builder().serverless_cache("a").user_id("u")),
            Some("region")
        );
        assert_eq!(
            param(
                TokenSigner::builder()
                    .serverless_cache("a")
                    .user_id("u")
                    .region("")
            ),
            Some("region")
        );
    }

    #[test]
    fn usable_until_follows_credential_expiry() {
        let soon = at() + Duration::from_secs(120);
        let credentials =
            Credentials::new("AKID", "secret", Some("session".into()), Some(soon), "test");
        let token = signer().sign(&credentials, at()).unwrap();
        assert_eq!(token.signed_at(), at());
        assert_eq!(token.usable_until(), soon);
    }

    #[test]
    fn expired_credentials_are_refused() {
        for expiry in [at(), at() - Duration::from_secs(1)] {
            let credentials =
                Credentials::new("AKID", "secret", Some("s".into()), Some(expiry), "test");
            let err = signer().sign(&credentials, at()).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Credentials);
            assert!(err.is_retryable());
            assert!(
                err.to_string().contains("expired at 2024-01-15T12:34:5"),
                "{err}"
            );
        }
    }

    #[test]
    fn empty_session_token_is_signed_as_absent() {
        let without = signer()
            .sign(
                &Credentials::new("AKID", "secret", None, None, "test"),
                at(),
            )
            .unwrap();
        let empty = signer()
            .sign(
                &Credentials::new("AKID", "secret", Some(String::new()), None, "test"),
                at(),
            )
            .unwrap();
        assert_eq!(without.expose_secret(), empty.expose_secret());
        assert!(!empty.expose_secret().contains("X-Amz-Security-Token"));
    }

    #[test]
    fn signing_time_changes_the_token_and_nothing_else_does() {
        let credentials = Credentials::new("AKID", "secret", None, None, "test");
        let a = signer().sign(&credentials, at()).unwrap();
        let b = signer().sign(&credentials, at()).unwrap();
        let c = signer()
            .sign(&credentials, at() + Duration::from_secs(1))
            .unwrap();
        assert_eq!(a.expose_secret(), b.expose_secret());
        assert_ne!(a.expose_secret(), c.expose_secret());
    }
}
