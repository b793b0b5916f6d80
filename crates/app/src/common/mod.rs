//! What the JSON API and the pages share: problem+json, the extractors,
//! and the browser's cookie session. Neither imports the other.

pub mod cookie;
pub mod extract;
pub mod problem;

/// The largest request body accepted (64 KiB).
pub const MAX_BODY_BYTES: usize = 64 * 1024;
