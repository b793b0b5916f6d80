#![doc = include_str!("../README.md")]

mod credentials;
mod poller;
mod ttl;

pub use credentials::{CallerCache, CAPACITY};
pub use poller::{spawn_invalidation_poller, POLL_INTERVAL};
pub use ttl::TtlCache;
