//! Address history: who held which address (and port range) when.
//!
//! Every source (RADIUS accounting, Kea DHCP leases, static assignments,
//! CGNAT/MAP-E port blocks) becomes [`Interval`]s keyed so that importing the
//! same data twice changes nothing. The parsers are pure and incremental: they
//! take bytes and an offset and say how far they read.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::time::{FixedOffset, UnixTime, find_datetime};

/// How a record names its holder before it is mapped to a customer.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case", tag = "kind", content = "value")]
pub enum Identity {
    /// The customer id itself (static and CGNAT data name customers directly).
    Customer(String),
    /// RADIUS `User-Name`.
    RadiusUser(String),
    /// DHCP hardware address, lower-case `aa:bb:cc:dd:ee:ff`.
    HwAddr(String),
    /// DHCP client identifier, lower-case hex with colons.
    ClientId(String),
}

impl Identity {
    pub fn kind(&self) -> &'static str {
        match self {
            Identity::Customer(_) => "customer",
            Identity::RadiusUser(_) => "radius-user",
            Identity::HwAddr(_) => "hwaddr",
            Identity::ClientId(_) => "client-id",
        }
    }

    pub fn value(&self) -> &str {
        match self {
            Identity::Customer(v)
            | Identity::RadiusUser(v)
            | Identity::HwAddr(v)
            | Identity::ClientId(v) => v,
        }
    }

    pub fn from_parts(kind: &str, value: &str) -> Option<Identity> {
        let value = value.to_string();
        Some(match kind {
            "customer" => Identity::Customer(value),
            "radius-user" => Identity::RadiusUser(value),
            "hwaddr" => Identity::HwAddr(value.to_ascii_lowercase()),
            "client-id" => Identity::ClientId(value.to_ascii_lowercase()),
            _ => return None,
        })
    }
}

/// Where an interval came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Source {
    Radius,
    Kea,
    Static,
    Cgnat,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Radius => "radius",
            Source::Kea => "kea",
            Source::Static => "static",
            Source::Cgnat => "cgnat",
        }
    }

    pub fn parse(text: &str) -> Option<Source> {
        [Source::Radius, Source::Kea, Source::Static, Source::Cgnat]
            .into_iter()
            .find(|s| s.as_str() == text)
    }
}

/// One holding of an address or prefix (and port range) over time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Interval {
    pub source: Source,
    /// Idempotency key: the same key imported again updates, never duplicates.
    pub key: String,
    pub identity: Identity,
    /// The address (`/32`, `/128`) or the prefix held.
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub network: IpNet,
    /// Inclusive port range for CGNAT / MAP-E; `None` means the whole address.
    pub ports: Option<(u16, u16)>,
    pub start: UnixTime,
    /// Known end (Stop, lease expiry, end of an assignment); `None` while open.
    pub end: Option<UnixTime>,
    /// Last sign of life of an open session (Start or Interim-Update); an open
    /// interval without it (a static assignment) has no end.
    pub last_seen: Option<UnixTime>,
    /// The access server, so an Accounting-On/Off can close its sessions.
    pub nas: Option<String>,
}

impl Interval {
    /// Where this interval is taken to end when nothing later cuts it short.
    pub fn effective_end(&self, lost_stop_grace: i64) -> Option<UnixTime> {
        match (self.end, self.last_seen) {
            (Some(end), _) => Some(end),
            (None, Some(seen)) => Some(seen.saturating_add(lost_stop_grace)),
            (None, None) => None,
        }
    }

    /// The same record seen again (a later Interim, a Stop): widen, never narrow.
    pub fn merge(&mut self, newer: &Interval) {
        self.start = self.start.min(newer.start);
        self.end = match (self.end, newer.end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        self.last_seen = match (self.last_seen, newer.last_seen) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
        if self.nas.is_none() {
            self.nas.clone_from(&newer.nas);
        }
    }

    /// A 63-bit hash of the key, for a compact unique index.
    pub fn key_hash(&self) -> i64 {
        key_hash(&self.key)
    }
}

pub fn key_hash(key: &str) -> i64 {
    let digest = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    (u64::from_be_bytes(first) >> 1) as i64
}

/// What an importer produced from a chunk of input.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImportBatch {
    pub intervals: Vec<Interval>,
    /// NAS restarts (Accounting-On/Off): open sessions of that NAS end there.
    pub nas_resets: Vec<(String, UnixTime)>,
    /// Lines or records that could not be read, with their byte offset.
    pub rejected: Vec<(u64, String)>,
    /// Offset of the first byte not consumed (an incomplete last record stays for next time).
    pub next_offset: u64,
}

// ---------------------------------------------------------------- RADIUS

