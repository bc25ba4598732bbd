//! The desk's workflows over a [`DeskStore`]: what `spamgate abuse ...`
//! commands call. Each function takes `now`; none reads a clock.

use crate::attribution::{Attribution, AttributionPolicy, Query};
use crate::case::{CaseId, CaseState, Fold, FoldPolicy};
use crate::ladder::{self, AuditRecord, Claim, Command, EscalationPolicy, Transition};
use crate::report::{ParseOptions, parse_report};
use crate::store::{DeskError, DeskStore, RawPut, ReportId, ReportOutcome, ReportState, Result};
use crate::time::UnixTime;

/// Everything the operator configures for the desk.
#[derive(Debug, Clone, Default)]
pub struct DeskConfig {
    pub parse: ParseOptions,
    pub attribution: AttributionPolicy,
    pub fold: FoldPolicy,
    pub escalation: EscalationPolicy,
}

/// What `abuse ingest` did with one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngestOutcome {
    pub raw: RawPut,
    pub report_id: ReportId,
    pub state: ReportState,
    pub customer: Option<String>,
    pub case_id: Option<CaseId>,
    pub fold: Option<Fold>,
}

/// Ingests one message: the raw bytes are stored first (the caller may exit 0
/// once this returns `Ok`; on `Err` it must exit 75 so the MTA retries), then
/// parsed, attributed and filed. The same bytes again are counted and filed
/// once. A failure after the raw bytes are stored leaves the report for
/// [`refile`]; nothing accepted is lost.
pub fn ingest(
    store: &dyn DeskStore,
    bytes: &[u8],
    now: UnixTime,
    config: &DeskConfig,
) -> Result<IngestOutcome> {
    let raw = store.put_raw(bytes, now)?;
    if raw.duplicate
        && let Some(existing) = store.report_for_raw(raw.id)?
        && existing.state != ReportState::New
    {
        return Ok(IngestOutcome {
            raw,
            report_id: existing.id,
            state: existing.state,
            customer: existing.customer,
            case_id: existing.case_id,
            fold: None,
        });
    }
    let report = parse_report(bytes, &config.parse);
    let report_id = store.put_report(raw.id, &report, now)?;
    let (state, customer, case_id, folded) = refile(store, report_id, config)?;
    Ok(IngestOutcome {
        raw,
        report_id,
        state,
        customer,
        case_id,
        fold: folded,
    })
}

type Filed = (ReportState, Option<String>, Option<CaseId>, Option<Fold>);

/// Attributes a stored report and folds it into a case, or sends it to triage.
pub fn refile(store: &dyn DeskStore, report_id: ReportId, config: &DeskConfig) -> Result<Filed> {
    let stored = store.report(report_id)?.ok_or(DeskError::NotFound {
        kind: "report",
        id: report_id.to_string(),
    })?;
    let report = &stored.report;
    let (Some(address), Some(time)) = (report.source_ip, report.time.as_ref()) else {
        store.set_report_outcome(report_id, &ReportOutcome::triage())?;
        return Ok((ReportState::Triage, None, None, None));
    };
    let query = Query {
        address,
        port: report.source_port,
        at: time.utc,
    };
    let attribution = store.attribute(query, &config.attribution)?;
    let (Some(customer), Some(category), false) = (
        attribution.customer().map(str::to_string),
        report.category,
        report.kind == crate::report::ReportKind::Unknown,
    ) else {
        store.set_report_outcome(
            report_id,
            &ReportOutcome {
                state: ReportState::Triage,
                customer: attribution.customer().map(str::to_string),
                case_id: None,
                attribution: Some(attribution),
            },
        )?;
        return Ok((ReportState::Triage, None, None, None));
    };
    let (case_id, folded) = store.file_into_case(
        report_id,
        &customer,
        category,
        report.original_message_id.as_deref(),
        time.utc,
        &config.fold,
    )?;
    store.set_report_outcome(
        report_id,
        &ReportOutcome {
            state: ReportState::Filed,
            customer: Some(customer.clone()),
            case_id: Some(case_id),
            attribution: Some(attribution),
        },
    )?;
    Ok((
        ReportState::Filed,
        Some(customer),
        Some(case_id),
        Some(folded),
    ))
}

