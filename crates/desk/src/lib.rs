#![forbid(unsafe_code)]
//! The abuse desk's core: see README.md for the module map.

pub mod attribution;
pub mod case;
pub mod desk;
pub mod export;
pub mod history;
pub mod ladder;
pub mod notice;
pub mod report;
pub mod store;
pub mod time;
