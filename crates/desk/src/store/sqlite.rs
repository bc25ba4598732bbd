//! The embedded SQLite desk store: one file, WAL, `synchronous=FULL` so an
//! accepted report survives a crash, and a busy timeout so several processes
//! (parallel `abuse ingest` runs) share the file.
//!
//! Address history is laid out for (address, time) lookups at scale: every
//! address or prefix is 16 bytes (IPv4 mapped into `::ffff:0:0/96`), and the
//! index `(net, plen, t_start)` answers "latest starts ≤ t" for each prefix
//! length in use with one seek (see PERFORMANCE.md).

use std::net::{IpAddr, Ipv6Addr};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use ipnet::IpNet;
use rusqlite::{Connection, OptionalExtension, params};

use super::{
    Delivery, DeliveryKind, DeliveryState, DeskError, DeskStore, ImportSummary, PurgeCutoffs,
    PurgeSummary, RawId, RawPut, RawReport, ReportId, ReportOutcome, ReportState, Result,
    RetryPolicy, StoredReport, sha256_hex,
};
use crate::case::{
    Case, CaseId, CaseState, Customer, CustomerStatus, Fold, FoldPolicy, Language, fold,
};
use crate::history::{Identity, ImportBatch, Interval, Source};
use crate::ladder::{Action, AuditRecord, Claim, Ladder, Transition};
use crate::report::{Category, Report};
use crate::time::UnixTime;

const SCHEMA_VERSION: i64 = 1;

