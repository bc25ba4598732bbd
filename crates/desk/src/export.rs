//! Case export for the legal team: one folder with the case, every raw
//! report, the attribution records, the audit trail, the claims, and a
//! manifest of SHA-256 hashes (`MANIFEST.sha256`, in `sha256sum -c` format).

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::case::CaseId;
use crate::store::{DeskError, DeskStore, Result, sha256_hex};
use crate::time::{FixedOffset, UnixTime, rfc3339};

/// What an export wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Export {
    pub folder: PathBuf,
    /// (relative path, SHA-256) of every file, manifest order.
    pub files: Vec<(String, String)>,
}

#[derive(Serialize)]
struct CaseFile<'a> {
    exported_at: String,
    case: &'a crate::case::Case,
    customer: Option<crate::case::Customer>,
    accounts: Vec<String>,
    ladder: crate::ladder::Ladder,
}

#[derive(Serialize)]
struct ReportFile<'a> {
    report_id: i64,
    raw_file: String,
    raw_sha256: &'a str,
    received_at: String,
    state: crate::store::ReportState,
    report: &'a crate::report::Report,
}

#[derive(Serialize)]
struct AttributionFile<'a> {
    report_id: i64,
    attribution: &'a Option<crate::attribution::Attribution>,
}

fn io(what: &Path, e: std::io::Error) -> DeskError {
    DeskError::Backend(format!("{}: {e}", what.display()))
}

/// Writes `case-ID` under `parent`. The folder appears whole or not at all
/// (written beside it, then renamed); an existing export is never overwritten.
pub fn export_case(
    store: &dyn DeskStore,
    case_id: CaseId,
    parent: &Path,
    now: UnixTime,
    zone: FixedOffset,
) -> Result<Export> {
    let case = store.case(case_id)?.ok_or(DeskError::NotFound {
        kind: "case",
        id: case_id.to_string(),
    })?;
    let folder = parent.join(format!("case-{case_id}"));
    if folder.exists() {
        return Err(DeskError::Invalid(format!(
            "{} exists already",
            folder.display()
        )));
    }
    let partial = parent.join(format!(".case-{case_id}.partial-{now}"));
    let _ = fs::remove_dir_all(&partial);
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let json = |value: &dyn erased::Json| -> Result<Vec<u8>> { value.to_json() };

    let case_file = CaseFile {
        exported_at: rfc3339(now, zone),
        case: &case,
        customer: store.customer(&case.customer)?,
        accounts: store.customer_accounts(&case.customer)?,
        ladder: store.ladder(&case.customer)?,
    };
    files.push(("case.json".into(), json(&case_file)?));

    let reports = store.case_reports(case_id)?;
    let mut attributions = Vec::new();
    for stored in &reports {
        let raw = store.raw(stored.raw_id)?.ok_or(DeskError::NotFound {
            kind: "raw report",
            id: stored.raw_id.to_string(),
        })?;
        let raw_file = format!("raw/{}.eml", raw.sha256);
        if !files.iter().any(|(name, _)| *name == raw_file) {
            files.push((raw_file.clone(), raw.bytes.clone()));
        }
        let report_file = ReportFile {
            report_id: stored.id,
            raw_file,
            raw_sha256: &raw.sha256,
            received_at: rfc3339(stored.received_at, zone),
            state: stored.state,
            report: &stored.report,
        };
        files.push((format!("reports/{}.json", stored.id), json(&report_file)?));
        attributions.push(AttributionFile {
            report_id: stored.id,
            attribution: &stored.attribution,
        });
    }
    files.push(("attribution.json".into(), json(&attributions)?));
    let audit: Vec<_> = store
        .audit(&case.customer)?
        .into_iter()
        .map(|(id, record)| serde_json::json!({ "id": id, "at_local": rfc3339(record.at, zone), "record": record }))
        .collect();
    files.push(("audit.json".into(), json(&audit)?));
    let claims: Vec<_> = store
        .claims(&case.customer)?
        .into_iter()
        .filter(|(_, c)| c.case_ids.contains(&case_id))
        .map(|(id, claim)| serde_json::json!({ "id": id, "claim": claim }))
        .collect();
    files.push(("claims.json".into(), json(&claims)?));

    let mut manifest = String::new();
    let mut listed = Vec::new();
    for (name, bytes) in &files {
        let path = partial.join(name);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
        }
        fs::write(&path, bytes).map_err(|e| io(&path, e))?;
        let hash = sha256_hex(bytes);
        manifest.push_str(&format!("{hash}  {name}\n"));
        listed.push((name.clone(), hash));
    }
    let manifest_path = partial.join("MANIFEST.sha256");
    fs::write(&manifest_path, manifest).map_err(|e| io(&manifest_path, e))?;
    fs::rename(&partial, &folder).map_err(|e| io(&folder, e))?;
    Ok(Export {
        folder,
        files: listed,
    })
}

mod erased {
    //! `serde_json` over `&dyn`, so one closure serialises any of the files.
    use crate::store::Result;

    pub trait Json {
        fn to_json(&self) -> Result<Vec<u8>>;
    }

    impl<T: serde::Serialize> Json for T {
        fn to_json(&self) -> Result<Vec<u8>> {
            let mut bytes = serde_json::to_vec_pretty(self)?;
            bytes.push(b'\n');
            Ok(bytes)
        }
    }
}
