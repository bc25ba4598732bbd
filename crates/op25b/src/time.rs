//! Expiry instants: RFC 3339 date-times with an offset, or bare dates, to Unix milliseconds
//! and back. The strict grammar (and its error messages for operators) is ours; the
//! calendar (days per month, leap years, days since the epoch) is jiff's.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MS_PER_DAY: i64 = 86_400_000;
const UNIX_EPOCH_CIVIL: DateTime = DateTime::constant(1970, 1, 1, 0, 0, 0, 0);

/// When an exemption ends: `2026-12-31T18:00:00+09:00` (that instant) or `2026-12-31`
/// (the end of that day in UTC, i.e. 2027-01-01T00:00:00Z). A date-time without an offset
/// is refused: it would mean a different instant on every router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expiry {
    text: String,
    unix_ms: i64,
}

impl Expiry {
    /// Parses the accepted forms; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Expiry, String> {
        let trimmed = text.trim();
        let unix_ms = parse_rfc3339(trimmed)?;
        Ok(Expiry {
            text: trimmed.to_owned(),
            unix_ms,
        })
    }

    /// The text as the operator wrote it.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_ms(&self) -> i64 {
        self.unix_ms
    }
}

impl fmt::Display for Expiry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for Expiry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for Expiry {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Expiry, D::Error> {
        struct ExpiryVisitor;
        impl<'de> Visitor<'de> for ExpiryVisitor {
            type Value = Expiry;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an RFC 3339 date-time with offset, or a date (YYYY-MM-DD)")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Expiry, E> {
                Expiry::parse(v).map_err(E::custom)
            }
            // TOML's native date and date-time values arrive as toml's private map form;
            // let toml's own type decode it, then parse its canonical text.
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Expiry, A::Error> {
                let datetime =
                    toml::value::Datetime::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Expiry::parse(&datetime.to_string()).map_err(de::Error::custom)
            }
        }
        deserializer.deserialize_any(ExpiryVisitor)
    }
}

/// Milliseconds since the Unix epoch; instants before it count as the epoch.
pub(crate) fn unix_ms(now: SystemTime) -> i64 {
    match now.duration_since(UNIX_EPOCH) {
        Ok(since) => i64::try_from(since.as_millis()).unwrap_or(i64::MAX),
        Err(_) => 0,
    }
}

fn parse_rfc3339(text: &str) -> Result<i64, String> {
    let bad = |why: &str| format!("expiry {text:?}: {why}");
    let bytes = text.as_bytes();
    if bytes.len() < 10 || bytes[4] != b'-' || bytes[7] != b'-' {
        return Err(bad(
            "expected YYYY-MM-DD or an RFC 3339 date-time such as 2026-12-31T18:00:00+09:00",
        ));
    }
    let year = digits(&bytes[0..4]).ok_or_else(|| bad("year is not four digits"))?;
    let month = digits(&bytes[5..7]).ok_or_else(|| bad("month is not two digits"))?;
    let day = digits(&bytes[8..10]).ok_or_else(|| bad("day is not two digits"))?;
    if !(1..=12).contains(&month) {
        return Err(bad("month out of range"));
    }
    // Four and two digits always fit jiff's i16 / i8; jiff refuses the 31st of April,
    // the 29th of February outside leap years and day 0.
    let date = Date::new(year as i16, month as i8, day as i8)
        .map_err(|_| bad("day out of range for that month"))?;
    // Years 0000-9999 all lie in jiff's civil range, so the distance to the epoch is exact
    // (a Timestamp would refuse the last day of 9999 and the first of year 0).
    let day_ms = millis_since_epoch(date.to_datetime(Time::midnight()));
    if bytes.len() == 10 {
        // A bare date lasts through that whole day (UTC).
        return Ok(day_ms + MS_PER_DAY);
    }
    if !matches!(bytes[10], b'T' | b't' | b' ') || bytes.len() < 19 {
        return Err(bad(
            "expected a time after the date, as in 2026-12-31T18:00:00+09:00",
        ));
    }
    if bytes[13] != b':' || bytes[16] != b':' {
        return Err(bad("time must be HH:MM:SS"));
    }
    let hour = digits(&bytes[11..13]).ok_or_else(|| bad("hour is not two digits"))?;
    let minute = digits(&bytes[14..16]).ok_or_else(|| bad("minute is not two digits"))?;
    let second = digits(&bytes[17..19]).ok_or_else(|| bad("second is not two digits"))?;
    // 60 is a leap second: count it as the last second of the minute.
    let second = if second == 60 { 59 } else { second };
    let time = Time::new(hour as i8, minute as i8, second as i8, 0)
        .map_err(|_| bad("time out of range"))?;
    let mut rest = &bytes[19..];
    let mut millis = 0i64;
    if let Some((b'.', frac)) = rest.split_first() {
        let len = frac.iter().take_while(|b| b.is_ascii_digit()).count();
        if len == 0 {
            return Err(bad("empty fraction of a second"));
        }
        for (i, b) in frac[..len.min(3)].iter().enumerate() {
            millis += i64::from(b - b'0') * [100, 10, 1][i];
        }
        rest = &frac[len..];
    }
    let offset_minutes = match rest {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] => {
            let h = digits(&[*h1, *h2]).ok_or_else(|| bad("offset hour is not two digits"))?;
            let m = digits(&[*m1, *m2]).ok_or_else(|| bad("offset minute is not two digits"))?;
            if h > 23 || m > 59 {
                return Err(bad("offset out of range"));
            }
            let minutes = h * 60 + m;
            if *sign == b'-' { -minutes } else { minutes }
        }
        [] => return Err(bad("no UTC offset: add Z or one such as +09:00")),
        _ => return Err(bad("offset must be Z or +HH:MM / -HH:MM")),
    };
    let local_ms = millis_since_epoch(date.to_datetime(time)) + millis;
    Ok(local_ms - offset_minutes * 60_000)
}

