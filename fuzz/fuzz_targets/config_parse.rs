//! The configuration parser never panics, and whatever it accepts validates again after a
//! round trip through its own TOML rendering (`spamgate config check` prints it).
#![no_main]

use libfuzzer_sys::fuzz_target;
use spamgate::config::Config;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(config) = Config::parse(text) {
        let rendered = config.to_toml();
        let again = Config::parse(&rendered).expect("the effective config parses again");
        assert_eq!(again, config, "round trip changed the config");
    }
});
