//! Expiry instants: RFC 3339 date-times with an offset, or bare dates, to Unix milliseconds
//! and back. Small and exact, so the crate needs no date library.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

const MS_PER_DAY: i64 = 86_400_000;

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
    if day < 1 || day > days_in_month(year, month) {
        return Err(bad("day out of range for that month"));
    }
    let day_ms = days_from_civil(year, month, day) * MS_PER_DAY;
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
    if hour > 23 || minute > 59 || second > 60 {
        return Err(bad("time out of range"));
    }
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
    let local_ms = day_ms + ((hour * 60 + minute) * 60 + second.min(59)) * 1000 + millis;
    Ok(local_ms - offset_minutes * 60_000)
}

fn digits(bytes: &[u8]) -> Option<i64> {
    bytes.iter().try_fold(0i64, |acc, b| {
        b.is_ascii_digit().then(|| acc * 10 + i64::from(b - b'0'))
    })
}

fn is_leap(year: i64) -> bool {
    (year % 4 == 0 && year % 100 != 0) || year % 400 == 0
}

fn days_in_month(year: i64, month: i64) -> i64 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian, day 0 = 1970-01-01).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// `2026-12-31T18:00:00Z` for a Unix millisecond instant (sub-second part dropped).
pub(crate) fn format_utc(unix_ms: i64) -> String {
    let secs = unix_ms.div_euclid(1000);
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}Z",
        sod / 3600,
        sod / 60 % 60,
        sod % 60
    )
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
    }

    #[test]
    fn civil_round_trip_over_four_centuries() {
        for days in (-200_000..200_000).step_by(7) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
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
