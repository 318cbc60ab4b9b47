//! `redis://` and `rediss://` URLs: host, port, database, TLS and password.

use zeroize::Zeroizing;

use super::ConnectionConfig;
use crate::error::{Error, quoted};

pub(super) struct ParsedUrl {
    pub(super) host: String,
    pub(super) port: u16,
    pub(super) db: i64,
    pub(super) tls: bool,
    pub(super) username: Option<String>,
    pub(super) password: Option<Zeroizing<String>>,
}

/// Parses a `redis://` or `rediss://` URL. Errors never quote the URL, which
/// may hold a password.
pub(super) fn parse_url(text: &str) -> Result<ParsedUrl, Error> {
    let invalid = |what: &str| Error::config("url", format!("invalid URL: {what}"));
    let url = url::Url::parse(text).map_err(|e| invalid(&e.to_string()))?;
    let tls = match url.scheme() {
        "redis" => false,
        "rediss" => true,
        other => {
            return Err(invalid(&format!(
                "the scheme must be redis or rediss, not {}",
                quoted(other)
            )));
        }
    };
    let host = url
        .host_str()
        .filter(|h| !h.is_empty())
        .ok_or_else(|| invalid("no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    let db = match url.path().trim_start_matches('/') {
        "" => 0,
        db => db
            .parse::<i64>()
            .ok()
            .filter(|db| *db >= 0)
            .ok_or_else(|| invalid("the path must be a database number"))?,
    };
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .map(|s| s.into_owned())
            .map_err(|_| invalid("the user or password is not UTF-8 after percent-decoding"))
    };
    let username = match url.username() {
        "" => None,
        user => Some(decode(user)?),
    };
    let password = url
        .password()
        .map(|p| decode(p).map(Zeroizing::new))
        .transpose()?;
    let port = url.port().unwrap_or(ConnectionConfig::DEFAULT_PORT);
    if port == 0 {
        return Err(invalid("the port must be 1-65535, not 0"));
    }
    Ok(ParsedUrl {
        host,
        port,
        db,
        tls,
        username,
        password,
    })
}
