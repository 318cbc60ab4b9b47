//! placeholder
#![forbid(unsafe_code)]
mod error;
mod region;
mod signer;
mod target;
mod token;
pub use error::{Error, ErrorKind};
pub use signer::{TokenSigner, TokenSignerBuilder};
pub use target::{MAX_NAME_LEN, Target, TargetKind, UserId};
pub use token::{AuthToken, TOKEN_VALIDITY};