/// Parses FreeRADIUS `detail` records from `bytes`, which start at file
/// offset `base_offset`. Only complete records (ended by a blank line) are
/// consumed, so a file being written can be tailed: call again from
/// `next_offset` when it grows. `zone` is the zone of the date lines.
pub fn parse_radius_detail(bytes: &[u8], base_offset: u64, zone: FixedOffset) -> ImportBatch {
    let mut batch = ImportBatch {
        next_offset: base_offset,
        ..ImportBatch::default()
    };
    let mut pos = 0usize;
    while pos < bytes.len() {
        // A record ends at the first empty line after some content.
        let rest = &bytes[pos..];
        let Some(end) = find_record_end(rest) else {
            break;
        };
        let record = &rest[..end.content_len];
        let offset = base_offset + pos as u64;
        if !record.iter().all(u8::is_ascii_whitespace) {
            match radius_record(record, zone) {
                Ok(RadiusOutcome::Intervals(list)) => batch.intervals.extend(list),
                Ok(RadiusOutcome::NasReset(nas, at)) => batch.nas_resets.push((nas, at)),
                Ok(RadiusOutcome::Ignored) => {}
                Err(why) => batch.rejected.push((offset, why)),
            }
        }
        pos += end.consumed;
        batch.next_offset = base_offset + pos as u64;
    }
    batch
}

struct RecordEnd {
    content_len: usize,
    consumed: usize,
}

fn find_record_end(bytes: &[u8]) -> Option<RecordEnd> {
    let mut line_start = 0usize;
    let mut seen_content = false;
    while line_start < bytes.len() {
        let line_end = bytes[line_start..]
            .iter()
            .position(|b| *b == b'\n')
            .map(|i| line_start + i)?;
        let line = &bytes[line_start..line_end];
        let blank = line
            .iter()
            .all(|b| *b == b'\r' || *b == b' ' || *b == b'\t');
        if blank && seen_content {
            return Some(RecordEnd {
                content_len: line_start,
                consumed: line_end + 1,
            });
        }
        if !blank {
            seen_content = true;
        }
        line_start = line_end + 1;
    }
    None
}

enum RadiusOutcome {
    Intervals(Vec<Interval>),
    NasReset(String, UnixTime),
    Ignored,
}