/// A person names the customer of a triaged report (after looking at the
/// evidence); the report is then folded like any other.
pub fn assign(
    store: &dyn DeskStore,
    report_id: ReportId,
    customer: &str,
    category: Option<crate::report::Category>,
    actor: &str,
    now: UnixTime,
    config: &DeskConfig,
) -> Result<CaseId> {
    let stored = store.report(report_id)?.ok_or(DeskError::NotFound {
        kind: "report",
        id: report_id.to_string(),
    })?;
    if store.customer(customer)?.is_none() {
        return Err(DeskError::NotFound {
            kind: "customer",
            id: customer.into(),
        });
    }
    let category = category
        .or(stored.report.category)
        .ok_or_else(|| DeskError::Invalid("the report has no category; name one".into()))?;
    let at = stored.report.time.as_ref().map_or(now, |t| t.utc);
    let (case_id, _) = store.file_into_case(
        report_id,
        customer,
        category,
        stored.report.original_message_id.as_deref(),
        at,
        &config.fold,
    )?;
    store.set_report_outcome(
        report_id,
        &ReportOutcome {
            state: ReportState::Filed,
            customer: Some(customer.into()),
            case_id: Some(case_id),
            attribution: stored.attribution,
        },
    )?;
    store.append_audit(&AuditRecord {
        customer: customer.into(),
        at: now,
        actor: actor.into(),
        action: "assign".into(),
        from: store.ladder(customer)?.step,
        to: store.ladder(customer)?.step,
        reason: format!("report {report_id} assigned from triage"),
        evidence: vec![format!("report:{report_id}"), format!("case:{case_id}")],
        rule: None,
        approver: None,
        forced: false,
    })?;
    Ok(case_id)
}

/// Confirms a case as abuse and lets the policy decide the next step.
pub fn confirm_case(
    store: &dyn DeskStore,
    case_id: CaseId,
    actor: &str,
    now: UnixTime,
    config: &DeskConfig,
) -> Result<Transition> {
    let mut case = store.case(case_id)?.ok_or(DeskError::NotFound {
        kind: "case",
        id: case_id.to_string(),
    })?;
    let evidence = case
        .report_ids
        .iter()
        .map(|r| format!("report:{r}"))
        .collect();
    let transition = decide(
        store,
        &case.customer,
        actor,
        Command::ConfirmCase {
            case_id,
            category: case.category,
            evidence,
        },
        now,
        config,
    )?;
    case.state = CaseState::Confirmed;
    store.save_case(&case)?;
    Ok(transition)
}

/// Applies a ladder command and commits it (ladder, status, audit, queued
/// notices and hooks). The caller carries out the returned actions that change
/// accounts and OP25B exemptions.
pub fn decide(
    store: &dyn DeskStore,
    customer: &str,
    actor: &str,
    command: Command,
    now: UnixTime,
    config: &DeskConfig,
) -> Result<Transition> {
    if store.customer(customer)?.is_none() {
        return Err(DeskError::NotFound {
            kind: "customer",
            id: customer.into(),
        });
    }
    let ladder = store.ladder(customer)?;
    let transition = ladder::apply(&ladder, actor, command, &config.escalation, now)
        .map_err(|e| DeskError::Invalid(e.to_string()))?;
    store.commit_transition(&transition, now)?;
    Ok(transition)
}

/// Files a claim for damage against a customer's cases.
pub fn file_claim(store: &dyn DeskStore, claim: &Claim, actor: &str, now: UnixTime) -> Result<i64> {
    let ladder = store.ladder(&claim.customer)?;
    let audit =
        ladder::claim(&ladder, actor, claim, now).map_err(|e| DeskError::Invalid(e.to_string()))?;
    store.add_claim(claim, &audit)
}

/// The `abuse who ADDRESS[:PORT] TIME` answer.
pub fn who(store: &dyn DeskStore, query: Query, config: &DeskConfig) -> Result<Attribution> {
    store.attribute(query, &config.attribution)
}

