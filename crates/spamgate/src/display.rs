//! Times and durations as people read them, for every listing of the command line: one
//! formatter, one parser, so `greylist list`, `allow list`, `account events` and the
//! desk's listings say a time the same way.
//!
//! - [`DisplayZone`]: the zone of `[server] display_timezone` (`"local"`, `"UTC"`, a
//!   fixed offset such as `"+09:00"`, or a zone name such as `"Asia/Tokyo"` read from the
//!   system's time-zone database), and [`DisplayZone::time`], RFC 3339 in that zone.
//! - [`DisplayZone::parse_time`]: what `journalctl --since` accepts ("yesterday", "-1h",
//!   "1h ago", "2026-12-01 10:00:00", RFC 3339 ...), with `now` passed in.
//! - [`duration`]: a duration as an operator writes it ("35days", "5m 30s"), not
//!   humantime's calendar months ("1month 4days 13h 26m 24s"); [`serde_duration`] for
//!   the configuration's duration keys, so `config check` prints them that way too.

use std::str::FromStr;
use std::time::Duration;

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{Offset, TimeZone};

/// Where the time-zone database is read from (also `$TZDIR`); Debian package `tzdata`.
pub const ZONEINFO: &str = "/usr/share/zoneinfo";

/// The zone listings show times in.
#[derive(Debug, Clone)]
pub struct DisplayZone {
    tz: TimeZone,
}

impl Default for DisplayZone {
    fn default() -> Self {
        DisplayZone::utc()
    }
}

impl DisplayZone {
    pub fn utc() -> DisplayZone {
        DisplayZone { tz: TimeZone::UTC }
    }

    /// A fixed offset, in seconds east of UTC (`32400` is JST).
    pub fn fixed_seconds(seconds: i32) -> DisplayZone {
        let offset = Offset::from_seconds(seconds).unwrap_or(Offset::UTC);
        DisplayZone {
            tz: TimeZone::fixed(offset),
        }
    }

    /// `local` (the system's zone: `$TZ`, else /etc/localtime, else UTC), `UTC` or `Z`,
    /// a fixed offset (`+09:00`, `-0530`, `+9`), `JST`, or a zone name of the system's
    /// database (`Asia/Tokyo`).
    pub fn parse(text: &str) -> Result<DisplayZone, String> {
        let t = text.trim();
        let fixed = |seconds: i32| Ok(DisplayZone::fixed_seconds(seconds));
        match t.to_ascii_uppercase().as_str() {
            "" => return Err("empty time zone".into()),
            "LOCAL" => {
                return Ok(DisplayZone {
                    tz: TimeZone::try_system().unwrap_or(TimeZone::UTC),
                });
            }
            "UTC" | "Z" | "GMT" | "ETC/UTC" => return Ok(DisplayZone::utc()),
            "JST" => return fixed(9 * 3600),
            _ => {}
        }
        if let Some(seconds) = fixed_offset(t) {
            return fixed(seconds);
        }
        TimeZone::get(t).map(|tz| DisplayZone { tz }).map_err(|_| {
            format!(
                "unknown time zone {t:?}: not in the system's time-zone database \
                 ({ZONEINFO} or $TZDIR; Debian package tzdata). A fixed offset such as \
                 \"+09:00\" needs no database"
            )
        })
    }