fn unquote(value: &str) -> &str {
    let v = value.trim();
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

fn radius_record(record: &[u8], zone: FixedOffset) -> Result<RadiusOutcome, String> {
    let text = String::from_utf8_lossy(record);
    let mut lines = text.lines();
    let date_line = lines.next().unwrap_or("").trim();
    let mut attrs: Vec<(&str, &str)> = Vec::new();
    for line in lines {
        if let Some((name, value)) = line.split_once('=') {
            attrs.push((name.trim(), unquote(value)));
        }
    }
    let get = |name: &str| {
        attrs
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
            .filter(|v| !v.is_empty())
    };
    let event_at = get("Event-Timestamp")
        .and_then(|v| parse_radius_time(v, zone))
        .or_else(|| get("Timestamp").and_then(|v| v.parse().ok()))
        .or_else(|| find_datetime(date_line, zone).map(|(at, _)| at))
        .ok_or("no time in record")?;
    let status = get("Acct-Status-Type").ok_or("no Acct-Status-Type")?;
    let nas = get("NAS-IP-Address")
        .or_else(|| get("NAS-IPv6-Address"))
        .or_else(|| get("NAS-Identifier"))
        .map(str::to_string);
    match status.to_ascii_lowercase().as_str() {
        "accounting-on" | "accounting-off" | "7" | "8" => {
            let nas = nas.ok_or("Accounting-On/Off without a NAS")?;
            return Ok(RadiusOutcome::NasReset(nas, event_at));
        }
        "start" | "interim-update" | "alive" | "stop" | "1" | "2" | "3" => {}
        _ => return Ok(RadiusOutcome::Ignored),
    }
    let status = status.to_ascii_lowercase();
    let is_start = status == "start" || status == "1";
    let is_stop = status == "stop" || status == "2";
    let session_id = get("Acct-Unique-Session-Id")
        .map(str::to_string)
        .or_else(|| {
            get("Acct-Session-Id").map(|id| format!("{}/{id}", nas.as_deref().unwrap_or("-")))
        })
        .ok_or("no Acct-Session-Id")?;
    let user = get("User-Name").ok_or("no User-Name")?.to_string();
    let session_time: i64 = get("Acct-Session-Time")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let start = if is_start {
        event_at
    } else {
        event_at.saturating_sub(session_time.max(0))
    };
    let mut networks: Vec<(&str, IpNet)> = Vec::new();
    if let Some(ip) = get("Framed-IP-Address").and_then(|v| v.parse::<Ipv4Addr>().ok()) {
        networks.push(("v4", IpNet::from(IpAddr::V4(ip))));
    }
    for (tag, name) in [
        ("v6framed", "Framed-IPv6-Prefix"),
        ("v6delegated", "Delegated-IPv6-Prefix"),
    ] {
        if let Some(net) = get(name).and_then(|v| v.parse::<IpNet>().ok()) {
            networks.push((tag, net.trunc()));
        }
    }
    if let Some(ip) = get("Framed-IPv6-Address").and_then(|v| v.parse::<Ipv6Addr>().ok()) {
        networks.push(("v6addr", IpNet::from(IpAddr::V6(ip))));
    }
    if networks.is_empty() {
        return Ok(RadiusOutcome::Ignored);
    }
    let intervals = networks
        .into_iter()
        .map(|(tag, network)| Interval {
            source: Source::Radius,
            key: format!("radius:{session_id}:{tag}"),
            identity: Identity::RadiusUser(user.clone()),
            network,
            ports: None,
            start,
            end: is_stop.then_some(event_at),
            last_seen: Some(event_at),
            nas: nas.clone(),
        })
        .collect();
    Ok(RadiusOutcome::Intervals(intervals))
}

fn parse_radius_time(value: &str, zone: FixedOffset) -> Option<UnixTime> {
    if let Ok(seconds) = value.trim().parse::<i64>() {
        return Some(seconds);
    }
    find_datetime(value, zone).map(|(at, _)| at)
}

// ---------------------------------------------------------------- Kea

/// Parses Kea's memfile lease CSV (`address,hwaddr,client_id,valid_lifetime,
/// expire,subnet_id,...,state,...`; the v6 file has `duid` and `prefix_len`).
/// Holders are named by hardware address, or by client id / DUID when there is
/// none; a mapping in the store turns them into customers. A lease renewed
/// keeps its key (address + holder + start), so re-reading the file is idempotent.
pub fn parse_kea_leases(bytes: &[u8], base_offset: u64) -> ImportBatch {
    let mut batch = ImportBatch {
        next_offset: base_offset,
        ..ImportBatch::default()
    };
    let mut header: Option<Vec<String>> = None;
    let mut pos = 0usize;
    while let Some(nl) = bytes[pos..].iter().position(|b| *b == b'\n') {
        let line_bytes = &bytes[pos..pos + nl];
        let offset = base_offset + pos as u64;
        pos += nl + 1;
        batch.next_offset = base_offset + pos as u64;
        let line = String::from_utf8_lossy(line_bytes);
        let line = line.trim_end_matches('\r');
        if line.is_empty() {
            continue;
        }
        let cells: Vec<&str> = line.split(',').collect();
        if cells.first() == Some(&"address") {
            header = Some(cells.iter().map(|c| c.to_string()).collect());
            continue;
        }
        let columns = header.get_or_insert_with(|| {
            // Resumed mid-file: the v4 layout is the common one.
            "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context"
                .split(',')
                .map(str::to_string)
                .collect()
        });
        match kea_line(columns, &cells) {
            Ok(Some(interval)) => batch.intervals.push(interval),
            Ok(None) => {}
            Err(why) => batch.rejected.push((offset, why)),
        }
    }
    batch
}

fn kea_line(columns: &[String], cells: &[&str]) -> Result<Option<Interval>, String> {
    let get = |name: &str| {
        columns
            .iter()
            .position(|c| c == name)
            .and_then(|i| cells.get(i))
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    };
    let address: IpAddr = get("address")
        .ok_or("no address")?
        .parse()
        .map_err(|_| "unreadable address".to_string())?;
    let lifetime: i64 = get("valid_lifetime")
        .and_then(|v| v.parse().ok())
        .ok_or("no valid_lifetime")?;
    let expire: i64 = get("expire")
        .and_then(|v| v.parse().ok())
        .ok_or("no expire")?;
    // state 0 = default (leased); 1 declined, 2 expired-reclaimed: no holder.
    if get("state").is_some_and(|s| s != "0") {
        return Ok(None);
    }
    let identity = if let Some(hw) = get("hwaddr") {
        Identity::HwAddr(hw.to_ascii_lowercase())
    } else if let Some(id) = get("client_id").or_else(|| get("duid")) {
        Identity::ClientId(id.to_ascii_lowercase())
    } else {
        return Err("lease without hwaddr or client id".into());
    };
    let prefix_len: u8 = get("prefix_len")
        .and_then(|v| v.parse().ok())
        .unwrap_or(if address.is_ipv4() { 32 } else { 128 });
    let network = IpNet::new(address, prefix_len)
        .map_err(|_| "bad prefix_len".to_string())?
        .trunc();
    let start = expire.saturating_sub(lifetime);
    Ok(Some(Interval {
        source: Source::Kea,
        // A renewal moves `expire` on: the key is the lease, not the renewal.
        key: format!("kea:{network}:{}:{}", identity.value(), start / 86_400),
        identity,
        network,
        ports: None,
        start,
        end: Some(expire),
        last_seen: None,
        nas: None,
    }))
}

// ---------------------------------------------------------------- static and CGNAT

/// Static assignments, one a line: `customer,network,start[,end]` with RFC 3339
/// times; `#` starts a comment. A block may be reassigned: give it an end.
pub fn parse_static(text: &str) -> ImportBatch {
    parse_csv_lines(text, |cells| {
        let [customer, network, start, rest @ ..] = cells else {
            return Err("expected customer,network,start[,end]".into());
        };
        let network: IpNet = network
            .parse()
            .or_else(|_| network.parse::<IpAddr>().map(IpNet::from))
            .map_err(|_| format!("bad network {network:?}"))?;
        let network = network.trunc();
        let start = parse_time_cell(start)?;
        let end = rest
            .first()
            .filter(|e| !e.is_empty())
            .map(|e| parse_time_cell(e))
            .transpose()?;
        Ok(Interval {
            source: Source::Static,
            key: format!("static:{customer}:{network}:{start}"),
            identity: Identity::Customer(customer.to_string()),
            network,
            ports: None,
            start,
            end,
            last_seen: None,
            nas: None,
        })
    })
}

/// CGNAT / MAP-E port blocks, one a line:
/// `public_address,port_first,port_last,customer,start[,end]`.
pub fn parse_cgnat(text: &str) -> ImportBatch {
    parse_csv_lines(text, |cells| {
        let [address, first, last, customer, start, rest @ ..] = cells else {
            return Err("expected address,port_first,port_last,customer,start[,end]".into());
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| format!("bad address {address:?}"))?;
        let first: u16 = first.parse().map_err(|_| "bad first port".to_string())?;
        let last: u16 = last.parse().map_err(|_| "bad last port".to_string())?;
        if first > last {
            return Err("port range runs backwards".into());
        }
        let start = parse_time_cell(start)?;
        let end = rest
            .first()
            .filter(|e| !e.is_empty())
            .map(|e| parse_time_cell(e))
            .transpose()?;
        Ok(Interval {
            source: Source::Cgnat,
            key: format!("cgnat:{address}:{first}-{last}:{start}"),
            identity: Identity::Customer(customer.to_string()),
            network: IpNet::from(address),
            ports: Some((first, last)),
            start,
            end,
            last_seen: None,
            nas: None,
        })
    })
}

fn parse_time_cell(cell: &str) -> Result<UnixTime, String> {
    if let Ok(seconds) = cell.parse::<i64>() {
        return Ok(seconds);
    }
    crate::time::parse_rfc3339(cell).ok_or_else(|| format!("bad time {cell:?}"))
}

fn parse_csv_lines(text: &str, line: impl Fn(&[&str]) -> Result<Interval, String>) -> ImportBatch {
    let mut batch = ImportBatch::default();
    let mut offset = 0u64;
    for raw in text.split_inclusive('\n') {
        let this = offset;
        offset += raw.len() as u64;
        let content = raw.split('#').next().unwrap_or("").trim();
        if content.is_empty() {
            continue;
        }
        let cells: Vec<&str> = content.split(',').map(str::trim).collect();
        match line(&cells) {
            Ok(interval) => batch.intervals.push(interval),
            Err(why) => batch.rejected.push((this, why)),
        }
    }
    batch.next_offset = offset;
    batch
}

/// Applies NAS restarts: every open session of that NAS begun before the
/// restart ended at it (its Stop was never sent).
pub fn apply_nas_resets(intervals: &mut [Interval], resets: &[(String, UnixTime)]) {
    for (nas, at) in resets {
        for interval in intervals.iter_mut() {
            if interval.end.is_none()
                && interval.nas.as_deref() == Some(nas.as_str())
                && interval.start < *at
            {
                interval.end = Some(*at);
            }
        }
    }
}

/// Folds a batch by key (Start + Interims + Stop of one session → one interval),
/// so a store receives one upsert per session.
pub fn merge_by_key(intervals: Vec<Interval>) -> Vec<Interval> {
    let mut out: Vec<Interval> = Vec::with_capacity(intervals.len());
    let mut index: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for interval in intervals {
        match index.get(&interval.key) {
            Some(&i) => out[i].merge(&interval),
            None => {
                index.insert(interval.key.clone(), out.len());
                out.push(interval);
            }
        }
    }
    out
}
