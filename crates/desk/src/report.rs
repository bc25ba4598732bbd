//! Abuse reports: bytes in, a [`Report`] out, never a panic.
//!
//! Formats: ARF (RFC 5965, with RFC 6692 `Source-Port` and RFC 6590 redactions),
//! XARF (ARF envelope, `Feedback-Type: xarf`, JSON part), old X-ARF (`X-ARF: YES`,
//! YAML-ish second part), SpamCop, and plain-text complaints. Whatever none of them
//! reads becomes [`ReportKind::Unknown`], which [`Report::needs_triage`] sends to a person.

use std::net::IpAddr;
use std::sync::LazyLock;

use mail_parser::{MessageParser, MimeHeaders, PartType};
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::time::{FixedOffset, UnixTime, find_datetime};

/// The four kinds of abusive act the ISP's policy names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Spam,
    /// Mass mailing that overloads the ISP's equipment (Specified Electronic Mail Act, Art. 11).
    Overload,
    /// Vandalism or trolling that harms a site (login attacks, DDoS, defacement).
    Vandalism,
    /// Illegal acts such as copyright infringement, phishing, fraud.
    Illegal,
}

impl Category {
    pub const ALL: [Category; 4] = [
        Category::Spam,
        Category::Overload,
        Category::Vandalism,
        Category::Illegal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Category::Spam => "spam",
            Category::Overload => "overload",
            Category::Vandalism => "vandalism",
            Category::Illegal => "illegal",
        }
    }

    pub fn parse(text: &str) -> Option<Category> {
        Category::ALL
            .into_iter()
            .find(|c| c.as_str().eq_ignore_ascii_case(text.trim()))
    }
}

/// Which parser understood the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum ReportKind {
    /// RFC 5965 feedback report (including big providers' redacted feedback loops).
    Arf,
    /// XARF: ARF envelope with `Feedback-Type: xarf` and a JSON part.
    Xarf,
    /// The old X-ARF (`X-ARF: YES`, key: value second part).
    XArfLegacy,
    /// A SpamCop report (plain or ARF-shaped).
    SpamCop,
    /// A complaint written by a person.
    PlainText,
    /// Raised by spamgate itself (limit trips, refused sends, OP25B hits).
    Internal,
    /// Nothing understood it; kept whole for a person.
    Unknown,
}

/// Where the report's time came from, weakest last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum TimeSource {
    /// `Arrival-Date` / `Received-Date` of an ARF report, or XARF `Date`.
    ReportField,
    /// Found in the complaint's text.
    Text,
    /// The newest `Received:` header of the enclosed message.
    Received,
    /// The enclosed message's `Date:` (set by the sender: weak).
    OriginalDate,
}

/// A time as read: UTC, and the text it was read from (kept for evidence).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ReportTime {
    pub utc: UnixTime,
    pub original: String,
    pub source: TimeSource,
}

/// One parsed report. Every field is optional because real feeds omit anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Report {
    pub kind: ReportKind,
    pub category: Option<Category>,
    /// `Feedback-Type` (ARF), `ReportType` (XARF) or `Report-Type` (X-ARF), as written.
    pub feedback_type: Option<String>,
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub source_ip: Option<IpAddr>,
    pub source_port: Option<u16>,
    /// Other addresses seen in the report, for a person in triage.
    #[cfg_attr(feature = "openapi", schema(value_type = Vec<String>))]
    pub other_ips: Vec<IpAddr>,
    pub time: Option<ReportTime>,
    pub reported_domains: Vec<String>,
    pub original_mail_from: Option<String>,
    pub original_rcpt_to: Vec<String>,
    /// The enclosed message's `Message-ID`: duplicates of one spam share it.
    pub original_message_id: Option<String>,
    /// The enclosed message's `Received:` headers, newest first, unfolded.
    pub received_chain: Vec<String>,
    /// Who reported (the report's `From:`).
    pub reporter: Option<String>,
    pub subject: Option<String>,
    pub user_agent: Option<String>,
    /// RFC 6590 redaction seen (typical of feedback loops).
    pub redacted: bool,
    /// SpamCop's report id, XARF's `ReportId`.
    pub external_id: Option<String>,
    /// What the parser noticed but could not use.
    pub notes: Vec<String>,
}