    /// RFC 3339 in this zone, to the second: `2026-12-01T19:00:00+09:00` (`Z` for UTC).
    pub fn time(&self, unix_seconds: i64) -> String {
        let Ok(at) = Timestamp::from_second(unix_seconds) else {
            return unix_seconds.to_string();
        };
        let zoned = at.to_zoned_datetime(self.tz.clone());
        let offset = zoned.offset().seconds();
        let mut text = zoned.strftime("%Y-%m-%dT%H:%M:%S").to_string();
        if offset == 0 {
            text.push('Z');
        } else {
            let sign = if offset < 0 { '-' } else { '+' };
            let abs = offset.unsigned_abs();
            text.push_str(&format!("{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60));
        }
        text
    }

    /// [`DisplayZone::time`] of a store's unsigned seconds.
    pub fn time_u64(&self, unix_seconds: u64) -> String {
        self.time(i64::try_from(unix_seconds).unwrap_or(i64::MAX))
    }

    /// The day (`2026-12-01`) `unix_seconds` falls on in this zone.
    pub fn day(&self, unix_seconds: i64) -> String {
        self.time(unix_seconds)
            .get(..10)
            .unwrap_or_default()
            .to_string()
    }

    /// Reads a time as `journalctl --since/--until` does, relative to `now` (Unix
    /// seconds) and, for dates and times without an offset, in this zone:
    /// `now`, `today`, `yesterday`, `tomorrow` (midnight), `-1h` / `+30min`, `1h ago`,
    /// `2h left`, `2026-12-01`, `2026-12-01 10:00`, `2026-12-01 10:00:00`, `10:00`
    /// (today), RFC 3339 (`2026-12-01T10:00:00+09:00`), `@1764550800`. A bare
    /// duration (`7days`, the form spamgate took before) means that long ago.
    pub fn parse_time(&self, text: &str, now: i64) -> Result<i64, String> {
        let t = text.trim();
        let bad = |why: &str| {
            format!(
                "{t:?} is not a time{why} (e.g. \"yesterday\", \"-1h\", \"2h ago\", \
                 \"2026-12-01\", \"2026-12-01 10:00:00\", \"2026-12-01T10:00:00+09:00\")"
            )
        };
        let lower = t.to_ascii_lowercase();
        let midnight = |days: i64| -> Result<i64, String> {
            let today = self.zoned(now).map_err(|_| bad(""))?.date();
            let day = today
                .checked_add(jiff::Span::new().days(days))
                .map_err(|_| bad(""))?;
            self.civil(day.to_datetime(Time::midnight()))
                .ok_or_else(|| bad(""))
        };
        let span = |text: &str| -> Result<i64, String> {
            let d = humantime::parse_duration(text.trim()).map_err(|_| bad(""))?;
            i64::try_from(d.as_secs()).map_err(|_| bad(": too far"))
        };
        match lower.as_str() {
            "" => return Err(bad("")),
            "now" => return Ok(now),
            "today" => return midnight(0),
            "yesterday" => return midnight(-1),
            "tomorrow" => return midnight(1),
            _ => {}
        }
        if let Some(seconds) = t.strip_prefix('@') {
            return seconds.trim().parse::<i64>().map_err(|_| bad(""));
        }
        if let Some(rest) = t.strip_prefix('-') {
            return Ok(now.saturating_sub(span(rest)?));
        }
        if let Some(rest) = t.strip_prefix('+') {
            return Ok(now.saturating_add(span(rest)?));
        }
        if let Some(rest) = lower.strip_suffix(" ago") {
            return Ok(now.saturating_sub(span(rest)?));
        }
        if let Some(rest) = lower.strip_suffix(" left") {
            return Ok(now.saturating_add(span(rest)?));
        }
        if let Ok(at) = Timestamp::from_str(t) {
            return Ok(at.as_second());
        }
        if let Ok(at) = DateTime::from_str(t) {
            return self.civil(at).ok_or_else(|| bad(""));
        }
        if let Ok(day) = Date::from_str(t) {
            return self
                .civil(day.to_datetime(Time::midnight()))
                .ok_or_else(|| bad(""));
        }
        if t.contains(':')
            && let Ok(time) = Time::from_str(t)
        {
            let today = self.zoned(now).map_err(|_| bad(""))?.date();
            return self.civil(today.to_datetime(time)).ok_or_else(|| bad(""));
        }
        if let Ok(ago) = span(t) {
            return Ok(now.saturating_sub(ago));
        }
        Err(bad(""))
    }

    fn zoned(&self, unix_seconds: i64) -> Result<jiff::ZonedDateTime, jiff::Error> {
        Ok(Timestamp::from_second(unix_seconds)?.to_zoned_datetime(self.tz.clone()))
    }

    /// The instant of a wall-clock time in this zone (a time skipped or repeated by a
    /// daylight-saving change is read as the clocks before the change would).
    fn civil(&self, at: DateTime) -> Option<i64> {
        at.to_zoned_datetime(self.tz.clone())
            .ok()
            .map(|z| z.timestamp().as_second())
    }
}

/// `+09:00`, `-05:30`, `+0900`, `+09`, `+9`: seconds east of UTC.
fn fixed_offset(text: &str) -> Option<i32> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        1 | 2 => (digits.parse::<i32>().ok()?, 0),
        4 => (digits[..2].parse().ok()?, digits[2..].parse().ok()?),
        _ => return None,
    };
    (hours <= 18 && minutes < 60).then_some(sign * (hours * 3600 + minutes * 60))
}

