//! What a token is for: the cache (or cluster) and the user.
//!
//! ElastiCache and MemoryDB sign the *name* of the cache, not the endpoint host
//! name, and the user id, which must equal the user name that `AUTH` sends. Names
//! follow AWS's rules and are checked with ASCII-only rules, so that nothing a
//! Unicode-aware lowercasing would quietly turn into ASCII (the Kelvin sign
//! `U+212A` becomes `k`) and no trailing newline slips through.

use std::fmt;

use crate::error::{Error, Problems, quoted};

/// The longest serverless cache name, replication group id or MemoryDB cluster
/// name that AWS allows.
const MAX_NAME_LEN: usize = 40;

/// Which kind of resource a token authenticates against.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TargetKind {
    /// An ElastiCache Serverless cache: service `elasticache`, signed with
    /// `ResourceType=ServerlessCache`.
    ServerlessCache,
    /// A node-based ElastiCache replication group (cluster mode enabled or not):
    /// service `elasticache`, no `ResourceType`.
    ReplicationGroup,
    /// A MemoryDB cluster: service `memorydb`, no `ResourceType`.
    MemoryDbCluster,
}

impl TargetKind {
    /// The SigV4 service name: `elasticache` or `memorydb`.
    pub fn service(self) -> &'static str {
        match self {
            Self::ServerlessCache | Self::ReplicationGroup => "elasticache",
            Self::MemoryDbCluster => "memorydb",
        }
    }

    /// Whether tokens carry `ResourceType=ServerlessCache`.
    pub fn is_serverless(self) -> bool {
        matches!(self, Self::ServerlessCache)
    }

    /// Whether names and user ids are lowercased before signing. ElastiCache
    /// stores them lowercase; MemoryDB tokens are signed as given, as AWS's own
    /// implementation does.
    fn lowercases(self) -> bool {
        !matches!(self, Self::MemoryDbCluster)
    }

    /// The builder method that sets a target of this kind (the parameter
    /// its errors name): `serverless_cache`, `replication_group` or
    /// `memorydb_cluster`.
    pub fn parameter(self) -> &'static str {
        match self {
            Self::ServerlessCache => "serverless_cache",
            Self::ReplicationGroup => "replication_group",
            Self::MemoryDbCluster => "memorydb_cluster",
        }
    }

    fn noun(self) -> &'static str {
        match self {
            Self::ServerlessCache => "serverless cache name",
            Self::ReplicationGroup => "replication group id",
            Self::MemoryDbCluster => "MemoryDB cluster name",
        }
    }
}

/// A validated cache or cluster to authenticate against.
///
/// ```
/// use elasticache_iam::{Target, TargetKind};
///
/// let target = Target::serverless_cache("My-Cache")?;
/// assert_eq!(target.name(), "my-cache"); // ElastiCache names are signed lowercase
/// assert_eq!(target.kind(), TargetKind::ServerlessCache);
/// assert!(Target::replication_group("my_group").is_err());
/// # Ok::<(), elasticache_iam::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Target {
    kind: TargetKind,
    name: String,
}

impl Target {
    /// The longest serverless cache name, replication group id or MemoryDB
    /// cluster name that AWS allows: 40.
    pub const MAX_NAME_LEN: usize = MAX_NAME_LEN;

    /// An ElastiCache Serverless cache, by its name (not its endpoint host name).
    /// The name is lowercased with ASCII rules.
    pub fn serverless_cache(name: &str) -> Result<Self, Error> {
        Self::new(TargetKind::ServerlessCache, name)
    }

    /// A node-based ElastiCache replication group, by its id (not its endpoint
    /// host name). The id is lowercased with ASCII rules.
    pub fn replication_group(id: &str) -> Result<Self, Error> {
        Self::new(TargetKind::ReplicationGroup, id)
    }

    /// A MemoryDB cluster, by its name. Signed as given.
    pub fn memorydb_cluster(name: &str) -> Result<Self, Error> {
        Self::new(TargetKind::MemoryDbCluster, name)
    }

