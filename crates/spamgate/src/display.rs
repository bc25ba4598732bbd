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

/// `[op25b]` as `config check` prints it: the crate's own serialisation, in its field
/// order, with its durations written by [`duration`] (humantime's would print
/// `3650days` as `9years 11months ...`).
pub fn serialize_op25b<S: serde::Serializer>(
    config: &spamgate_op25b::Op25bConfig,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::{Error, SerializeMap};
    const ORDER: [&str; 10] = [
        "table",
        "pools",
        "relays",
        "exempt",
        "log_rate",
        "ports_blocked",
        "interfaces",
        "hits_timeout",
        "hits_size",
        "nft_timeout",
    ];
    let mut table = toml::Table::try_from(config).map_err(S::Error::custom)?;
    for (key, value) in [
        ("hits_timeout", config.hits_timeout),
        ("nft_timeout", config.nft_timeout),
    ] {
        table.insert(key.to_owned(), toml::Value::String(duration(value)));
    }
    let mut map = serializer.serialize_map(Some(table.len()))?;
    for key in ORDER {
        if let Some(value) = table.get(key) {
            map.serialize_entry(key, value)?;
        }
    }
    // A key added to the crate later is still printed, after the known ones.
    for (key, value) in table.iter().filter(|(k, _)| !ORDER.contains(&k.as_str())) {
        map.serialize_entry(key, value)?;
    }
    map.end()
}
