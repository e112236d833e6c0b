//! `mandate import-legacy`: reads the previous permit system's export (CSV), imports what earlier
//! runs did not, and writes the new PINs once, to a mail-merge file for the city's letters.
//! `docs/legacy-import.md` describes the files.

use std::collections::{HashMap, HashSet};
use std::fs::{self, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use mandate_domain::application::parse_application_id;
use mandate_domain::contractor::{ContractorDetails, RawAddress, RawContact, RawDetails};
use mandate_domain::legacy::{LegacyCustomer, parse_legacy_id};
use mandate_domain::pin::Pin;
use mandate_store::{Actor, ImportOutcome, LegacyAccount, LegacyApplication, LegacyImport, Store};

use crate::credentials::vault::PinVault;
use crate::ops::spreadsheet;

/// The columns of each file, in any order; other columns are ignored.
pub const ACCOUNT_COLUMNS: [&str; 10] = [
    "legacy_contractor_id",
    "business_name",
    "contact_name",
    "email",
    "phone",
    "street",
    "city",
    "province",
    "postal_code",
    "country",
];
pub const CUSTOMER_COLUMNS: [&str; 3] = ["legacy_customer_id", "name", "email"];
pub const APPLICATION_COLUMNS: [&str; 3] = [
    "application_id",
    "legacy_contractor_id",
    "legacy_customer_id",
];

/// What to import, and where the PINs go.
pub struct ImportFiles<'a> {
    pub accounts: Option<&'a Path>,
    pub customers: Option<&'a Path>,
    pub applications: Option<&'a Path>,
    pub mail_merge: &'a Path,
    /// Import nothing when any row is bad.
    pub strict: bool,
    pub customer_pin_expire_time: DateTime<Utc>,
}

/// A row that was not imported, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRow {
    pub file: String,
    /// The line in the file (the header is line 1).
    pub line: u64,
    pub reason: String,
}

/// What a run did.
pub struct Summary {
    pub accounts_added: usize,
    pub accounts_existing: usize,
    pub customers_added: usize,
    pub customers_existing: usize,
    pub links_added: u64,
    pub links_existing: u64,
    pub bad: Vec<BadRow>,
    /// Whether the mail-merge file was written (only when new PINs were issued).
    pub mail_merge_written: bool,
    /// `None` when nothing changed.
    pub revision: Option<i64>,
    /// True when `--strict` refused the run because of bad rows.
    pub refused: bool,
}

/// Why a run could not be made at all.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{0}")]
    File(String),
    #[error(transparent)]
    Store(#[from] mandate_store::Error),
}