/// A duration as an operator writes it, in whole units and no calendar months:
/// `35days`, `1day`, `5m 30s`, `1h`, `50ms`, `0s`. humantime reads it back.
pub fn duration(d: Duration) -> String {
    let secs = d.as_secs();
    let millis = d.subsec_millis();
    if secs == 0 && millis == 0 {
        return "0s".into();
    }
    let mut parts = Vec::new();
    let days = secs / 86_400;
    if days > 0 {
        parts.push(format!("{days}{}", if days == 1 { "day" } else { "days" }));
    }
    for (value, unit) in [
        (secs % 86_400 / 3600, "h"),
        (secs % 3600 / 60, "m"),
        (secs % 60, "s"),
        (u64::from(millis), "ms"),
    ] {
        if value > 0 {
            parts.push(format!("{value}{unit}"));
        }
    }
    parts.join(" ")
}

/// `#[serde(with = "crate::display::serde_duration")]`: reads what humantime reads,
/// writes [`duration`].
pub mod serde_duration {
    use std::time::Duration;

    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::duration(*d))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-12-02T10:30:00+09:00 (a Wednesday), the `now` of the parser's table.
    const NOW: i64 = 1_796_175_000;

    fn jst() -> DisplayZone {
        DisplayZone::parse("+09:00").unwrap()
    }

    fn check(input: &str, expected: Result<&str, ()>) {
        let zone = jst();
        let got = zone.parse_time(input, NOW).map(|t| zone.time(t));
        match expected {
            Ok(want) => assert_eq!(got.as_deref(), Ok(want), "{input:?}"),
            Err(()) => assert!(got.is_err(), "{input:?} should not parse: {got:?}"),
        }
    }

    #[test]
    fn now_is_what_the_table_says() {
        assert_eq!(jst().time(NOW), "2026-12-02T10:30:00+09:00");
        assert_eq!(DisplayZone::utc().time(NOW), "2026-12-02T01:30:00Z");
    }

    #[test]
    fn since_and_until_read_what_journalctl_reads() {
        for (input, expected) in [
            ("now", Ok("2026-12-02T10:30:00+09:00")),
            ("today", Ok("2026-12-02T00:00:00+09:00")),
            ("Yesterday", Ok("2026-12-01T00:00:00+09:00")),
            ("tomorrow", Ok("2026-12-03T00:00:00+09:00")),
            ("-1h", Ok("2026-12-02T09:30:00+09:00")),
            ("-1h 30min", Ok("2026-12-02T09:00:00+09:00")),
            ("+30min", Ok("2026-12-02T11:00:00+09:00")),
            ("1h ago", Ok("2026-12-02T09:30:00+09:00")),
            ("2days ago", Ok("2026-11-30T10:30:00+09:00")),
            ("1week ago", Ok("2026-11-25T10:30:00+09:00")),
            ("2h left", Ok("2026-12-02T12:30:00+09:00")),
            ("7days", Ok("2026-11-25T10:30:00+09:00")),
            ("2026-12-01", Ok("2026-12-01T00:00:00+09:00")),
            ("2026-12-01 10:00", Ok("2026-12-01T10:00:00+09:00")),
            ("2026-12-01 10:00:00", Ok("2026-12-01T10:00:00+09:00")),
            ("2026-12-01T10:00:00", Ok("2026-12-01T10:00:00+09:00")),
            ("2026-12-01T10:00:00Z", Ok("2026-12-01T19:00:00+09:00")),
            ("2026-12-01T10:00:00+09:00", Ok("2026-12-01T10:00:00+09:00")),
            ("2026-12-01T10:00:00-05:00", Ok("2026-12-02T00:00:00+09:00")),
            ("08:15", Ok("2026-12-02T08:15:00+09:00")),
            ("08:15:30", Ok("2026-12-02T08:15:30+09:00")),
            ("@1796086800", Ok("2026-12-01T10:00:00+09:00")),
            ("  today  ", Ok("2026-12-02T00:00:00+09:00")),
            ("", Err(())),
            ("soon", Err(())),
            ("2026-13-01", Err(())),
            ("2026-02-30", Err(())),
            ("25:00", Err(())),
            ("-", Err(())),
            ("1h from now", Err(())),
            ("@tomorrow", Err(())),
        ] {
            check(input, expected);
        }
    }

    #[test]
    fn dates_are_read_in_the_display_zone() {
        let utc = DisplayZone::utc();
        assert_eq!(
            utc.time(utc.parse_time("2026-12-01", NOW).unwrap()),
            "2026-12-01T00:00:00Z"
        );
        // Midnight of "today" is the zone's: 20:00 UTC on the 1st is the 2nd in Tokyo.
        let evening_utc = NOW - 5 * 3600 - 30 * 60;
        assert_eq!(utc.time(evening_utc), "2026-12-01T20:00:00Z");
        assert_eq!(
            utc.time(utc.parse_time("today", evening_utc).unwrap()),
            "2026-12-01T00:00:00Z"
        );
        assert_eq!(
            jst().time(jst().parse_time("today", evening_utc).unwrap()),
            "2026-12-02T00:00:00+09:00"
        );
    }

    #[test]
    fn zones_parse_or_say_why_not() {
        for (input, shown) in [
            ("UTC", "2026-12-02T01:30:00Z"),
            ("z", "2026-12-02T01:30:00Z"),
            ("+09:00", "2026-12-02T10:30:00+09:00"),
            ("+0900", "2026-12-02T10:30:00+09:00"),
            ("+9", "2026-12-02T10:30:00+09:00"),
            ("JST", "2026-12-02T10:30:00+09:00"),
            ("-05:30", "2026-12-01T20:00:00-05:30"),
        ] {
            assert_eq!(
                DisplayZone::parse(input).unwrap().time(NOW),
                shown,
                "{input}"
            );
        }
        for bad in ["", "+25:00", "+09:60", "Mars/Olympus_Mons", "+09:00:00"] {
            assert!(DisplayZone::parse(bad).is_err(), "{bad:?}");
        }
        let error = DisplayZone::parse("Mars/Olympus_Mons").unwrap_err();
        assert!(
            error.contains("tzdata") && error.contains("+09:00"),
            "{error}"
        );
    }

    #[test]
    fn named_zones_come_from_the_system_database() {
        // CI installs tzdata (scripts/test-all.sh); without it this says so plainly.
        assert!(
            std::path::Path::new(ZONEINFO).join("Asia/Tokyo").exists()
                || std::env::var_os("TZDIR").is_some(),
            "no time-zone database at {ZONEINFO}: install tzdata"
        );
        let tokyo = DisplayZone::parse("Asia/Tokyo").unwrap();
        assert_eq!(tokyo.time(NOW), "2026-12-02T10:30:00+09:00");
        let new_york = DisplayZone::parse("America/New_York").unwrap();
        // December: EST, -05:00; July: EDT, -04:00.
        assert_eq!(new_york.time(NOW), "2026-12-01T20:30:00-05:00");
        assert_eq!(
            new_york.time(NOW - 150 * 86_400),
            "2026-07-04T21:30:00-04:00"
        );
    }

    #[test]
    fn durations_read_as_configured() {
        for (secs, text) in [
            (35 * 86_400, "35days"),
            (86_400, "1day"),
            (330, "5m 30s"),
            (100, "1m 40s"),
            (3600, "1h"),
            (90_000, "1day 1h"),
            (300, "5m"),
            (0, "0s"),
        ] {
            let d = Duration::from_secs(secs);
            assert_eq!(duration(d), text);
            assert_eq!(humantime::parse_duration(text).unwrap(), d, "{text}");
        }
        assert_eq!(duration(Duration::from_millis(50)), "50ms");
        assert_eq!(duration(Duration::from_millis(1500)), "1s 500ms");
    }
}
