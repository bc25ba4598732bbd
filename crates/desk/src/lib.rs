#![forbid(unsafe_code)]
//! The abuse desk's core: see README.md for the module map.

pub mod attribution;
pub mod history;
pub mod report;
pub mod time;
