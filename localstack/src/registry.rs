//! The credentials the stack knows: what the front accepts signatures from.

use std::collections::HashMap;
use std::fmt;
use std::sync::RwLock;
use std::time::SystemTime;

/// The access key id of the stack's static test credentials.
pub const STATIC_ACCESS_KEY_ID: &str = "AKIALOCALSTACKEXAMPLE";
/// The secret access key of the stack's static test credentials (a test value,
/// accepted only by this stack).
pub const STATIC_SECRET_ACCESS_KEY: &str = "localstack/static/secret/EXAMPLEKEY0000000000";
/// The principal of the static test credentials.
pub const STATIC_PRINCIPAL: &str = "arn:aws:iam::000000000000:user/localstack-test";

/// One set of AWS credentials known to the stack.
#[derive(Clone)]
pub struct KnownCredentials {
    /// The access key id (`AKIA...` long-term, `ASIA...` temporary).
    pub access_key_id: String,
    /// The secret access key the signature is checked with.
    pub secret_access_key: String,
    /// The session token that tokens signed with temporary credentials must carry.
    pub session_token: Option<String>,
    /// When temporary credentials stop being accepted.
    pub expires: Option<SystemTime>,
    /// The IAM principal (role or user ARN) the credentials belong to.
    pub principal: String,
}

impl fmt::Debug for KnownCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KnownCredentials")
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &"** redacted **")
            .field(
                "session_token",
                &self.session_token.as_ref().map(|_| "** redacted **"),
            )
            .field("expires", &self.expires)
            .field("principal", &self.principal)
            .finish()
    }
}

/// Access key id -> credentials, plus the principals allowed to connect.
#[derive(Debug, Default)]
pub struct Registry {
    credentials: RwLock<HashMap<String, KnownCredentials>>,
    denied_principals: RwLock<Vec<String>>,
}

impl Registry {
    /// Accept signatures by these credentials from now on.
    pub fn insert(&self, credentials: KnownCredentials) {
        self.credentials
            .write()
            .unwrap()
            .insert(credentials.access_key_id.clone(), credentials);
    }

    /// The credentials with this access key id.
    pub fn get(&self, access_key_id: &str) -> Option<KnownCredentials> {
        self.credentials.read().unwrap().get(access_key_id).cloned()
    }

    /// Refuse this principal, as a missing `elasticache:Connect` permission would.
    pub fn deny_principal(&self, principal: impl Into<String>) {
        self.denied_principals
            .write()
            .unwrap()
            .push(principal.into());
    }

    /// Whether the principal may connect.
    pub fn is_allowed(&self, principal: &str) -> bool {
        !self
            .denied_principals
            .read()
            .unwrap()
            .iter()
            .any(|p| p == principal)
    }
}