fn digits(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0i64, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

fn millis_since_epoch(datetime: DateTime) -> i64 {
    // At most ±10,000 years: far inside i64 milliseconds.
    datetime.duration_since(UNIX_EPOCH_CIVIL).as_millis() as i64
}

/// `2026-12-31T18:00:00Z` for a Unix millisecond instant (sub-second part dropped). An
/// instant outside jiff's range (years ±9999; only a bare date of 9999-12-31 reaches it)
/// is shown as seconds since the epoch rather than refused: this text is only a comment.
pub(crate) fn format_utc(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    match Timestamp::from_second(secs) {
        Ok(instant) => instant.to_string(),
        Err(_) => format!("{secs} s after 1970-01-01T00:00:00Z"),
    }
}

/// An nft time value: `30d4h5m6s`. nft refuses one big number of seconds ("value too
/// large"), so every unit stays within its own range.
pub(crate) fn nft_duration(total_secs: u64) -> String {
    let (days, rest) = (total_secs / 86_400, total_secs % 86_400);
    let (hours, minutes, seconds) = (rest / 3600, rest / 60 % 60, rest % 60);
    let mut out = String::new();
    for (value, unit) in [(days, 'd'), (hours, 'h'), (minutes, 'm'), (seconds, 's')] {
        if value > 0 {
            out.push_str(&format!("{value}{unit}"));
        }
    }
    if out.is_empty() {
        out.push_str("1s");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<&str, &str>) {
        match (Expiry::parse(text), expected) {
            (Ok(expiry), Ok(utc)) => assert_eq!(format_utc(expiry.unix_ms()), utc, "{text}"),
            (Err(err), Err(part)) => assert!(err.contains(part), "{text}: {err}"),
            (got, want) => panic!("{text}: got {got:?}, want {want:?}"),
        }
    }

    #[test]
    fn parses_accepted_forms_and_refuses_the_rest() {
        check("1970-01-01T00:00:00Z", Ok("1970-01-01T00:00:00Z"));
        check("2026-12-31", Ok("2027-01-01T00:00:00Z"));
        check("2024-02-29", Ok("2024-03-01T00:00:00Z"));
        check("2026-04-01T00:00:00+09:00", Ok("2026-03-31T15:00:00Z"));
        check("2026-04-01t09:30:15.250-05:30", Ok("2026-04-01T15:00:15Z"));
        check("2026-04-01 00:00:00Z", Ok("2026-04-01T00:00:00Z"));
        check("2016-12-31T23:59:60Z", Ok("2016-12-31T23:59:59Z"));
        check("2026-04-01T00:00:00", Err("no UTC offset"));
        check("2025-02-29", Err("day out of range"));
        check("2026-13-01", Err("month out of range"));
        check("2026-04-01T24:00:00Z", Err("time out of range"));
        check("2026-04-01T00:00:00+9", Err("offset must be"));
        check("next tuesday", Err("expected YYYY-MM-DD"));
        check("2026-04-01T00:00", Err("expected a time"));
        check("", Err("expected YYYY-MM-DD"));
        check("２０２６-04-01", Err("expected YYYY-MM-DD"));
        check("2O26-04-01", Err("year is not four digits"));
        // The ends of the four-digit years: exact, and shown even past jiff's Timestamp.
        check("0000-01-01T00:00:00+01:00", Ok("-000001-12-31T23:00:00Z"));
        check("2100-02-29", Err("day out of range"));
        check("2000-02-29", Ok("2000-03-01T00:00:00Z"));
        check("2026-04-31", Err("day out of range"));
        check("2026-04-00", Err("day out of range"));
        check(
            "9999-12-31",
            Ok("253402300800 s after 1970-01-01T00:00:00Z"),
        );
    }

    #[test]
    fn nft_durations_keep_units_small() {
        assert_eq!(nft_duration(0), "1s");
        assert_eq!(nft_duration(59), "59s");
        assert_eq!(nft_duration(86_400), "1d");
        assert_eq!(nft_duration(315_360_000), "3650d");
        assert_eq!(nft_duration(90_061), "1d1h1m1s");
    }
}
