//! `mandate import-legacy`: the previous permit system's export, and the mail-merge file of new
//! PINs.

use crate::cli::{CliError, progress_line};
use crate::ops::legacy::ImportFiles;
use crate::settings::Settings;

/// `mandate import-legacy …`.
pub async fn run(settings: &Settings, files: &ImportFiles<'_>) -> Result<(), CliError> {
    if files.accounts.is_none() && files.customers.is_none() && files.applications.is_none() {
        return Err(CliError::Usage(
            "name at least one of --contractors, --customers and --applications".into(),
        ));
    }
    let store = crate::server::open_store(settings).await?;
    let vault = crate::server::open_vault(settings, &store).await?;
    let mut progress = progress_line(" rows");
    let summary = crate::ops::legacy::import(&store, &vault, files, &mut progress).await?;
    for bad in &summary.bad {
        eprintln!("{}:{}: {}", bad.file, bad.line, bad.reason);
    }
    if summary.refused {
        return Err(CliError::Usage(format!(
            "--strict: {} bad row(s); nothing was imported",
            summary.bad.len()
        )));
    }
    println!(
        "accounts: {} added, {} there already\n\
         legacy customer records: {} added, {} there already\n\
         application links: {} added, {} there already\n\
         bad rows: {}",
        summary.accounts_added,
        summary.accounts_existing,
        summary.customers_added,
        summary.customers_existing,
        summary.links_added,
        summary.links_existing,
        summary.bad.len()
    );
    match (summary.mail_merge_written, summary.revision) {
        (true, Some(revision)) => println!(
            "new PINs written to {} (mode 600); revision {revision}",
            files.mail_merge.display()
        ),
        (false, Some(revision)) => println!("no new PINs; revision {revision}"),
        (_, None) => println!("nothing new: nothing changed"),
    }
    Ok(())
}