/// A command-line `ADDRESS[:PORT]`: `192.0.2.1`, `192.0.2.1:4000`, `2001:db8::1`,
/// `[2001:db8::1]:4000`.
pub fn parse_address_port(text: &str) -> Option<(std::net::IpAddr, Option<u16>)> {
    if let Ok(ip) = text.parse() {
        return Some((ip, None));
    }
    let socket: std::net::SocketAddr = text.parse().ok()?;
    Some((socket.ip(), Some(socket.port())))
}

/// Files an internal signal: its JSON is stored as the raw report (so it is
/// kept and exported like a mail), then it is filed against the account's
/// customer, or attributed by address (OP25B).
pub fn ingest_internal(
    store: &dyn DeskStore,
    signal: &crate::report::InternalSignal,
    observed_at: UnixTime,
    now: UnixTime,
    config: &DeskConfig,
) -> Result<IngestOutcome> {
    let bytes =
        serde_json::to_vec(&serde_json::json!({ "observed_at": observed_at, "signal": signal }))
            .map_err(DeskError::from)?;
    file_internal(store, &bytes, signal, observed_at, now, config)
}

/// [`ingest_internal`] for a signal whose figures grow while it is watched (the OP25B
/// hit table's counters): the stored raw bytes are `key`, which must name the signal
/// once (e.g. the source and the window of its last attempt), so every run that sees
/// it again is a duplicate; the report carries the figures of the first run that
/// filed it, attributed at `observed_at`.
pub fn ingest_internal_keyed(
    store: &dyn DeskStore,
    signal: &crate::report::InternalSignal,
    key: &serde_json::Value,
    observed_at: UnixTime,
    now: UnixTime,
    config: &DeskConfig,
) -> Result<IngestOutcome> {
    let bytes = serde_json::to_vec(key).map_err(DeskError::from)?;
    file_internal(store, &bytes, signal, observed_at, now, config)
}

fn file_internal(
    store: &dyn DeskStore,
    bytes: &[u8],
    signal: &crate::report::InternalSignal,
    observed_at: UnixTime,
    now: UnixTime,
    config: &DeskConfig,
) -> Result<IngestOutcome> {
    let raw = store.put_raw(bytes, now)?;
    let report = crate::report::internal_report(signal, observed_at);
    let report_id = store.put_report(raw.id, &report, now)?;
    let Some(account) = signal.account() else {
        let (state, customer, case_id, folded) = refile(store, report_id, config)?;
        return Ok(IngestOutcome {
            raw,
            report_id,
            state,
            customer,
            case_id,
            fold: folded,
        });
    };
    let Some(customer) = store.account_customer(account)? else {
        store.set_report_outcome(report_id, &ReportOutcome::triage())?;
        return Ok(IngestOutcome {
            raw,
            report_id,
            state: ReportState::Triage,
            customer: None,
            case_id: None,
            fold: None,
        });
    };
    let category = report.category.unwrap_or(crate::report::Category::Spam);
    let (case_id, folded) = store.file_into_case(
        report_id,
        &customer,
        category,
        None,
        observed_at,
        &config.fold,
    )?;
    store.set_report_outcome(
        report_id,
        &ReportOutcome {
            state: ReportState::Filed,
            customer: Some(customer.clone()),
            case_id: Some(case_id),
            attribution: None,
        },
    )?;
    Ok(IngestOutcome {
        raw,
        report_id,
        state: ReportState::Filed,
        customer: Some(customer),
        case_id: Some(case_id),
        fold: Some(folded),
    })
}

/// The formats `sessions import --format` takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HistoryFormat {
    RadiusDetail,
    KeaCsv,
    Static,
    Cgnat,
}

impl HistoryFormat {
    pub fn parse(text: &str) -> Option<HistoryFormat> {
        match text {
            "radius-detail" => Some(HistoryFormat::RadiusDetail),
            "kea-csv" => Some(HistoryFormat::KeaCsv),
            "static" => Some(HistoryFormat::Static),
            "cgnat" => Some(HistoryFormat::Cgnat),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HistoryFormat::RadiusDetail => "radius-detail",
            HistoryFormat::KeaCsv => "kea-csv",
            HistoryFormat::Static => "static",
            HistoryFormat::Cgnat => "cgnat",
        }
    }
}