    /// A target of the given kind.
    ///
    /// Rules (AWS's naming rules, checked on ASCII only): 1 to 40 characters;
    /// letters, digits and hyphens; starts with a letter; no two hyphens in a row;
    /// does not end with a hyphen.
    pub fn new(kind: TargetKind, name: &str) -> Result<Self, Error> {
        let parameter = kind.parameter();
        let invalid = |rule: &str| {
            Error::config(
                parameter,
                format!("invalid {} {}: {rule}", kind.noun(), quoted(name)),
            )
        };
        if name.is_empty() {
            return Err(Error::config(
                parameter,
                format!("{} must not be empty", kind.noun()),
            ));
        }
        if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(invalid(
                "only ASCII letters, digits and hyphens are allowed \
                 (use the cache's name, not its endpoint host name)",
            ));
        }
        if !name.as_bytes()[0].is_ascii_alphabetic() {
            return Err(invalid("must start with a letter"));
        }
        if name.ends_with('-') {
            return Err(invalid("must not end with a hyphen"));
        }
        if name.contains("--") {
            return Err(invalid("must not contain two hyphens in a row"));
        }
        if name.len() > MAX_NAME_LEN {
            return Err(invalid(&format!(
                "is {} characters long; AWS allows at most {MAX_NAME_LEN}",
                name.len()
            )));
        }
        let name = if kind.lowercases() {
            name.to_ascii_lowercase()
        } else {
            name.to_owned()
        };
        Ok(Self { kind, name })
    }

    /// The kind of resource.
    pub fn kind(&self) -> TargetKind {
        self.kind
    }

    /// The name as signed (the token's host part).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The SigV4 service name: `elasticache` or `memorydb`.
    pub fn service(&self) -> &'static str {
        self.kind.service()
    }
}

/// The target as a builder is given it: by kind and name through
/// `serverless_cache`, `replication_group`, `memorydb_cluster` (or their
/// environment variables), or validated through `target`. Exactly one is
/// required.
#[derive(Clone, Debug, Default)]
pub(crate) struct TargetChoice {
    /// Each kind and name given, with the parameter that gave it.
    given: Vec<(TargetKind, String, &'static str)>,
    target: Option<Target>,
}

impl TargetChoice {
    pub(crate) fn name(&mut self, kind: TargetKind, name: String, parameter: &'static str) {
        self.given.push((kind, name, parameter));
    }

    pub(crate) fn target(&mut self, target: Target) {
        self.target = Some(target);
    }

    /// The one target, or `None` with the problem noted: none given, more
    /// than one, or an invalid name (named by the parameter that gave it).
    pub(crate) fn build(&self, problems: &mut Problems) -> Option<Target> {
        const WHICH: &str = "serverless_cache, replication_group or memorydb_cluster \
                             (ELASTICACHE_SERVERLESS_CACHE, ELASTICACHE_REPLICATION_GROUP or \
                             MEMORYDB_CLUSTER): the cache's name, not its endpoint";
        match (&self.target, self.given.as_slice()) {
            (Some(target), []) => Some(target.clone()),
            (None, [(kind, name, parameter)]) => {
                problems.check(Target::new(*kind, name).map_err(|e| e.with_parameter(parameter)))
            }
            (None, []) => {
                problems.push(Error::config(
                    "target",
                    format!("a target is required: set one of {WHICH}"),
                ));
                None
            }
            (_, given) => {
                let names: Vec<&str> = given
                    .iter()
                    .map(|(_, _, p)| *p)
                    .chain(self.target.as_ref().map(|_| "target"))
                    .collect();
                let message = format!(
                    "more than one target is set ({}): set exactly one of {WHICH}",
                    names.join(", ")
                );
                problems.push(Error::config("target", message));
                None
            }
        }
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            TargetKind::ServerlessCache => "serverless cache",
            TargetKind::ReplicationGroup => "replication group",
            TargetKind::MemoryDbCluster => "MemoryDB cluster",
        };
        write!(f, "{kind} {}", self.name)
    }
}

/// A validated ElastiCache / MemoryDB user id.
///
/// IAM authentication requires the user id and the user name to be identical;
/// `AUTH` sends it as the user name and the token signs it as `User`.
///
/// Rules (checked on ASCII only): an optional `default.` prefix, then a letter,
/// then letters, digits and hyphens. The case is kept here; an ElastiCache
/// [`TokenSigner`](crate::TokenSigner) lowercases it, as ElastiCache stores user
/// ids lowercase.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct UserId(String);

impl UserId {
    /// The prefix AWS allows in front of a user id.
    const DEFAULT_PREFIX: &'static str = "default.";

