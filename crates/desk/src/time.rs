//! Time as the desk keeps it: UTC seconds since the Unix epoch, plus a fixed
//! offset for display and for reports that name no zone.
//!
//! Reports carry dates in every shape (RFC 5322, RFC 3339, ctime, Japanese
//! `年月日`), so [`find_datetime`] scans text for the first date it can read.

use std::sync::LazyLock;

use regex::Regex;
use serde::{Deserialize, Serialize};

/// Seconds since 1970-01-01T00:00:00Z.
pub type UnixTime = i64;

/// A fixed offset from UTC, in seconds east (JST is `+09:00` = 32400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct FixedOffset(pub i32);

impl FixedOffset {
    pub const UTC: FixedOffset = FixedOffset(0);
    /// Japan Standard Time; Japan has no daylight saving, so a fixed offset is exact.
    pub const JST: FixedOffset = FixedOffset(9 * 3600);

    /// Parses `Z`, `UTC`, `+09:00`, `-0500`, or a zone name this module knows.
    pub fn parse(text: &str) -> Option<FixedOffset> {
        let t = text.trim();
        if let Some(seconds) = zone_name_offset(t) {
            return Some(FixedOffset(seconds));
        }
        if t.eq_ignore_ascii_case("asia/tokyo") {
            return Some(FixedOffset::JST);
        }
        numeric_offset(t).map(FixedOffset)
    }
}

/// Days since the epoch of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = month as i64;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(year: i64, month: u32) -> u32 {
    match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        _ => 28,
    }
}

/// The UTC instant of a wall-clock time at `offset`; `None` for an impossible date.
pub fn from_civil(
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
    offset: FixedOffset,
) -> Option<UnixTime> {
    if !(1970..=9999).contains(&year)
        || !(1..=12).contains(&month)
        || day == 0
        || day > days_in_month(year, month)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let local = days_from_civil(year, month, day) * 86_400
        + hour as i64 * 3600
        + minute as i64 * 60
        + second.min(59) as i64;
    Some(local - offset.0 as i64)
}

/// RFC 3339 text of `at` shown at `offset` (`Z` for UTC).
pub fn rfc3339(at: UnixTime, offset: FixedOffset) -> String {
    let local = at + offset.0 as i64;
    let (y, m, d) = civil_from_days(local.div_euclid(86_400));
    let secs = local.rem_euclid(86_400);
    let zone = if offset.0 == 0 {
        "Z".to_string()
    } else {
        let sign = if offset.0 < 0 { '-' } else { '+' };
        let abs = offset.0.unsigned_abs();
        format!("{sign}{:02}:{:02}", abs / 3600, abs % 3600 / 60)
    };
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}{zone}",
        secs / 3600,
        secs % 3600 / 60,
        secs % 60
    )
}

/// Parses exactly one RFC 3339 time (`2026-12-01T10:00:00+09:00`); for CLI input.
pub fn parse_rfc3339(text: &str) -> Option<UnixTime> {
    let (at, matched) = find_datetime(text, FixedOffset::UTC)?;
    (matched.trim() == text.trim()).then_some(at)
}

fn month_number(name: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec",
    ];
    let lower = name.get(..3)?.to_ascii_lowercase();
    MONTHS
        .iter()
        .position(|m| *m == lower)
        .map(|i| i as u32 + 1)
}

fn zone_name_offset(name: &str) -> Option<i32> {
    let hours = match name.to_ascii_uppercase().as_str() {
        "Z" | "UT" | "UTC" | "GMT" => 0,
        "JST" => 9,
        "KST" => 9,
        "CET" => 1,
        "CEST" => 2,
        "EST" => -5,
        "EDT" => -4,
        "CST" => -6,
        "CDT" => -5,
        "MST" => -7,
        "MDT" => -6,
        "PST" => -8,
        "PDT" => -7,
        _ => return None,
    };
    Some(hours * 3600)
}

fn numeric_offset(text: &str) -> Option<i32> {
    let (sign, rest) = match text.as_bytes().first()? {
        b'+' => (1, &text[1..]),
        b'-' => (-1, &text[1..]),
        _ => return None,
    };
    let digits: String = rest.chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    (hours <= 14 && minutes < 60).then_some(sign * (hours * 3600 + minutes * 60))
}

const ZONE: &str = r"(Z|[+-]\d{2}:?\d{2}|UTC|GMT|UT|JST|KST|CES?T|[ECMP][SD]T)?";

static ISO: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(\d{{4}})[-/.](\d{{1,2}})[-/.](\d{{1,2}})(?:T|\s+)(\d{{1,2}}):(\d{{2}})(?::(\d{{2}}))?(?:\.\d+)?\s*{ZONE}\b?"
    ))
    .expect("static regex")
});
static RFC5322: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"(?i:(?:[a-z]{{3}},?\s+)?)(\d{{1,2}})[\s-]+([A-Za-z]{{3}})[a-z]*[\s-]+(\d{{4}})\s+(\d{{1,2}}):(\d{{2}})(?::(\d{{2}}))?\s*{ZONE}"
    ))
    .expect("static regex")
});
/// ctime (`Tue Dec  1 10:00:00 2026`), as FreeRADIUS writes its detail date lines,
/// and `Dec  1 2026 10:00:00 JST`, as it writes `Event-Timestamp`.
static CTIME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!(
        r"([A-Za-z]{{3}})\s+(\d{{1,2}})\s+(?:(\d{{4}})\s+)?(\d{{1,2}}):(\d{{2}}):(\d{{2}})\s*{ZONE}\s*(\d{{4}})?"
    ))
    .expect("static regex")
});
static JAPANESE: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(\d{4})年\s*(\d{1,2})月\s*(\d{1,2})日(?:\s*\([^)]*\))?\s*(\d{1,2})[時:：](\d{2})分?(?:[:：]?(\d{2})秒?)?")
        .expect("static regex")
});

