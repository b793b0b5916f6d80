#![doc = include_str!("../README.md")]

pub mod common;
pub mod config;
pub mod dto;
pub mod logging;
pub mod metrics;
pub mod state;
pub mod usage;

pub use config::Config;
pub use state::{AppState, StartError};