impl Report {
    pub(crate) fn empty(kind: ReportKind) -> Report {
        Report {
            kind,
            category: None,
            feedback_type: None,
            source_ip: None,
            source_port: None,
            other_ips: Vec::new(),
            time: None,
            reported_domains: Vec::new(),
            original_mail_from: None,
            original_rcpt_to: Vec::new(),
            original_message_id: None,
            received_chain: Vec::new(),
            reporter: None,
            subject: None,
            user_agent: None,
            redacted: false,
            external_id: None,
            notes: Vec::new(),
        }
    }

    /// A report a person must look at: not understood, or lacking what
    /// attribution needs (an address, a time) or a category.
    pub fn needs_triage(&self) -> bool {
        self.kind == ReportKind::Unknown
            || self.source_ip.is_none()
            || self.time.is_none()
            || self.category.is_none()
    }
}

/// Settings for the parsers.
#[derive(Debug, Clone, Copy)]
pub struct ParseOptions {
    /// Zone for times written without one (JST for a Japanese ISP).
    pub default_zone: FixedOffset,
    /// Bytes of human text scanned for addresses and times; bounds the work a
    /// huge message costs.
    pub text_scan_limit: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            default_zone: FixedOffset::JST,
            text_scan_limit: 256 * 1024,
        }
    }
}

/// Parses one message. Never panics; what it cannot read is a [`ReportKind::Unknown`].
pub fn parse_report(raw: &[u8], options: &ParseOptions) -> Report {
    // mail-parser promises not to panic; a bug there must still not lose a report.
    std::panic::catch_unwind(|| parse_inner(raw, options)).unwrap_or_else(|_| {
        let mut report = Report::empty(ReportKind::Unknown);
        report.notes.push("parser panicked; kept for triage".into());
        report
    })
}

/// A header block as (lower-case name, unfolded value) pairs; stops at the first blank line.
pub fn header_fields(bytes: &[u8]) -> Vec<(String, String)> {
    let text = String::from_utf8_lossy(bytes);
    let mut fields: Vec<(String, String)> = Vec::new();
    for line in text.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            if fields.is_empty() {
                continue;
            }
            break;
        }
        if line.starts_with([' ', '\t']) {
            if let Some((_, value)) = fields.last_mut() {
                value.push(' ');
                value.push_str(line.trim());
            }
            continue;
        }
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if !name.is_empty() && !name.contains(' ') {
                fields.push((name.to_ascii_lowercase(), value.trim().to_string()));
            }
        }
    }
    fields
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .filter(|v| !v.is_empty())
}

fn fields_all<'a>(fields: &'a [(String, String)], name: &'a str) -> impl Iterator<Item = &'a str> {
    fields
        .iter()
        .filter(move |(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

static IPV4: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?:^|[^0-9.])((?:\d{1,3}\.){3}\d{1,3})(?:[^0-9.]|$)").expect("static regex")
});
static IPV6: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)(?:^|[^0-9a-f:])([0-9a-f]{0,4}(?::[0-9a-f]{0,4}){2,7})(?:[^0-9a-f:]|$)")
        .expect("static regex")
});
static BRACKET_IP: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[(?:IPv6:)?([0-9A-Fa-f:.]+)\]").expect("static regex"));
static SPAMCOP_SUBJECT: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[SpamCop \(([^)]*)\) id:\s*(\d+)\]").expect("static regex"));
static SPAMCOP_EMAIL_FROM: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?m)^\s*Email from ([0-9A-Fa-f:.]+)\s*/\s*(.+?)\s*$").expect("static regex")
});

/// Addresses a complaint can be about: not loopback, private, link-local or unspecified.
fn reportable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast())
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            !(v6.is_loopback()
                || v6.is_unspecified()
                || (first & 0xffc0) == 0xfe80
                || (first & 0xfe00) == 0xfc00)
        }
    }
}