/// What an import of one file did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileImport {
    pub from_offset: u64,
    pub to_offset: u64,
    /// The file was shorter than the stored offset: rotated or rewritten
    /// (Kea's lease file cleanup), so it was read from the start.
    pub restarted: bool,
    pub summary: crate::store::ImportSummary,
    /// Records that could not be read: (byte offset in the file, why).
    pub rejected: Vec<(u64, String)>,
}

/// Imports what is new in a history file since the last import of the same
/// path and format (a growing RADIUS detail file is tailed this way; running it
/// again imports nothing twice). `zone` is the zone of times written without one.
pub fn import_history_file(
    store: &dyn DeskStore,
    path: &std::path::Path,
    format: HistoryFormat,
    zone: crate::time::FixedOffset,
) -> Result<FileImport> {
    let source = format!("{}:{}", format.as_str(), path.display());
    let bytes =
        std::fs::read(path).map_err(|e| DeskError::Invalid(format!("{}: {e}", path.display())))?;
    let stored = store.import_offset(&source)?;
    let restarted = stored > bytes.len() as u64;
    let from = if restarted { 0 } else { stored };
    let batch = parse_history(&bytes, from, format, zone);
    let summary = store.import_batch(&source, &batch)?;
    Ok(FileImport {
        from_offset: from,
        to_offset: batch.next_offset,
        restarted,
        summary,
        rejected: batch.rejected,
    })
}

/// Imports one whole history document given as bytes (an upload over the HTTP API),
/// under `source`. Unlike [`import_history_file`] nothing is tailed: every call reads
/// the document from its start (intervals are upserted by key, so the same document
/// again changes nothing); an incomplete last RADIUS record is left out and shows as
/// `to_offset` short of the document's length. A document with records but none
/// readable writes nothing (`summary.upserted == 0`, `rejected` says why).
pub fn import_history_bytes(
    store: &dyn DeskStore,
    source: &str,
    bytes: &[u8],
    format: HistoryFormat,
    zone: crate::time::FixedOffset,
) -> Result<FileImport> {
    let batch = parse_history(bytes, 0, format, zone);
    if batch.intervals.is_empty() && batch.nas_resets.is_empty() && !batch.rejected.is_empty() {
        // Nothing readable: not the format named. Nothing is written, not even an offset.
        return Ok(FileImport {
            from_offset: 0,
            to_offset: 0,
            restarted: false,
            summary: crate::store::ImportSummary {
                upserted: 0,
                sessions_closed_by_nas_reset: 0,
                rejected: batch.rejected.len(),
            },
            rejected: batch.rejected,
        });
    }
    let summary = store.import_batch(&format!("{}:{source}", format.as_str()), &batch)?;
    Ok(FileImport {
        from_offset: 0,
        to_offset: batch.next_offset,
        restarted: false,
        summary,
        rejected: batch.rejected,
    })
}

/// The records of `bytes[from..]` (`bytes` is the whole file: a Kea lease file
/// resumed mid-file needs its header line).
fn parse_history(
    bytes: &[u8],
    from: u64,
    format: HistoryFormat,
    zone: crate::time::FixedOffset,
) -> crate::history::ImportBatch {
    use crate::history::{parse_cgnat, parse_kea_leases, parse_radius_detail, parse_static};
    let chunk = &bytes[(from as usize).min(bytes.len())..];
    match format {
        HistoryFormat::RadiusDetail => parse_radius_detail(chunk, from, zone),
        HistoryFormat::KeaCsv if from > 0 => {
            // Resuming mid-file: the parser needs the file's header line.
            let header_end = bytes.iter().position(|b| *b == b'\n').map_or(0, |i| i + 1);
            let mut with_header = bytes[..header_end].to_vec();
            with_header.extend_from_slice(chunk);
            parse_kea_leases(&with_header, from - header_end as u64)
        }
        HistoryFormat::KeaCsv => parse_kea_leases(chunk, 0),
        HistoryFormat::Static | HistoryFormat::Cgnat => {
            // Small provisioning files: read whole each time (idempotent by key).
            let text = String::from_utf8_lossy(bytes);
            let mut batch = if format == HistoryFormat::Static {
                parse_static(&text)
            } else {
                parse_cgnat(&text)
            };
            batch.next_offset = bytes.len() as u64;
            batch
        }
    }
}
