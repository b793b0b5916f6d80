#![doc = include_str!("../README.md")]

pub mod cli;
pub mod server;

pub use convosphere_service::{config, logging, state, Config};
pub use convosphere_service::{AppState, StartError};
pub use server::{start, Started};