fn zone_or(text: Option<regex::Match<'_>>, default: FixedOffset) -> FixedOffset {
    text.and_then(|m| FixedOffset::parse(m.as_str()))
        .unwrap_or(default)
}

fn num(m: Option<regex::Match<'_>>) -> Option<u32> {
    m.map_or(Some(0), |m| m.as_str().parse().ok())
}

/// The first date-and-time in `text` this module can read, as UTC, with the
/// exact text it was read from. A time without a zone is taken at `default_zone`.
pub fn find_datetime(text: &str, default_zone: FixedOffset) -> Option<(UnixTime, String)> {
    let mut found: Vec<(usize, UnixTime, String)> = Vec::new();
    if let Some(c) = ISO.captures(text) {
        let whole = c.get(0)?;
        let at = from_civil(
            c[1].parse().ok()?,
            c[2].parse().ok()?,
            c[3].parse().ok()?,
            c[4].parse().ok()?,
            c[5].parse().ok()?,
            num(c.get(6))?,
            zone_or(c.get(7), default_zone),
        );
        if let Some(at) = at {
            found.push((whole.start(), at, whole.as_str().trim_end().to_string()));
        }
    }
    if let Some(c) = RFC5322.captures(text) {
        let whole = c.get(0)?;
        if let Some(month) = month_number(&c[2]) {
            let at = from_civil(
                c[3].parse().ok()?,
                month,
                c[1].parse().ok()?,
                c[4].parse().ok()?,
                c[5].parse().ok()?,
                num(c.get(6))?,
                zone_or(c.get(7), default_zone),
            );
            if let Some(at) = at {
                found.push((whole.start(), at, whole.as_str().trim_end().to_string()));
            }
        }
    }
    if let Some(c) = CTIME.captures(text) {
        let whole = c.get(0)?;
        let year = c.get(3).or(c.get(8));
        if let (Some(month), Some(year)) = (month_number(&c[1]), year) {
            let at = from_civil(
                year.as_str().parse().ok()?,
                month,
                c[2].parse().ok()?,
                c[4].parse().ok()?,
                c[5].parse().ok()?,
                c[6].parse().ok()?,
                zone_or(c.get(7), default_zone),
            );
            if let Some(at) = at {
                found.push((whole.start(), at, whole.as_str().trim_end().to_string()));
            }
        }
    }
    if let Some(c) = JAPANESE.captures(text) {
        let whole = c.get(0)?;
        let at = from_civil(
            c[1].parse().ok()?,
            c[2].parse().ok()?,
            c[3].parse().ok()?,
            c[4].parse().ok()?,
            c[5].parse().ok()?,
            num(c.get(6))?,
            default_zone,
        );
        if let Some(at) = at {
            found.push((whole.start(), at, whole.as_str().trim_end().to_string()));
        }
    }
    found
        .into_iter()
        .min_by_key(|(start, _, _)| *start)
        .map(|(_, at, text)| (at, text))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, zone: FixedOffset, expected: Option<&str>) {
        let got = find_datetime(text, zone).map(|(at, _)| rfc3339(at, FixedOffset::UTC));
        assert_eq!(got.as_deref(), expected, "input {text:?}");
    }

    #[test]
    fn dates_in_the_shapes_reports_use() {
        let jst = FixedOffset::JST;
        let cases: &[(&str, Option<&str>)] = &[
            (
                "Tue, 1 Dec 2026 10:00:00 +0900",
                Some("2026-12-01T01:00:00Z"),
            ),
            ("1 Dec 2026 10:00:00 GMT", Some("2026-12-01T10:00:00Z")),
            (
                "Thu, 08 Oct 2026 07:15:02 -0400 (EDT)",
                Some("2026-10-08T11:15:02Z"),
            ),
            ("2026-12-01T10:00:00Z", Some("2026-12-01T10:00:00Z")),
            (
                "2026-12-01T10:00:00.123+09:00",
                Some("2026-12-01T01:00:00Z"),
            ),
            (
                "at 2026-12-01 10:00:00 (no zone)",
                Some("2026-12-01T01:00:00Z"),
            ),
            ("2026/12/01 10:00 JST", Some("2026-12-01T01:00:00Z")),
            ("Tue Dec  1 10:00:00 2026", Some("2026-12-01T01:00:00Z")),
            ("Dec  1 2026 10:00:00 UTC", Some("2026-12-01T10:00:00Z")),
            ("2026年12月1日 10時05分", Some("2026-12-01T01:05:00Z")),
            ("2026年12月1日(火) 10:05:30", Some("2026-12-01T01:05:30Z")),
            ("2026-02-30 10:00:00Z", None),
            ("no date here 10:00", None),
            ("", None),
        ];
        for (text, expected) in cases {
            check(text, jst, *expected);
        }
    }

    #[test]
    fn rfc3339_round_trips_and_shows_offsets() {
        let at = from_civil(2026, 12, 1, 10, 0, 0, FixedOffset::JST).unwrap();
        assert_eq!(rfc3339(at, FixedOffset::JST), "2026-12-01T10:00:00+09:00");
        assert_eq!(rfc3339(at, FixedOffset::UTC), "2026-12-01T01:00:00Z");
        assert_eq!(parse_rfc3339("2026-12-01T10:00:00+09:00"), Some(at));
        assert_eq!(parse_rfc3339("2026-12-01T10:00:00+09:00 junk"), None);
        assert_eq!(FixedOffset::parse("Asia/Tokyo"), Some(FixedOffset::JST));
        assert_eq!(
            FixedOffset::parse("-05:30"),
            Some(FixedOffset(-(5 * 3600 + 1800)))
        );
    }
}