/// Reads, checks and imports the files.
pub async fn import(
    store: &Store,
    vault: &PinVault,
    files: &ImportFiles<'_>,
    progress: &mut dyn FnMut(&'static str, usize, usize),
) -> Result<Summary, ImportError> {
    if files.mail_merge.exists() {
        return Err(ImportError::File(format!(
            "{} exists: a mail-merge file is written once and never overwritten (it may hold \
             PINs not mailed yet); name a new file",
            files.mail_merge.display()
        )));
    }
    let mut bad = Vec::new();
    let accounts = match files.accounts {
        Some(path) => read_accounts(path, &mut bad)?,
        None => Vec::new(),
    };
    let customers = match files.customers {
        Some(path) => read_customers(path, &mut bad)?,
        None => Vec::new(),
    };
    let (applications, lines) = match files.applications {
        Some(path) => read_applications(path, &mut bad)?,
        None => (Vec::new(), Vec::new()),
    };
    let applications_file = files
        .applications
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let strict = files.strict;
    let refuse_bad = strict && !bad.is_empty();
    let batch = LegacyImport {
        accounts,
        customers,
        applications,
        customer_pin_expire_time: files.customer_pin_expire_time,
    };
    let staging = staging_path(files.mail_merge)?;
    let actor = Actor {
        customer_id: None,
        client: "mandate-import-legacy".to_owned(),
    };
    let result = store
        .import_legacy(
            &actor,
            batch,
            |id| vault.account_pin(id),
            || vault.customer_pin(),
            |outcome: &ImportOutcome<Pin>| {
                if refuse_bad || (strict && !outcome.rejected.is_empty()) {
                    return Err(mandate_store::Error::Internal(STRICT_REFUSAL.into()));
                }
                if outcome.accounts.is_empty() && outcome.customers.is_empty() {
                    return Ok(());
                }
                write_mail_merge(&staging, outcome, files.customer_pin_expire_time)
                    .map_err(mandate_store::Error::Internal)
            },
            progress,
        )
        .await;
    let outcome = match result {
        Ok(outcome) => outcome,
        Err(mandate_store::Error::Internal(reason)) if reason == STRICT_REFUSAL => {
            let _ = fs::remove_file(&staging);
            return Ok(Summary {
                accounts_added: 0,
                accounts_existing: 0,
                customers_added: 0,
                customers_existing: 0,
                links_added: 0,
                links_existing: 0,
                bad,
                mail_merge_written: false,
                revision: None,
                refused: true,
            });
        }
        Err(err) => {
            let _ = fs::remove_file(&staging);
            return Err(err.into());
        }
    };
    for (index, reason) in &outcome.rejected {
        bad.push(BadRow {
            file: applications_file.clone(),
            line: lines.get(*index).copied().unwrap_or_default(),
            reason: reason.clone(),
        });
    }
    let written = !outcome.accounts.is_empty() || !outcome.customers.is_empty();
    if written {
        publish(&staging, files.mail_merge).map_err(|err| {
            ImportError::File(format!(
                "the import is committed, but the mail-merge file could not be put in place: \
                 its PINs are in {} (mode 600): {err}",
                staging.display()
            ))
        })?;
    }
    bad.sort_by(|a, b| (&a.file, a.line).cmp(&(&b.file, b.line)));
    Ok(Summary {
        accounts_added: outcome.accounts.len(),
        accounts_existing: outcome.accounts_existing,
        customers_added: outcome.customers.len(),
        customers_existing: outcome.customers_existing,
        links_added: outcome.links_added,
        links_existing: outcome.links_existing,
        bad,
        mail_merge_written: written,
        revision: outcome.revision,
        refused: false,
    })
}

/// What `before_commit` answers to stop a strict run with bad rows.
const STRICT_REFUSAL: &str = "--strict: bad rows, nothing imported";

/// Where the mail-merge file is written before the commit: beside it, under a hidden name of
/// this run's own (its process id and 64 random bits), so that a run never writes, publishes
/// or deletes another run's file.
fn staging_path(final_path: &Path) -> Result<PathBuf, ImportError> {
    let name = final_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut random = [0u8; 8];
    getrandom::fill(&mut random)
        .map_err(|err| ImportError::File(format!("no random name for the staging file: {err}")))?;
    Ok(final_path.with_file_name(format!(
        ".{name}.{}-{}.partial",
        std::process::id(),
        hex::encode(random)
    )))
}

/// Puts the staging file in place under `final_path`, never replacing a file there: a hard link
/// fails when the name is taken (where a rename would silently replace another run's letters),
/// and only then is the staging name removed. On failure the staging file stays, with its PINs.
fn publish(staging: &Path, final_path: &Path) -> std::io::Result<()> {
    fs::hard_link(staging, final_path).map_err(|err| {
        if err.kind() == std::io::ErrorKind::AlreadyExists {
            std::io::Error::new(
                err.kind(),
                format!(
                    "{} was written meanwhile, by another run: it is kept as it is",
                    final_path.display()
                ),
            )
        } else {
            err
        }
    })?;
    fs::remove_file(staging)
}

/// Writes every new PIN, readable only by its owner, and syncs it to disk.
fn write_mail_merge(
    path: &Path,
    outcome: &ImportOutcome<Pin>,
    customer_pin_expire_time: DateTime<Utc>,
) -> Result<(), String> {
    let failure = |err: &dyn std::fmt::Display| format!("cannot write {}: {err}", path.display());
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| failure(&e))?;
    let mut out = csv::Writer::from_writer(file);
    out.write_record([
        "kind",
        "legacy_id",
        "name",
        "contact_name",
        "email",
        "street",
        "city",
        "province",
        "postal_code",
        "country",
        "pin",
        "pin_expires",
    ])
    .map_err(|e| failure(&e))?;
    for (account, _, pin) in &outcome.accounts {
        let d = &account.details;
        let a = &d.mailing_address;
        out.write_record(spreadsheet::row([
            "contractor",
            &account.legacy_contractor_id,
            &d.business_name,
            &d.contact.name,
            &d.contact.email,
            &a.street,
            &a.city,
            &a.province,
            &a.postal_code,
            &a.country,
            &pin.expose_formatted(),
            "",
        ]))
        .map_err(|e| failure(&e))?;
    }
    let expires = customer_pin_expire_time.format("%Y-%m-%d").to_string();
    for (record, pin) in &outcome.customers {
        out.write_record(spreadsheet::row([
            "customer",
            &record.legacy_customer_id,
            &record.display_name,
            "",
            &record.email,
            "",
            "",
            "",
            "",
            "",
            &pin.expose_formatted(),
            &expires,
        ]))
        .map_err(|e| failure(&e))?;
    }
    let file = out.into_inner().map_err(|e| failure(&e))?;
    file.sync_all().map_err(|e| failure(&e))
}