/// Page cache per connection, in MiB.
const CACHE_MIB: i64 = 256;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS raw_reports (
    id INTEGER PRIMARY KEY,
    sha256 TEXT NOT NULL UNIQUE,
    bytes BLOB NOT NULL,
    first_seen INTEGER NOT NULL,
    last_seen INTEGER NOT NULL,
    copies INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE IF NOT EXISTS reports (
    id INTEGER PRIMARY KEY,
    raw_id INTEGER NOT NULL UNIQUE REFERENCES raw_reports(id),
    received_at INTEGER NOT NULL,
    state TEXT NOT NULL,
    customer TEXT,
    case_id INTEGER,
    report TEXT NOT NULL,
    attribution TEXT
);
CREATE INDEX IF NOT EXISTS reports_state ON reports(state, id);
CREATE INDEX IF NOT EXISTS reports_case ON reports(case_id) WHERE case_id IS NOT NULL;
CREATE TABLE IF NOT EXISTS customers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    contact TEXT NOT NULL,
    language TEXT NOT NULL,
    plan TEXT NOT NULL,
    status TEXT NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS accounts (
    account TEXT PRIMARY KEY,
    customer TEXT NOT NULL REFERENCES customers(id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS accounts_customer ON accounts(customer);
CREATE TABLE IF NOT EXISTS identities (
    kind TEXT NOT NULL,
    value TEXT NOT NULL,
    customer TEXT NOT NULL REFERENCES customers(id),
    PRIMARY KEY (kind, value)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS intervals (
    id INTEGER PRIMARY KEY,
    key_hash INTEGER NOT NULL UNIQUE,
    key TEXT NOT NULL,
    source TEXT NOT NULL,
    identity_kind TEXT NOT NULL,
    identity TEXT NOT NULL,
    net BLOB NOT NULL,
    plen INTEGER NOT NULL,
    port_lo INTEGER,
    port_hi INTEGER,
    t_start INTEGER NOT NULL,
    t_end INTEGER,
    t_seen INTEGER,
    nas TEXT
);
CREATE INDEX IF NOT EXISTS intervals_lookup ON intervals(net, plen, t_start);
CREATE INDEX IF NOT EXISTS intervals_open_by_nas ON intervals(nas) WHERE t_end IS NULL;
CREATE TABLE IF NOT EXISTS prefix_lengths (plen INTEGER PRIMARY KEY);
CREATE TABLE IF NOT EXISTS import_offsets (source TEXT PRIMARY KEY, offset INTEGER NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS cases (
    id INTEGER PRIMARY KEY,
    customer TEXT NOT NULL,
    category TEXT NOT NULL,
    state TEXT NOT NULL,
    last_report_at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS cases_customer ON cases(customer, last_report_at);
CREATE INDEX IF NOT EXISTS cases_state ON cases(state, id);
CREATE TABLE IF NOT EXISTS ladders (customer TEXT PRIMARY KEY, step TEXT NOT NULL, body TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    customer TEXT NOT NULL,
    at INTEGER NOT NULL,
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_customer ON audit(customer, id);
CREATE TABLE IF NOT EXISTS claims (
    id INTEGER PRIMARY KEY,
    customer TEXT NOT NULL,
    audit_id INTEGER NOT NULL REFERENCES audit(id),
    body TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS claims_customer ON claims(customer);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    customer TEXT NOT NULL,
    payload TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt INTEGER NOT NULL,
    last_error TEXT,
    created_at INTEGER NOT NULL,
    done_at INTEGER
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries(state, next_attempt);
";

/// The SQLite [`DeskStore`]. Cheap to open; open one per process or thread.
pub struct SqliteDeskStore {
    conn: Mutex<Connection>,
}

/// 16-byte form of an address; IPv4 mapped so one index serves both families.
fn addr_bytes(address: IpAddr) -> [u8; 16] {
    match address {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

/// Prefix length in the 128-bit space.
fn mapped_plen(network: &IpNet) -> u8 {
    match network {
        IpNet::V4(n) => n.prefix_len() + 96,
        IpNet::V6(n) => n.prefix_len(),
    }
}

fn mask(bytes: [u8; 16], plen: u8) -> [u8; 16] {
    let value = u128::from_be_bytes(bytes);
    let masked = if plen == 0 {
        0
    } else {
        value & (u128::MAX << (128 - plen as u32))
    };
    masked.to_be_bytes()
}

fn network_from(bytes: &[u8], plen: u8) -> Result<IpNet> {
    let octets: [u8; 16] = bytes
        .try_into()
        .map_err(|_| DeskError::Backend("stored network is not 16 bytes".into()))?;
    let v6 = Ipv6Addr::from(octets);
    let net = match v6.to_ipv4_mapped() {
        Some(v4) if plen >= 96 => IpNet::new(IpAddr::V4(v4), plen - 96),
        _ => IpNet::new(IpAddr::V6(v6), plen),
    };
    net.map_err(|e| DeskError::Backend(format!("stored prefix: {e}")))
}

fn bad(what: &str, value: &str) -> DeskError {
    DeskError::Backend(format!("stored {what} unreadable: {value:?}"))
}

impl SqliteDeskStore {
    /// Opens (creating if needed) the store at `path`.
    pub fn open(path: &Path) -> Result<SqliteDeskStore> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        // An accepted report must survive power loss before ingest exits 0.
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // The history indexes take random inserts; SQLite's default 2 MiB page
        // cache makes every one a read from the OS (PERFORMANCE.md).
        conn.pragma_update(None, "cache_size", -(CACHE_MIB * 1024))?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version > SCHEMA_VERSION {
            return Err(DeskError::Invalid(format!(
                "desk store schema {version} is newer than this program ({SCHEMA_VERSION})"
            )));
        }
        if version < SCHEMA_VERSION {
            // Several processes may open a new file at once: one creates, the others wait.
            conn.execute_batch(&format!(
                "BEGIN IMMEDIATE; {SCHEMA} PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"
            ))?;
        }
        Ok(SqliteDeskStore {
            conn: Mutex::new(conn),
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Connection) -> Result<T>) -> Result<T> {
        let mut conn = self
            .conn
            .lock()
            .map_err(|_| DeskError::Backend("store lock poisoned".into()))?;
        f(&mut conn)
    }
}

/// `(id, body)` rows whose body is JSON, read back as `T`.
fn json_rows<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    param: &str,
) -> Result<Vec<(i64, T)>> {
    let rows = conn
        .prepare_cached(sql)?
        .query_map([param], |r| <(i64, String)>::try_from(r))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.into_iter()
        .map(|(id, body)| Ok((id, serde_json::from_str(&body)?)))
        .collect()
}

/// `NotFound` unless `customer` is in the store.
fn require_customer(conn: &Connection, customer: &str) -> Result<()> {
    let known = conn
        .prepare_cached("SELECT 1 FROM customers WHERE id = ?1")?
        .exists([customer])?;
    if known {
        Ok(())
    } else {
        Err(DeskError::NotFound {
            kind: "customer",
            id: customer.into(),
        })
    }
}

fn report_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<ReportRow> {
    // rusqlite reads a tuple column by column.
    ReportRow::try_from(row)
}

type ReportRow = (
    i64,
    i64,
    i64,
    String,
    Option<String>,
    Option<i64>,
    String,
    Option<String>,
);

fn stored_report(row: ReportRow) -> Result<StoredReport> {
    let (id, raw_id, received_at, state, customer, case_id, report, attribution) = row;
    Ok(StoredReport {
        id,
        raw_id,
        received_at,
        report: serde_json::from_str::<Report>(&report)?,
        state: ReportState::parse(&state).ok_or_else(|| bad("report state", &state))?,
        customer,
        case_id,
        attribution: attribution.map(|a| serde_json::from_str(&a)).transpose()?,
    })
}

const REPORT_COLUMNS: &str =
    "id, raw_id, received_at, state, customer, case_id, report, attribution";

fn customer_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<[String; 6]> {
    let (a, b, c, d, e, f) = <(String, String, String, String, String, String)>::try_from(row)?;
    Ok([a, b, c, d, e, f])
}

fn customer_from([id, name, contact, language, plan, status]: [String; 6]) -> Result<Customer> {
    Ok(Customer {
        language: Language::parse(&language).ok_or_else(|| bad("language", &language))?,
        status: CustomerStatus::parse(&status).ok_or_else(|| bad("status", &status))?,
        id,
        name,
        contact,
        plan,
    })
}

fn delivery_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<DeliveryRow> {
    // rusqlite reads a tuple column by column.
    DeliveryRow::try_from(row)
}

type DeliveryRow = (
    i64,
    String,
    String,
    String,
    String,
    u32,
    i64,
    Option<String>,
);

fn delivery_from(row: DeliveryRow) -> Result<Delivery> {
    let (id, kind, customer, payload, state, attempts, next_attempt, last_error) = row;
    Ok(Delivery {
        id,
        kind: match kind.as_str() {
            "notify" => DeliveryKind::Notify,
            "hook" => DeliveryKind::Hook,
            "op25b" => DeliveryKind::Op25b,
            _ => return Err(bad("delivery kind", &kind)),
        },
        customer,
        payload,
        state: match state.as_str() {
            "pending" => DeliveryState::Pending,
            "done" => DeliveryState::Done,
            "failed" => DeliveryState::Failed,
            _ => return Err(bad("delivery state", &state)),
        },
        attempts,
        next_attempt,
        last_error,
    })
}

const DELIVERY_COLUMNS: &str =
    "id, kind, customer, payload, state, attempts, next_attempt, last_error";

fn insert_case(conn: &Connection, case: &Case) -> Result<CaseId> {
    conn.execute(
        "INSERT INTO cases (customer, category, state, last_report_at, body) VALUES (?1, ?2, ?3, ?4, '')",
        params![case.customer, case.category.as_str(), case.state.as_str(), case.last_report_at],
    )?;
    let id = conn.last_insert_rowid();
    let mut stored = case.clone();
    stored.id = id;
    conn.execute(
        "UPDATE cases SET body = ?2 WHERE id = ?1",
        params![id, serde_json::to_string(&stored)?],
    )?;
    Ok(id)
}

fn update_case(conn: &Connection, case: &Case) -> Result<()> {
    let body = serde_json::to_string(case)?;
    let changed = conn.execute(
        "UPDATE cases SET customer = ?2, category = ?3, state = ?4, last_report_at = ?5, body = ?6 WHERE id = ?1",
        params![case.id, case.customer, case.category.as_str(), case.state.as_str(), case.last_report_at, body],
    )?;
    if changed == 0 {
        return Err(DeskError::NotFound {
            kind: "case",
            id: case.id.to_string(),
        });
    }
    Ok(())
}

fn upsert_interval(tx: &rusqlite::Transaction<'_>, interval: &Interval) -> Result<()> {
    let plen = mapped_plen(&interval.network);
    let net = mask(addr_bytes(interval.network.addr()), plen);
    let mut insert = tx.prepare_cached(
        "INSERT INTO intervals (key_hash, key, source, identity_kind, identity, net, plen,
                                port_lo, port_hi, t_start, t_end, t_seen, nas)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
         ON CONFLICT(key_hash) DO UPDATE SET
             t_start = min(t_start, excluded.t_start),
             t_end = CASE WHEN t_end IS NULL THEN excluded.t_end
                          WHEN excluded.t_end IS NULL THEN t_end
                          ELSE max(t_end, excluded.t_end) END,
             t_seen = CASE WHEN t_seen IS NULL THEN excluded.t_seen
                           WHEN excluded.t_seen IS NULL THEN t_seen
                           ELSE max(t_seen, excluded.t_seen) END,
             nas = coalesce(nas, excluded.nas)",
    )?;
    insert.execute(params![
        interval.key_hash(),
        interval.key,
        interval.source.as_str(),
        interval.identity.kind(),
        interval.identity.value(),
        &net[..],
        plen,
        interval.ports.map(|p| p.0),
        interval.ports.map(|p| p.1),
        interval.start,
        interval.end,
        interval.last_seen,
        interval.nas,
    ])?;
    Ok(())
}

impl DeskStore for SqliteDeskStore {
    fn put_raw(&self, bytes: &[u8], at: UnixTime) -> Result<RawPut> {
        let sha256 = sha256_hex(bytes);
        self.with(|conn| {
            let (id, copies): (i64, i64) = conn.query_row(
                "INSERT INTO raw_reports (sha256, bytes, first_seen, last_seen) VALUES (?1, ?2, ?3, ?3)
                 ON CONFLICT(sha256) DO UPDATE SET copies = copies + 1, last_seen = max(last_seen, excluded.last_seen)
                 RETURNING id, copies",
                params![sha256, bytes, at],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            Ok(RawPut {
                id,
                sha256: sha256.clone(),
                duplicate: copies > 1,
            })
        })
    }

    fn raw(&self, id: RawId) -> Result<Option<RawReport>> {
        self.with(|conn| {
            Ok(conn
                .query_row(
                    "SELECT id, sha256, bytes, first_seen, last_seen, copies FROM raw_reports WHERE id = ?1",
                    [id],
                    |r| {
                        Ok(RawReport {
                            id: r.get(0)?,
                            sha256: r.get(1)?,
                            bytes: r.get(2)?,
                            first_seen: r.get(3)?,
                            last_seen: r.get(4)?,
                            copies: r.get(5)?,
                        })
                    },
                )
                .optional()?)
        })
    }

    fn put_report(&self, raw_id: RawId, report: &Report, at: UnixTime) -> Result<ReportId> {
        let body = serde_json::to_string(report)?;
        let state = if report.needs_triage() {
            ReportState::Triage
        } else {
            ReportState::New
        };
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let existing: Option<i64> = tx
                .query_row("SELECT id FROM reports WHERE raw_id = ?1", [raw_id], |r| r.get(0))
                .optional()?;
            let id = match existing {
                Some(id) => id,
                None => {
                    tx.execute(
                        "INSERT INTO reports (raw_id, received_at, state, report) VALUES (?1, ?2, ?3, ?4)",
                        params![raw_id, at, state.as_str(), body],
                    )?;
                    tx.last_insert_rowid()
                }
            };
            tx.commit()?;
            Ok(id)
        })
    }

    fn report(&self, id: ReportId) -> Result<Option<StoredReport>> {
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT {REPORT_COLUMNS} FROM reports WHERE id = ?1"),
                [id],
                report_row,
            )
            .optional()?
            .map(stored_report)
            .transpose()
        })
    }

    fn report_for_raw(&self, raw_id: RawId) -> Result<Option<StoredReport>> {
        self.with(|conn| {
            conn.query_row(
                &format!("SELECT {REPORT_COLUMNS} FROM reports WHERE raw_id = ?1"),
                [raw_id],
                report_row,
            )
            .optional()?
            .map(stored_report)
            .transpose()
        })
    }

    fn set_report_outcome(&self, id: ReportId, outcome: &ReportOutcome) -> Result<()> {
        let attribution = outcome
            .attribution
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        self.with(|conn| {
            let changed = conn.execute(
                "UPDATE reports SET state = ?2, customer = ?3, case_id = ?4, attribution = ?5 WHERE id = ?1",
                params![id, outcome.state.as_str(), outcome.customer, outcome.case_id, attribution],
            )?;
            if changed == 0 {
                return Err(DeskError::NotFound { kind: "report", id: id.to_string() });
            }
            Ok(())
        })
    }

    fn reports(&self, state: Option<ReportState>, limit: usize) -> Result<Vec<StoredReport>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {REPORT_COLUMNS} FROM reports WHERE (?1 IS NULL OR state = ?1) ORDER BY id DESC LIMIT ?2"
            ))?;
            let rows = stmt
                .query_map(params![state.map(ReportState::as_str), limit as i64], report_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(stored_report).collect()
        })
    }

    fn case_reports(&self, case_id: CaseId) -> Result<Vec<StoredReport>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {REPORT_COLUMNS} FROM reports WHERE case_id = ?1 ORDER BY id"
            ))?;
            let rows = stmt
                .query_map([case_id], report_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(stored_report).collect()
        })
    }

    fn upsert_customer(&self, c: &Customer) -> Result<()> {
        if c.id.trim().is_empty() {
            return Err(DeskError::Invalid("empty customer id".into()));
        }
        self.with(|conn| {
            conn.execute(
                "INSERT INTO customers (id, name, contact, language, plan, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT(id) DO UPDATE SET name = excluded.name, contact = excluded.contact,
                     language = excluded.language, plan = excluded.plan, status = excluded.status",
                params![c.id, c.name, c.contact, c.language.as_str(), c.plan, c.status.as_str()],
            )?;
            Ok(())
        })
    }

    fn upsert_customers(&self, customers: &[Customer]) -> Result<usize> {
        if customers.iter().any(|c| c.id.trim().is_empty()) {
            return Err(DeskError::Invalid("empty customer id".into()));
        }
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut stmt = tx.prepare_cached(
                    "INSERT INTO customers (id, name, contact, language, plan, status) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                     ON CONFLICT(id) DO UPDATE SET name = excluded.name, contact = excluded.contact,
                         language = excluded.language, plan = excluded.plan",
                )?;
                for c in customers {
                    stmt.execute(params![c.id, c.name, c.contact, c.language.as_str(), c.plan, c.status.as_str()])?;
                }
            }
            tx.commit()?;
            Ok(customers.len())
        })
    }

    fn customer(&self, id: &str) -> Result<Option<Customer>> {
        self.with(|conn| {
            conn.query_row(
                "SELECT id, name, contact, language, plan, status FROM customers WHERE id = ?1",
                [id],
                customer_row,
            )
            .optional()?
            .map(customer_from)
            .transpose()
        })
    }

    fn customers(&self, after: Option<&str>, limit: usize) -> Result<Vec<Customer>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT id, name, contact, language, plan, status FROM customers
                 WHERE id > ?1 ORDER BY id LIMIT ?2",
            )?;
            let rows = stmt
                .query_map(params![after.unwrap_or(""), limit as i64], customer_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(customer_from).collect()
        })
    }

    fn link_account(&self, account: &str, customer: &str) -> Result<()> {
        self.with(|conn| {
            require_customer(conn, customer)?;
            conn.execute(
                "INSERT INTO accounts (account, customer) VALUES (?1, ?2)
                 ON CONFLICT(account) DO UPDATE SET customer = excluded.customer",
                params![account, customer],
            )?;
            Ok(())
        })
    }

    fn account_customer(&self, account: &str) -> Result<Option<String>> {
        self.with(|conn| {
            Ok(conn
                .query_row(
                    "SELECT customer FROM accounts WHERE account = ?1",
                    [account],
                    |r| r.get(0),
                )
                .optional()?)
        })
    }

    fn customer_accounts(&self, customer: &str) -> Result<Vec<String>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT account FROM accounts WHERE customer = ?1 ORDER BY account",
            )?;
            Ok(stmt
                .query_map([customer], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()?)
        })
    }

    fn link_identity(&self, identity: &Identity, customer: &str) -> Result<()> {
        self.with(|conn| {
            require_customer(conn, customer)?;
            conn.execute(
                "INSERT INTO identities (kind, value, customer) VALUES (?1, ?2, ?3)
                 ON CONFLICT(kind, value) DO UPDATE SET customer = excluded.customer",
                params![identity.kind(), identity.value(), customer],
            )?;
            Ok(())
        })
    }

    fn link_identities(&self, links: &[(Identity, String)]) -> Result<usize> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            {
                let mut known = tx.prepare_cached("SELECT 1 FROM customers WHERE id = ?1")?;
                let mut insert = tx.prepare_cached(
                    "INSERT INTO identities (kind, value, customer) VALUES (?1, ?2, ?3)
                     ON CONFLICT(kind, value) DO UPDATE SET customer = excluded.customer",
                )?;
                for (identity, customer) in links {
                    if !known.exists([customer])? {
                        return Err(DeskError::NotFound {
                            kind: "customer",
                            id: customer.clone(),
                        });
                    }
                    insert.execute(params![identity.kind(), identity.value(), customer])?;
                }
            }
            tx.commit()?;
            Ok(links.len())
        })
    }

    fn identity_customer(&self, identity: &Identity) -> Result<Option<String>> {
        self.with(|conn| {
            Ok(conn
                .prepare_cached("SELECT customer FROM identities WHERE kind = ?1 AND value = ?2")?
                .query_row(params![identity.kind(), identity.value()], |r| r.get(0))
                .optional()?)
        })
    }

    fn import_batch(&self, source: &str, batch: &ImportBatch) -> Result<ImportSummary> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // In index order: neighbouring inserts touch the same B-tree pages.
            let mut ordered: Vec<&Interval> = batch.intervals.iter().collect();
            ordered.sort_by_cached_key(|i| (addr_bytes(i.network.addr()), mapped_plen(&i.network), i.start));
            let mut plens: Vec<u8> = Vec::new();
            for interval in ordered {
                upsert_interval(&tx, interval)?;
                let plen = mapped_plen(&interval.network);
                if !plens.contains(&plen) {
                    plens.push(plen);
                }
            }
            for plen in plens {
                tx.prepare_cached("INSERT OR IGNORE INTO prefix_lengths (plen) VALUES (?1)")?
                    .execute([plen])?;
            }
            let mut closed = 0;
            for (nas, at) in &batch.nas_resets {
                closed += tx.execute(
                    "UPDATE intervals SET t_end = ?2 WHERE nas = ?1 AND t_end IS NULL AND t_start < ?2",
                    params![nas, at],
                )?;
            }
            tx.execute(
                "INSERT INTO import_offsets (source, offset) VALUES (?1, ?2)
                 ON CONFLICT(source) DO UPDATE SET offset = excluded.offset",
                params![source, batch.next_offset as i64],
            )?;
            tx.commit()?;
            Ok(ImportSummary {
                upserted: batch.intervals.len(),
                sessions_closed_by_nas_reset: closed,
                rejected: batch.rejected.len(),
            })
        })
    }

    fn import_offset(&self, source: &str) -> Result<u64> {
        self.with(|conn| {
            let offset: Option<i64> = conn
                .query_row(
                    "SELECT offset FROM import_offsets WHERE source = ?1",
                    [source],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(offset.unwrap_or(0) as u64)
        })
    }

    fn intervals_at(
        &self,
        address: IpAddr,
        port: Option<u16>,
        at: UnixTime,
        slack: i64,
    ) -> Result<Vec<Interval>> {
        let bytes = addr_bytes(address);
        let v4 = address.is_ipv4();
        self.with(|conn| {
            let plens: Vec<u8> = conn
                .prepare_cached("SELECT plen FROM prefix_lengths")?
                .query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<u8>>>()?;
            let mut stmt = conn.prepare_cached(
                "SELECT key, source, identity_kind, identity, net, plen, port_lo, port_hi,
                        t_start, t_end, t_seen, nas
                 FROM intervals WHERE net = ?1 AND plen = ?2 AND t_start <= ?3
                   AND (?4 IS NULL OR port_lo IS NULL OR (port_lo <= ?4 AND ?4 <= port_hi))
                 ORDER BY t_start DESC LIMIT 64",
            )?;
            let mut out = Vec::new();
            // IPv4 lives in ::ffff:0:0/96: only lengths of 96 and more can hold it.
            for plen in plens.into_iter().filter(|p| !v4 || *p >= 96) {
                let net = mask(bytes, plen);
                let rows = stmt.query_map(
                    params![&net[..], plen, at.saturating_add(slack), port],
                    |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            r.get::<_, String>(1)?,
                            r.get::<_, String>(2)?,
                            r.get::<_, String>(3)?,
                            r.get::<_, Vec<u8>>(4)?,
                            r.get::<_, u8>(5)?,
                            r.get::<_, Option<u16>>(6)?,
                            r.get::<_, Option<u16>>(7)?,
                            r.get::<_, i64>(8)?,
                            r.get::<_, Option<i64>>(9)?,
                            r.get::<_, Option<i64>>(10)?,
                            r.get::<_, Option<String>>(11)?,
                        ))
                    },
                )?;
                for row in rows {
                    let (key, source, kind, value, net, plen, lo, hi, start, end, seen, nas) = row?;
                    out.push(Interval {
                        source: Source::parse(&source).ok_or_else(|| bad("source", &source))?,
                        key,
                        identity: Identity::from_parts(&kind, &value)
                            .ok_or_else(|| bad("identity kind", &kind))?,
                        network: network_from(&net, plen)?,
                        ports: lo.zip(hi),
                        start,
                        end,
                        last_seen: seen,
                        nas,
                    });
                }
            }
            Ok(out)
        })
    }

    fn purge_intervals(&self, cutoff: UnixTime) -> Result<usize> {
        self.with(|conn| {
            Ok(conn.execute(
                "DELETE FROM intervals WHERE coalesce(t_end, t_seen) < ?1",
                [cutoff],
            )?)
        })
    }

    fn purge(&self, cutoffs: &PurgeCutoffs) -> Result<PurgeSummary> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let mut summary = PurgeSummary {
                sessions: tx.execute(
                    "DELETE FROM intervals WHERE coalesce(t_end, t_seen) < ?1",
                    [cutoffs.sessions],
                )?,
                ..PurgeSummary::default()
            };
            const CLAIMED: &str = "EXISTS (SELECT 1 FROM claims, json_each(claims.body, '$.case_ids') j
                                   WHERE j.value = cases.id)";
            const OPEN: &str = "cases.state NOT IN ('closed', 'dismissed')";
            let count = |sql: &str| -> Result<usize> {
                let n: i64 = tx.query_row(
                    &format!("SELECT count(*) FROM cases WHERE last_report_at < ?1 AND {sql}"),
                    [cutoffs.cases],
                    |r| r.get(0),
                )?;
                Ok(n as usize)
            };
            if !cutoffs.force {
                summary.kept_open_cases = count(OPEN)?;
                summary.kept_claimed_cases = count(&format!("NOT ({OPEN}) AND {CLAIMED}"))?;
            }
            let doomed = if cutoffs.force {
                "1".to_string()
            } else {
                format!("NOT ({OPEN}) AND NOT {CLAIMED}")
            };
            tx.execute("CREATE TEMP TABLE IF NOT EXISTS purge_cases (id INTEGER PRIMARY KEY)", [])?;
            tx.execute("DELETE FROM purge_cases", [])?;
            tx.execute(
                &format!(
                    "INSERT INTO purge_cases SELECT id FROM cases WHERE last_report_at < ?1 AND {doomed}"
                ),
                [cutoffs.cases],
            )?;
            summary.reports += tx.execute(
                "DELETE FROM reports WHERE case_id IN (SELECT id FROM purge_cases)",
                [],
            )?;
            summary.cases = tx.execute("DELETE FROM cases WHERE id IN (SELECT id FROM purge_cases)", [])?;
            tx.execute("DELETE FROM purge_cases", [])?;
            summary.reports += tx.execute(
                "DELETE FROM reports WHERE (case_id IS NULL OR case_id NOT IN (SELECT id FROM cases))
                   AND received_at < ?1",
                [cutoffs.reports],
            )?;
            summary.raw_reports = tx.execute(
                "DELETE FROM raw_reports WHERE last_seen < ?1
                   AND id NOT IN (SELECT raw_id FROM reports)",
                [cutoffs.reports],
            )?;
            let finished = if cutoffs.force {
                "state IN ('done', 'failed')"
            } else {
                "state = 'done'"
            };
            summary.deliveries = tx.execute(
                &format!(
                    "DELETE FROM deliveries WHERE {finished} AND coalesce(done_at, next_attempt, created_at) < ?1"
                ),
                [cutoffs.reports],
            )?;
            tx.commit()?;
            Ok(summary)
        })
    }

    fn file_into_case(
        &self,
        report_id: ReportId,
        customer: &str,
        category: Category,
        message_id: Option<&str>,
        at: UnixTime,
        policy: &FoldPolicy,
    ) -> Result<(CaseId, Fold)> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            // Duplicates are looked for over a longer span than the fold window.
            let since = at.saturating_sub(policy.window.saturating_mul(13));
            let cases: Vec<Case> = {
                let mut stmt = tx.prepare_cached(
                    "SELECT body FROM cases WHERE customer = ?1 AND last_report_at >= ?2",
                )?;
                let bodies = stmt
                    .query_map(params![customer, since], |r| r.get::<_, String>(0))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                bodies
                    .iter()
                    .map(|b| serde_json::from_str(b))
                    .collect::<serde_json::Result<_>>()?
            };
            // A report filed before (a retried ingest) stays where it is.
            if let Some(case) = cases.iter().find(|c| c.report_ids.contains(&report_id)) {
                return Ok((case.id, Fold::Attach { case_id: case.id }));
            }
            let decision = fold(&cases, customer, category, message_id, at, policy);
            let case_id = match decision {
                Fold::NewCase => {
                    let case = Case::open(0, customer, category, report_id, message_id, at);
                    insert_case(&tx, &case)?
                }
                Fold::Attach { case_id } | Fold::Duplicate { case_id } => {
                    let mut case = cases
                        .into_iter()
                        .find(|c| c.id == case_id)
                        .ok_or_else(|| DeskError::Backend("fold chose a case not loaded".into()))?;
                    case.add_report(report_id, message_id, at);
                    update_case(&tx, &case)?;
                    case_id
                }
            };
            tx.commit()?;
            Ok((case_id, decision))
        })
    }

    fn create_case(&self, case: &Case) -> Result<CaseId> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let id = insert_case(&tx, case)?;
            tx.commit()?;
            Ok(id)
        })
    }

    fn save_case(&self, case: &Case) -> Result<()> {
        self.with(|conn| update_case(conn, case))
    }

    fn case(&self, id: CaseId) -> Result<Option<Case>> {
        self.with(|conn| {
            let body: Option<String> = conn
                .query_row("SELECT body FROM cases WHERE id = ?1", [id], |r| r.get(0))
                .optional()?;
            Ok(body.map(|b| serde_json::from_str(&b)).transpose()?)
        })
    }

    fn customer_cases(&self, customer: &str, since: UnixTime) -> Result<Vec<Case>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT body FROM cases WHERE customer = ?1 AND last_report_at >= ?2 ORDER BY last_report_at DESC",
            )?;
            let bodies = stmt
                .query_map(params![customer, since], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(bodies.iter().map(|b| serde_json::from_str(b)).collect::<serde_json::Result<_>>()?)
        })
    }

    fn cases(&self, state: Option<CaseState>, limit: usize) -> Result<Vec<Case>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT body FROM cases WHERE (?1 IS NULL OR state = ?1) ORDER BY id DESC LIMIT ?2",
            )?;
            let bodies = stmt
                .query_map(params![state.map(CaseState::as_str), limit as i64], |r| {
                    r.get::<_, String>(0)
                })?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(bodies
                .iter()
                .map(|b| serde_json::from_str(b))
                .collect::<serde_json::Result<_>>()?)
        })
    }

    fn ladder(&self, customer: &str) -> Result<Ladder> {
        self.with(|conn| {
            let body: Option<String> = conn
                .query_row(
                    "SELECT body FROM ladders WHERE customer = ?1",
                    [customer],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(match body {
                Some(b) => serde_json::from_str(&b)?,
                None => Ladder::new(customer),
            })
        })
    }

    fn commit_transition(&self, transition: &Transition, now: UnixTime) -> Result<i64> {
        let ladder = &transition.ladder;
        let body = serde_json::to_string(ladder)?;
        let audit = serde_json::to_string(&transition.audit)?;
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let changed = tx.execute(
                "UPDATE customers SET status = ?2 WHERE id = ?1",
                params![ladder.customer, ladder.step.status().as_str()],
            )?;
            if changed == 0 {
                return Err(DeskError::NotFound { kind: "customer", id: ladder.customer.clone() });
            }
            tx.execute(
                "INSERT INTO ladders (customer, step, body) VALUES (?1, ?2, ?3)
                 ON CONFLICT(customer) DO UPDATE SET step = excluded.step, body = excluded.body",
                params![ladder.customer, ladder.step.as_str(), body],
            )?;
            tx.execute(
                "INSERT INTO audit (customer, at, body) VALUES (?1, ?2, ?3)",
                params![ladder.customer, transition.audit.at, audit],
            )?;
            let audit_id = tx.last_insert_rowid();
            for action in &transition.actions {
                let kind = match action {
                    Action::NotifyCustomer { .. } => DeliveryKind::Notify,
                    Action::RunHook { .. } => DeliveryKind::Hook,
                    Action::RevokeOp25bExemptions { .. }
                    | Action::RestoreOp25bExemptions { .. } => DeliveryKind::Op25b,
                    // Account changes are carried out at once by the caller.
                    _ => continue,
                };
                tx.execute(
                    "INSERT INTO deliveries (kind, customer, payload, state, next_attempt, created_at)
                     VALUES (?1, ?2, ?3, 'pending', ?4, ?4)",
                    params![kind.as_str(), ladder.customer, serde_json::to_string(action)?, now],
                )?;
            }
            tx.commit()?;
            Ok(audit_id)
        })
    }

    fn append_audit(&self, record: &AuditRecord) -> Result<i64> {
        let body = serde_json::to_string(record)?;
        self.with(|conn| {
            conn.execute(
                "INSERT INTO audit (customer, at, body) VALUES (?1, ?2, ?3)",
                params![record.customer, record.at, body],
            )?;
            Ok(conn.last_insert_rowid())
        })
    }

    fn audit(&self, customer: &str) -> Result<Vec<(i64, AuditRecord)>> {
        self.with(|conn| {
            json_rows(
                conn,
                "SELECT id, body FROM audit WHERE customer = ?1 ORDER BY id",
                customer,
            )
        })
    }

    fn add_claim(&self, claim: &Claim, audit: &AuditRecord) -> Result<i64> {
        let body = serde_json::to_string(claim)?;
        let audit_body = serde_json::to_string(audit)?;
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            for case_id in &claim.case_ids {
                let owner: Option<String> = tx
                    .query_row("SELECT customer FROM cases WHERE id = ?1", [case_id], |r| {
                        r.get(0)
                    })
                    .optional()?;
                if owner.as_deref() != Some(claim.customer.as_str()) {
                    return Err(DeskError::NotFound {
                        kind: "case of this customer",
                        id: case_id.to_string(),
                    });
                }
            }
            tx.execute(
                "INSERT INTO audit (customer, at, body) VALUES (?1, ?2, ?3)",
                params![audit.customer, audit.at, audit_body],
            )?;
            let audit_id = tx.last_insert_rowid();
            tx.execute(
                "INSERT INTO claims (customer, audit_id, body) VALUES (?1, ?2, ?3)",
                params![claim.customer, audit_id, body],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(id)
        })
    }

    fn claims(&self, customer: &str) -> Result<Vec<(i64, Claim)>> {
        self.with(|conn| {
            json_rows(
                conn,
                "SELECT id, body FROM claims WHERE customer = ?1 ORDER BY id",
                customer,
            )
        })
    }

    fn enqueue_delivery(
        &self,
        kind: DeliveryKind,
        customer: &str,
        payload: &str,
        now: UnixTime,
    ) -> Result<i64> {
        self.with(|conn| {
            conn.execute(
                "INSERT INTO deliveries (kind, customer, payload, state, next_attempt, created_at)
                 VALUES (?1, ?2, ?3, 'pending', ?4, ?4)",
                params![kind.as_str(), customer, payload, now],
            )?;
            Ok(conn.last_insert_rowid())
        })
    }

    fn due_deliveries(&self, now: UnixTime, limit: usize) -> Result<Vec<Delivery>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE state = 'pending' AND next_attempt <= ?1
                 ORDER BY next_attempt, id LIMIT ?2"
            ))?;
            let rows = stmt
                .query_map(params![now, limit as i64], delivery_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(delivery_from).collect()
        })
    }

    fn due_deliveries_of(
        &self,
        kind: DeliveryKind,
        now: UnixTime,
        limit: usize,
    ) -> Result<Vec<Delivery>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries
                 WHERE state = 'pending' AND kind = ?1 AND next_attempt <= ?2
                 ORDER BY next_attempt, id LIMIT ?3"
            ))?;
            let rows = stmt
                .query_map(
                    params![kind.as_str(), now, i64::try_from(limit).unwrap_or(-1)],
                    delivery_row,
                )?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(delivery_from).collect()
        })
    }

    fn delivery_done(&self, id: i64, now: UnixTime) -> Result<()> {
        self.with(|conn| {
            let changed = conn.execute(
                "UPDATE deliveries SET state = 'done', done_at = ?2, attempts = attempts + 1 WHERE id = ?1 AND state = 'pending'",
                params![id, now],
            )?;
            if changed == 0 {
                return Err(DeskError::NotFound { kind: "pending delivery", id: id.to_string() });
            }
            Ok(())
        })
    }

    fn delivery_failed(
        &self,
        id: i64,
        now: UnixTime,
        error: &str,
        retry: &RetryPolicy,
    ) -> Result<DeliveryState> {
        self.with(|conn| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let attempts: Option<u32> = tx
                .query_row("SELECT attempts FROM deliveries WHERE id = ?1 AND state = 'pending'", [id], |r| r.get(0))
                .optional()?;
            let Some(attempts) = attempts.map(|a| a + 1) else {
                return Err(DeskError::NotFound { kind: "pending delivery", id: id.to_string() });
            };
            let state = if attempts >= retry.max_attempts { DeliveryState::Failed } else { DeliveryState::Pending };
            tx.execute(
                "UPDATE deliveries SET attempts = ?2, state = ?3, next_attempt = ?4, last_error = ?5 WHERE id = ?1",
                params![id, attempts, state.as_str(), now.saturating_add(retry.delay(attempts)), error],
            )?;
            tx.commit()?;
            Ok(state)
        })
    }

    fn retry_delivery(&self, id: i64, now: UnixTime) -> Result<Delivery> {
        self.with(|conn| {
            let changed = conn.execute(
                "UPDATE deliveries SET state = 'pending', next_attempt = ?2
                 WHERE id = ?1 AND state IN ('pending', 'failed')",
                params![id, now],
            )?;
            if changed == 0 {
                return Err(DeskError::NotFound {
                    kind: "pending or failed delivery",
                    id: id.to_string(),
                });
            }
            let row = conn.query_row(
                &format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?1"),
                [id],
                delivery_row,
            )?;
            delivery_from(row)
        })
    }

    fn deliveries(&self, state: DeliveryState, limit: usize) -> Result<Vec<Delivery>> {
        self.with(|conn| {
            let mut stmt = conn.prepare_cached(&format!(
                "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE state = ?1 ORDER BY id LIMIT ?2"
            ))?;
            let rows = stmt
                .query_map(params![state.as_str(), limit as i64], delivery_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().map(delivery_from).collect()
        })
    }
}