    /// Validate a user id.
    pub fn new(user_id: &str) -> Result<Self, Error> {
        let invalid = |rule: &str| {
            Error::config(
                "user_id",
                format!("invalid user id {}: {rule}", quoted(user_id)),
            )
        };
        if user_id.is_empty() {
            return Err(Error::config("user_id", "user id must not be empty"));
        }
        let body = match user_id.get(..Self::DEFAULT_PREFIX.len()) {
            Some(prefix) if prefix.eq_ignore_ascii_case(Self::DEFAULT_PREFIX) => {
                &user_id[Self::DEFAULT_PREFIX.len()..]
            }
            _ => user_id,
        };
        if !body.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Err(invalid(
                "only ASCII letters, digits and hyphens are allowed, after an optional \"default.\" prefix",
            ));
        }
        match body.bytes().next() {
            Some(first) if first.is_ascii_alphabetic() => Ok(Self(user_id.to_owned())),
            Some(_) => Err(invalid("must start with a letter")),
            None => Err(invalid("a name must follow the \"default.\" prefix")),
        }
    }

    /// The user id, as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user id as `kind` signs it and `AUTH` must send it.
    pub(crate) fn normalized_for(&self, kind: TargetKind) -> Self {
        if kind.lowercases() {
            Self(self.0.to_ascii_lowercase())
        } else {
            self.clone()
        }
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule_of(result: Result<impl fmt::Debug, Error>) -> String {
        result.unwrap_err().to_string()
    }

    #[test]
    fn elasticache_names_are_lowercased_memorydb_names_kept() {
        assert_eq!(
            Target::serverless_cache("MyCache").unwrap().name(),
            "mycache"
        );
        assert_eq!(
            Target::replication_group("Prod-RG-01").unwrap().name(),
            "prod-rg-01"
        );
        assert_eq!(
            Target::memorydb_cluster("My-Cluster").unwrap().name(),
            "My-Cluster"
        );
    }

    #[test]
    fn services_and_resource_type() {
        assert_eq!(
            Target::serverless_cache("a").unwrap().service(),
            "elasticache"
        );
        assert_eq!(
            Target::replication_group("a").unwrap().service(),
            "elasticache"
        );
        assert_eq!(Target::memorydb_cluster("a").unwrap().service(), "memorydb");
        assert!(TargetKind::ServerlessCache.is_serverless());
        assert!(!TargetKind::ReplicationGroup.is_serverless());
        assert!(!TargetKind::MemoryDbCluster.is_serverless());
    }

    #[test]
    fn each_name_rule_has_its_own_message() {
        assert!(rule_of(Target::serverless_cache("")).contains("must not be empty"));
        assert!(rule_of(Target::serverless_cache("my.cache")).contains("only ASCII letters"));
        assert!(rule_of(Target::serverless_cache("\u{212a}cache")).contains("only ASCII letters"));
        assert!(rule_of(Target::serverless_cache("mycache\n")).contains("only ASCII letters"));
        assert!(rule_of(Target::serverless_cache("1cache")).contains("must start with a letter"));
        assert!(rule_of(Target::serverless_cache("cache-")).contains("must not end with a hyphen"));
        assert!(rule_of(Target::serverless_cache("my--cache")).contains("two hyphens"));
        assert!(rule_of(Target::serverless_cache(&"a".repeat(41))).contains("at most 40"));
        assert!(Target::serverless_cache(&"a".repeat(40)).is_ok());
    }

    #[test]
    fn name_errors_name_the_parameter_of_the_kind() {
        let p = |r: Result<Target, Error>| r.unwrap_err().parameter();
        assert_eq!(p(Target::serverless_cache("-")), Some("serverless_cache"));
        assert_eq!(p(Target::replication_group("-")), Some("replication_group"));
        assert_eq!(p(Target::memorydb_cluster("-")), Some("memorydb_cluster"));
    }

    #[test]
    fn user_id_rules() {
        assert_eq!(
            UserId::new("Default.IAM-User").unwrap().as_str(),
            "Default.IAM-User"
        );
        assert!(UserId::new("user-").is_ok());
        assert!(UserId::new("user--name").is_ok());
        assert!(rule_of(UserId::new("")).contains("must not be empty"));
        assert!(rule_of(UserId::new("1user")).contains("must start with a letter"));
        assert!(rule_of(UserId::new("default.1user")).contains("must start with a letter"));
        assert!(rule_of(UserId::new("default.")).contains("must follow"));
        assert!(rule_of(UserId::new("user.name")).contains("only ASCII"));
        assert!(rule_of(UserId::new("\u{212a}ser")).contains("only ASCII"));
        assert!(rule_of(UserId::new("iam-user\n")).contains("only ASCII"));
        assert!(rule_of(UserId::new("us\u{e9}r")).contains("only ASCII"));
        assert_eq!(UserId::new("x y").unwrap_err().parameter(), Some("user_id"));
    }

    #[test]
    fn user_id_normalisation_follows_the_service() {
        let user = UserId::new("Default.IAM-User").unwrap();
        assert_eq!(
            user.normalized_for(TargetKind::ServerlessCache).as_str(),
            "default.iam-user"
        );
        assert_eq!(
            user.normalized_for(TargetKind::MemoryDbCluster).as_str(),
            "Default.IAM-User"
        );
    }
}