/// A CSV row, from column name to value.
type Row = HashMap<String, String>;

/// The rows of a CSV file, each with its line; the header must hold `columns`.
fn rows(path: &Path, columns: &[&str]) -> Result<Vec<(u64, Row)>, ImportError> {
    let failure = |err: &dyn std::fmt::Display| {
        ImportError::File(format!("cannot read {}: {err}", path.display()))
    };
    let bytes = fs::read(path).map_err(|e| failure(&e))?;
    // Lines are counted here, from each record's byte offset: the csv crate's own count is one
    // short for files with CRLF line endings (RFC 4180's own), whose records it starts at the
    // `\n` of the CRLF before them, which is why that byte is counted too.
    let (mut counted_to, mut newlines) = (0, 0u64);
    let mut line_of = |byte: u64| {
        let end = usize::try_from(byte)
            .unwrap_or(usize::MAX)
            .saturating_add(1)
            .min(bytes.len());
        if end > counted_to {
            newlines += bytes[counted_to..end]
                .iter()
                .filter(|b| **b == b'\n')
                .count() as u64;
            counted_to = end;
        }
        1 + newlines
    };
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .from_reader(bytes.as_slice());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| failure(&e))?
        .iter()
        .map(|h| h.trim().to_ascii_lowercase())
        .collect();
    let missing: Vec<&str> = columns
        .iter()
        .copied()
        .filter(|c| !header.iter().any(|h| h == c))
        .collect();
    if !missing.is_empty() {
        return Err(ImportError::File(format!(
            "{}: the header lacks the column(s) {}",
            path.display(),
            missing.join(", ")
        )));
    }
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| failure(&e))?;
        let line = record.position().map_or(0, |at| line_of(at.byte()));
        let values = header
            .iter()
            .cloned()
            .zip(record.iter().map(str::to_owned))
            .collect();
        out.push((line, values));
    }
    Ok(out)
}

fn value<'a>(row: &'a Row, column: &str) -> &'a str {
    row.get(column).map_or("", String::as_str)
}

fn bad_row(path: &Path, line: u64, err: impl std::fmt::Display) -> BadRow {
    BadRow {
        file: path.display().to_string(),
        line,
        reason: err.to_string(),
    }
}

fn read_accounts(path: &Path, bad: &mut Vec<BadRow>) -> Result<Vec<LegacyAccount>, ImportError> {
    let mut seen = HashSet::new();
    let mut accounts = Vec::new();
    for (line, row) in rows(path, &ACCOUNT_COLUMNS)? {
        let id = match parse_legacy_id("legacy_contractor_id", value(&row, "legacy_contractor_id"))
        {
            Ok(id) => id,
            Err(err) => {
                bad.push(bad_row(path, line, err));
                continue;
            }
        };
        let raw = RawDetails {
            business_name: value(&row, "business_name").to_owned(),
            contact: Some(RawContact {
                name: value(&row, "contact_name").to_owned(),
                phone: value(&row, "phone").to_owned(),
                email: value(&row, "email").to_owned(),
            }),
            mailing_address: Some(RawAddress {
                street: value(&row, "street").to_owned(),
                city: value(&row, "city").to_owned(),
                province: value(&row, "province").to_owned(),
                postal_code: value(&row, "postal_code").to_owned(),
                country: value(&row, "country").to_owned(),
            }),
        };
        match ContractorDetails::parse(&raw) {
            Ok(_) if !seen.insert(id.clone()) => bad.push(bad_row(
                path,
                line,
                format!("legacy_contractor_id {id} appears on an earlier line"),
            )),
            Ok(details) => accounts.push(LegacyAccount {
                legacy_contractor_id: id,
                details,
            }),
            Err(err) => bad.push(bad_row(path, line, err)),
        }
    }
    Ok(accounts)
}

