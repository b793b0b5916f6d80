#![doc = include_str!("../README.md")]

pub mod cli;
pub mod common;
pub mod config;
pub mod http;
pub mod logging;
pub mod metrics;
pub mod server;
pub mod state;
pub mod usage;
pub mod web;

pub use config::Config;
pub use server::{start, Started};
pub use state::{AppState, StartError};