/// Every reportable address in `text`, in order of appearance, without repeats.
pub fn ips_in_text(text: &str) -> Vec<IpAddr> {
    let mut found: Vec<(usize, IpAddr)> = Vec::new();
    for c in IPV4.captures_iter(text) {
        let m = c.get(1).expect("group 1");
        if let Ok(ip) = m.as_str().parse::<IpAddr>() {
            found.push((m.start(), ip));
        }
    }
    for c in IPV6.captures_iter(text) {
        let m = c.get(1).expect("group 1");
        if (m.as_str().contains("::") || m.as_str().matches(':').count() == 7)
            && let Ok(ip) = m.as_str().parse::<IpAddr>()
        {
            found.push((m.start(), ip));
        }
    }
    found.sort_by_key(|(at, _)| *at);
    let mut out: Vec<IpAddr> = Vec::new();
    for (_, ip) in found {
        if reportable(ip) && !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

fn parse_ip(text: &str) -> Option<IpAddr> {
    let t = text.trim().trim_start_matches('[').trim_end_matches(']');
    let t = t.strip_prefix("IPv6:").unwrap_or(t);
    t.parse().ok()
}

/// The address that handed the message to the first receiver: the first
/// `[address]` in the newest `Received:` header that has a reportable one.
fn received_source(chain: &[String]) -> Option<IpAddr> {
    chain.iter().find_map(|header| {
        let from_part = header.split(" by ").next().unwrap_or(header);
        BRACKET_IP
            .captures_iter(from_part)
            .filter_map(|c| parse_ip(&c[1]))
            .find(|ip| reportable(*ip))
    })
}

fn received_time(chain: &[String], zone: FixedOffset) -> Option<ReportTime> {
    let newest = chain.first()?;
    let date_part = newest.rsplit(';').next()?;
    find_datetime(date_part, zone).map(|(utc, original)| ReportTime {
        utc,
        original,
        source: TimeSource::Received,
    })
}

fn time_from_field(value: &str, zone: FixedOffset, source: TimeSource) -> Option<ReportTime> {
    find_datetime(value, zone).map(|(utc, _)| ReportTime {
        utc,
        original: value.to_string(),
        source,
    })
}

fn is_redacted(value: &str) -> bool {
    let lower = value.to_ascii_lowercase();
    lower.contains("redacted") || lower.contains("xxxx") || lower.starts_with("@") || lower == "*"
}

fn truncate(text: &str, limit: usize) -> &str {
    if text.len() <= limit {
        return text;
    }
    let mut end = limit;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// What was pulled out of the MIME tree before deciding on the format.
#[derive(Default)]
struct Parts {
    feedback_fields: Option<Vec<(String, String)>>,
    enclosed_headers: Option<Vec<(String, String)>>,
    json: Option<serde_json::Value>,
    texts: Vec<String>,
}

fn collect_parts(message: &mail_parser::Message<'_>, parts: &mut Parts, depth: usize) {
    for part in &message.parts {
        let (ctype, subtype) = part
            .content_type()
            .map(|ct| {
                (
                    ct.ctype().to_ascii_lowercase(),
                    ct.subtype().unwrap_or("").to_ascii_lowercase(),
                )
            })
            .unwrap_or_else(|| ("text".into(), "plain".into()));
        match (ctype.as_str(), subtype.as_str(), &part.body) {
            (_, _, PartType::Multipart(_)) => {}
            ("message", "feedback-report", _) => {
                parts
                    .feedback_fields
                    .get_or_insert_with(|| header_fields(part.contents()));
            }
            ("text", "rfc822-headers", _) | ("message", "rfc822-headers", _) => {
                parts
                    .enclosed_headers
                    .get_or_insert_with(|| header_fields(part.contents()));
            }
            (_, _, PartType::Message(inner)) => {
                if parts.enclosed_headers.is_none() {
                    parts.enclosed_headers = Some(header_fields(inner.raw_message()));
                }
                // A forwarded complaint may wrap the report one level down.
                if depth < 3 && parts.feedback_fields.is_none() {
                    let mut nested = Parts::default();
                    collect_parts(inner, &mut nested, depth + 1);
                    if nested.feedback_fields.is_some() {
                        parts.feedback_fields = nested.feedback_fields;
                        parts.json = parts.json.take().or(nested.json);
                    }
                }
            }
            ("application", "json", _) if parts.json.is_none() => {
                parts.json = serde_json::from_slice(part.contents()).ok();
            }
            (_, _, PartType::Text(text)) => {
                parts.texts.push(text.to_string());
            }
            (_, _, PartType::Html(html)) => parts.texts.push(html.to_string()),
            _ => {}
        }
    }
}

fn parse_inner(raw: &[u8], options: &ParseOptions) -> Report {
    let zone = options.default_zone;
    let Some(message) = MessageParser::default().parse(raw) else {
        let mut report = Report::empty(ReportKind::Unknown);
        report.notes.push("not a message: no header found".into());
        return report;
    };
    let top_fields = header_fields(raw);
    let mut parts = Parts::default();
    collect_parts(&message, &mut parts, 0);

    let subject = message.subject().map(str::to_string);
    let reporter = message
        .from()
        .and_then(|from| from.first())
        .and_then(|addr| addr.address())
        .map(str::to_string);

    let mut report = Report::empty(ReportKind::Unknown);
    report.subject = subject.clone();
    report.reporter = reporter;

    if let Some(enclosed) = &parts.enclosed_headers {
        report.original_message_id = field(enclosed, "message-id").map(str::to_string);
        report.received_chain = fields_all(enclosed, "received")
            .map(str::to_string)
            .collect();
        if report.original_mail_from.is_none() {
            report.original_mail_from = field(enclosed, "return-path")
                .map(|v| v.trim_matches(['<', '>']).to_string())
                .filter(|v| !v.is_empty());
        }
        if field(enclosed, "to").is_some_and(is_redacted) {
            report.redacted = true;
        }
    }

    let spamcop = subject.as_deref().and_then(|s| SPAMCOP_SUBJECT.captures(s));
    let legacy_xarf = field(&top_fields, "x-arf").is_some_and(|v| v.eq_ignore_ascii_case("yes"));

    if let Some(fields) = parts.feedback_fields.clone() {
        apply_arf_fields(&mut report, &fields, zone);
        let is_xarf = report
            .feedback_type
            .as_deref()
            .is_some_and(|t| t.eq_ignore_ascii_case("xarf"));
        if let Some(json) = parts.json.as_ref()
            && (json.get("ReportClass").is_some() || is_xarf)
        {
            report.kind = ReportKind::Xarf;
            apply_xarf_json(&mut report, json, zone);
        }
    } else if let Some(json) = parts
        .json
        .as_ref()
        .filter(|j| j.get("ReportClass").is_some())
    {
        report.kind = ReportKind::Xarf;
        apply_xarf_json(&mut report, json, zone);
    } else if legacy_xarf {
        report.kind = ReportKind::XArfLegacy;
        apply_legacy_xarf(&mut report, &parts.texts, zone);
    }

    if let Some(c) = &spamcop {
        report.kind = ReportKind::SpamCop;
        report.category.get_or_insert(Category::Spam);
        report.external_id = Some(c[2].to_string());
        if report.source_ip.is_none() {
            report.source_ip = parse_ip(&c[1]);
        }
        let body = parts.texts.first().map(String::as_str).unwrap_or("");
        let body = if body.is_empty() {
            message
                .body_text(0)
                .map(|t| t.to_string())
                .unwrap_or_default()
        } else {
            body.to_string()
        };
        let body = truncate(&body, options.text_scan_limit);
        if let Some(m) = SPAMCOP_EMAIL_FROM.captures(body) {
            if report.source_ip.is_none() {
                report.source_ip = parse_ip(&m[1]);
            }
            if report.time.is_none() {
                report.time = time_from_field(&m[2], zone, TimeSource::Text);
            }
        }
        // Old SpamCop reports paste the spam's headers into the text itself.
        take_pasted_headers(&mut report, body);
    }

    if report.kind == ReportKind::Unknown {
        // A complaint written by a person: address and time from the text.
        let text = parts.texts.join("\n");
        let text = if text.trim().is_empty() {
            message
                .body_text(0)
                .map(|t| t.to_string())
                .unwrap_or_default()
        } else {
            text
        };
        let text = truncate(&text, options.text_scan_limit);
        take_pasted_headers(&mut report, text);
        let text_ips = ips_in_text(text);
        let received_ip = received_source(&report.received_chain);
        let chosen = match (text_ips.as_slice(), received_ip) {
            ([only], _) => Some(*only),
            (_, Some(ip)) => Some(ip),
            ([first, ..], None) => {
                report
                    .notes
                    .push("several addresses in the text; took the first".into());
                Some(*first)
            }
            ([], None) => None,
        };
        if let Some(ip) = chosen {
            report.kind = ReportKind::PlainText;
            report.source_ip = Some(ip);
            report.other_ips = text_ips.into_iter().filter(|o| *o != ip).collect();
            report.category = Some(category_from_text(text, subject.as_deref()));
            if let Some((utc, original)) = find_datetime(text, zone) {
                report.time = Some(ReportTime {
                    utc,
                    original,
                    source: TimeSource::Text,
                });
            }
        } else {
            report.notes.push("no address found in the text".into());
        }
    }

    // Fallbacks every format shares: the enclosed headers.
    if report.source_ip.is_none() {
        report.source_ip = received_source(&report.received_chain);
        if report.source_ip.is_some() {
            report
                .notes
                .push("source address from the Received: chain".into());
        }
    }
    if report.time.is_none() {
        report.time = received_time(&report.received_chain, zone).or_else(|| {
            let enclosed = parts.enclosed_headers.as_ref()?;
            time_from_field(field(enclosed, "date")?, zone, TimeSource::OriginalDate)
        });
    }
    if report.kind == ReportKind::Unknown && report.source_ip.is_some() {
        report
            .notes
            .push("format not recognised; address from enclosed headers".into());
    }
    report
}

/// Headers pasted into a text (from its first `Received:` line on), when the
/// report enclosed none as a MIME part.
fn take_pasted_headers(report: &mut Report, text: &str) {
    if !report.received_chain.is_empty() {
        return;
    }
    let Some(start) = text
        .find("\nReceived:")
        .map(|i| i + 1)
        .or_else(|| text.starts_with("Received:").then_some(0))
    else {
        return;
    };
    let pasted = header_fields(&text.as_bytes()[start..]);
    report.received_chain = fields_all(&pasted, "received")
        .map(str::to_string)
        .collect();
    if report.original_message_id.is_none() {
        report.original_message_id = field(&pasted, "message-id").map(str::to_string);
    }
}

fn apply_arf_fields(report: &mut Report, fields: &[(String, String)], zone: FixedOffset) {
    report.kind = ReportKind::Arf;
    report.feedback_type = field(fields, "feedback-type").map(str::to_string);
    report.user_agent = field(fields, "user-agent").map(str::to_string);
    report.category = match report.feedback_type.as_deref().map(str::to_ascii_lowercase) {
        Some(t) if t == "not-spam" => {
            report
                .notes
                .push("feedback type not-spam: not a complaint".into());
            None
        }
        Some(t) if t == "fraud" => Some(Category::Illegal),
        Some(_) => Some(Category::Spam),
        None => {
            // Real feeds omit it; a feedback report is a spam complaint by default.
            report.notes.push("no Feedback-Type; taken as abuse".into());
            Some(Category::Spam)
        }
    };
    if let Some(value) = field(fields, "source-ip") {
        match parse_ip(value) {
            Some(ip) => report.source_ip = Some(ip),
            None => report.notes.push(format!("unreadable Source-IP {value:?}")),
        }
    }
    report.source_port = field(fields, "source-port").and_then(|p| p.trim().parse().ok());
    let date = field(fields, "arrival-date").or_else(|| field(fields, "received-date"));
    if let Some(value) = date {
        report.time = time_from_field(value, zone, TimeSource::ReportField);
        if report.time.is_none() {
            report
                .notes
                .push(format!("unreadable Arrival-Date {value:?}"));
        }
    }
    report.reported_domains = fields_all(fields, "reported-domain")
        .map(str::to_string)
        .collect();
    if let Some(from) = field(fields, "original-mail-from") {
        report.original_mail_from = Some(from.trim_matches(['<', '>']).to_string());
    }
    report.original_rcpt_to = fields_all(fields, "original-rcpt-to")
        .map(|v| v.trim_matches(['<', '>']).to_string())
        .collect();
    if report.original_rcpt_to.iter().any(|r| is_redacted(r)) {
        report.redacted = true;
    }
}

fn json_str<'a>(json: &'a serde_json::Value, key: &str) -> Option<&'a str> {
    json.get(key).and_then(|v| v.as_str())
}

fn apply_xarf_json(report: &mut Report, json: &serde_json::Value, zone: FixedOffset) {
    let class = json_str(json, "ReportClass").unwrap_or("");
    let rtype = json_str(json, "ReportType").unwrap_or("");
    report.feedback_type = Some(if rtype.is_empty() { class } else { rtype }.to_string());
    report.category = Some(category_from_xarf(class, rtype));
    if let Some(ip) = json_str(json, "SourceIp").and_then(parse_ip) {
        report.source_ip = Some(ip);
    }
    if let Some(port) = json.get("SourcePort").and_then(|p| {
        p.as_u64()
            .or_else(|| p.as_str().and_then(|s| s.parse().ok()))
    }) {
        report.source_port = u16::try_from(port).ok();
    }
    if let Some(date) = json_str(json, "Date") {
        report.time = time_from_field(date, zone, TimeSource::ReportField).or(report.time.take());
    }
    if let Some(id) = json_str(json, "ReportId").or_else(|| json_str(json, "ReportID")) {
        report.external_id = Some(id.to_string());
    }
    if let Some(domain) = json_str(json, "Domain") {
        report.reported_domains.push(domain.to_string());
    }
}

fn apply_legacy_xarf(report: &mut Report, texts: &[String], zone: FixedOffset) {
    // The report is the second part: `Key: value` lines of a YAML subset.
    let Some(fields) = texts
        .iter()
        .map(|t| header_fields(t.as_bytes()))
        .find(|f| field(f, "source").is_some() || field(f, "report-type").is_some())
    else {
        report.notes.push("X-ARF without a report part".into());
        return;
    };
    let unquote = |v: &str| v.trim().trim_matches(['"', '\'']).to_string();
    let rtype = field(&fields, "report-type")
        .map(unquote)
        .unwrap_or_default();
    let class = field(&fields, "category").map(unquote).unwrap_or_default();
    report.feedback_type = Some(rtype.clone()).filter(|t| !t.is_empty());
    report.category = Some(category_from_xarf(&class, &rtype));
    report.source_ip = field(&fields, "source")
        .map(unquote)
        .as_deref()
        .and_then(parse_ip);
    report.source_port = field(&fields, "port")
        .or_else(|| field(&fields, "source-port"))
        .and_then(|p| unquote(p).parse().ok());
    if let Some(date) = field(&fields, "date") {
        report.time = time_from_field(&unquote(date), zone, TimeSource::ReportField);
    }
    report.external_id = field(&fields, "report-id").map(unquote);
    report.user_agent = field(&fields, "user-agent").map(unquote);
}

fn category_from_xarf(class: &str, rtype: &str) -> Category {
    let class = class.to_ascii_lowercase();
    let rtype = rtype.to_ascii_lowercase();
    if class.contains("copyright") || rtype.contains("copyright") {
        return Category::Illegal;
    }
    if class.contains("fraud") || class.contains("content") || rtype.contains("phish") {
        return Category::Illegal;
    }
    if rtype.contains("spam") || class.contains("spam") {
        return Category::Spam;
    }
    if [
        "ddos", "login", "attack", "hack", "scan", "brute", "harvest", "defac",
    ]
    .iter()
    .any(|w| rtype.contains(w) || class.contains(w))
    {
        return Category::Vandalism;
    }
    Category::Spam
}

/// A person's complaint: words decide the category, spam when none do.
fn category_from_text(text: &str, subject: Option<&str>) -> Category {
    let lower = format!("{} {}", subject.unwrap_or(""), text).to_lowercase();
    let any = |words: &[&str]| words.iter().any(|w| lower.contains(w));
    if any(&[
        "copyright",
        "dmca",
        "infring",
        "phishing",
        "著作権",
        "詐欺",
        "違法",
    ]) {
        Category::Illegal
    } else if any(&[
        "ddos",
        "brute force",
        "vandal",
        "troll",
        "defac",
        "荒らし",
        "攻撃",
    ]) {
        Category::Vandalism
    } else if any(&["overload", "mass mail", "flood", "大量送信", "過負荷"]) {
        Category::Overload
    } else {
        Category::Spam
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_in_text() {
        let cases: &[(&str, &[&str])] = &[
            ("from 192.0.2.1 at noon", &["192.0.2.1"]),
            ("10.0.0.1 and 203.0.113.5, 203.0.113.5", &["203.0.113.5"]),
            ("v6 2001:db8::25 here", &["2001:db8::25"]),
            ("version 1.2.3.4.5 not an address", &[]),
            ("999.1.1.1", &[]),
            ("time 10:00:00 is not v6", &[]),
        ];
        for (text, expected) in cases {
            let got: Vec<String> = ips_in_text(text).iter().map(|i| i.to_string()).collect();
            assert_eq!(got, *expected, "input {text:?}");
        }
    }

    #[test]
    fn header_fields_unfold_and_stop_at_blank_line() {
        let fields = header_fields(b"A: 1\r\nB: two\r\n  lines\nC:3\n\nD: body\n");
        assert_eq!(
            fields,
            vec![
                ("a".into(), "1".into()),
                ("b".into(), "two lines".into()),
                ("c".into(), "3".into())
            ]
        );
    }
}

/// Abuse spamgate sees itself; each becomes a [`ReportKind::Internal`] report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", tag = "signal")]
pub enum InternalSignal {
    /// An account tripped its submission limits `trips` times in the period.
    SubmissionLimitTrips { account: String, trips: u32 },
    /// A suspended account kept trying to send.
    RefusedWhileSuspended { account: String, attempts: u32 },
    /// Port-25 attempts blocked by OP25B above the operator's threshold.
    Op25bBlocked { address: IpAddr, attempts: u32 },
}

impl InternalSignal {
    /// The submission account it names, if any (then the customer is found by account).
    pub fn account(&self) -> Option<&str> {
        match self {
            InternalSignal::SubmissionLimitTrips { account, .. }
            | InternalSignal::RefusedWhileSuspended { account, .. } => Some(account),
            InternalSignal::Op25bBlocked { .. } => None,
        }
    }
}

/// The report for an internal signal observed at `at`.
pub fn internal_report(signal: &InternalSignal, at: UnixTime) -> Report {
    let mut report = Report::empty(ReportKind::Internal);
    let (category, what) = match signal {
        InternalSignal::SubmissionLimitTrips { account, trips } => (
            Category::Overload,
            format!("{account}: submission limits tripped {trips} times"),
        ),
        InternalSignal::RefusedWhileSuspended { account, attempts } => (
            Category::Spam,
            format!("{account}: {attempts} sends refused while suspended"),
        ),
        InternalSignal::Op25bBlocked { address, attempts } => {
            report.source_ip = Some(*address);
            (
                Category::Spam,
                format!("{address}: {attempts} port-25 connections blocked"),
            )
        }
    };
    report.category = Some(category);
    report.feedback_type = Some(what.clone());
    report.subject = Some(what);
    report.user_agent = Some("spamgate".into());
    report.time = Some(ReportTime {
        utc: at,
        original: crate::time::rfc3339(at, FixedOffset::UTC),
        source: TimeSource::ReportField,
    });
    report
}
