//! The one formatter of times and durations lives in the application layer
//! (`spamgate_app::display`), so the web console shows times as the command line does;
//! this module re-exports it and adds the configuration's serde adapter.

pub use spamgate_app::display::*;

/// `#[serde(with = "crate::display::serde_duration")]`: reads what humantime reads,
/// writes [`duration`].
pub mod serde_duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&spamgate_app::display::duration(*d))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        humantime_serde::deserialize(deserializer)
    }
}
