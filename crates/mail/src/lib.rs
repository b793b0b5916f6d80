#![doc = include_str!("../README.md")]

mod config;
mod error;
mod service;
pub mod templates;
mod transport;

pub use config::{MailConfig, RetryPolicy, Transport, DEFAULT_FROM};
pub use error::MailError;
pub use service::{MailService, MailStats};
pub use templates::{RenderedMail, Templates};