fn read_customers(path: &Path, bad: &mut Vec<BadRow>) -> Result<Vec<LegacyCustomer>, ImportError> {
    let mut seen = HashSet::new();
    let mut customers = Vec::new();
    for (line, row) in rows(path, &CUSTOMER_COLUMNS)? {
        match LegacyCustomer::parse(
            value(&row, "legacy_customer_id"),
            value(&row, "name"),
            value(&row, "email"),
        ) {
            Ok(record) if !seen.insert(record.legacy_customer_id.clone()) => bad.push(bad_row(
                path,
                line,
                format!(
                    "legacy_customer_id {} appears on an earlier line",
                    record.legacy_customer_id
                ),
            )),
            Ok(record) => customers.push(record),
            Err(err) => bad.push(bad_row(path, line, err)),
        }
    }
    Ok(customers)
}

/// The applications, and the line of each.
fn read_applications(
    path: &Path,
    bad: &mut Vec<BadRow>,
) -> Result<(Vec<LegacyApplication>, Vec<u64>), ImportError> {
    let mut applications = Vec::new();
    let mut lines = Vec::new();
    for (line, row) in rows(path, &APPLICATION_COLUMNS)? {
        let optional = |column: &str| {
            let text = value(&row, column).trim();
            if text.is_empty() {
                Ok(None)
            } else {
                parse_legacy_id(column, text).map(Some)
            }
        };
        let parsed = (
            parse_application_id("application_id", value(&row, "application_id")),
            optional("legacy_contractor_id"),
            optional("legacy_customer_id"),
        );
        match parsed {
            (Ok(_), Ok(None), Ok(None)) => bad.push(bad_row(
                path,
                line,
                "names neither a legacy_contractor_id nor a legacy_customer_id",
            )),
            (Ok(application_id), Ok(legacy_contractor_id), Ok(legacy_customer_id)) => {
                applications.push(LegacyApplication {
                    application_id,
                    legacy_contractor_id,
                    legacy_customer_id,
                });
                lines.push(line);
            }
            (a, b, c) => bad.push(bad_row(
                path,
                line,
                mandate_domain::Error::all_invalid(
                    [a.err(), b.err(), c.err()].into_iter().flatten(),
                ),
            )),
        }
    }
    Ok((applications, lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publishing_never_replaces_a_file_another_run_put_in_place() {
        let dir = std::env::temp_dir().join(format!("mandate-publish-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let letters = dir.join("letters.csv");
        let (first, second) = (
            staging_path(&letters).unwrap(),
            staging_path(&letters).unwrap(),
        );
        assert_ne!(first, second, "each run stages under a name of its own");
        fs::write(&first, "the first run's PINs").unwrap();
        fs::write(&second, "the second run's PINs").unwrap();
        publish(&first, &letters).unwrap();
        let refused = publish(&second, &letters).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(
            fs::read_to_string(&letters).unwrap(),
            "the first run's PINs"
        );
        assert!(!first.exists(), "a published staging name is removed");
        assert_eq!(
            fs::read_to_string(&second).unwrap(),
            "the second run's PINs",
            "the refused run keeps its PINs"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn rows_are_numbered_by_their_line_whatever_the_line_ending() {
        let dir = std::env::temp_dir().join(format!("mandate-lines-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        for ending in ["\n", "\r\n"] {
            let file = dir.join("rows.csv");
            let text = ["a,b", "1,2", "3,4", "5,6", "7,8"].join(ending) + ending;
            fs::write(&file, text).unwrap();
            let lines: Vec<u64> = rows(&file, &["a", "b"])
                .unwrap()
                .into_iter()
                .map(|(line, _)| line)
                .collect();
            assert_eq!(lines, [2, 3, 4, 5], "line ending {ending:?}");
        }
        fs::remove_dir_all(&dir).unwrap();
    }
}
