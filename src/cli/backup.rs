//! `mandate backup`: a consistent copy of the SQLite database, with its PIN secret.

use std::os::unix::fs::PermissionsExt;

use crate::cli::CliError;
use crate::settings::Settings;

/// `mandate backup FILE`.
pub async fn run(settings: &Settings, file: &std::path::Path) -> Result<(), CliError> {
    let Some(database) = settings.sqlite_file() else {
        return Err(CliError::Usage(
            "mandate backup copies a SQLite database; back PostgreSQL up with pg_dump (or your \
             service's backups), and keep the PIN secret with the dump"
                .into(),
        ));
    };
    // Nothing is created or migrated here: a backup run against the wrong file must not make
    // an empty database and a new secret, and report success.
    if !database.exists() {
        return Err(CliError::Usage(format!(
            "there is no SQLite database at {}: nothing to back up (check DATABASE_URL and the \
             working directory)",
            database.display()
        )));
    }
    if settings.pin_secret.is_none()
        && let Some(path) = settings.pin_secret_path()
        && !path.exists()
    {
        return Err(CliError::Usage(format!(
            "the PIN secret file {} is missing: a copy without its secret could not be read",
            path.display()
        )));
    }
    let secret_file = crate::settings::beside(file, ".secret");
    for path in [file, &secret_file] {
        if path.exists() {
            return Err(CliError::Usage(format!(
                "{} exists: name a new file",
                path.display()
            )));
        }
    }
    let secret = crate::credentials::vault::load_secret(settings)?;
    let store = crate::server::open_unmigrated(settings).await?;
    // Only the secret this database was set up with is worth keeping beside the copy.
    crate::server::open_vault(settings, &store).await?;
    if let Some(copied) = store.backup_into(file).await {
        copied?;
    }
    // The copy holds what the database does: readable by its owner only, like the secret.
    std::fs::set_permissions(file, std::fs::Permissions::from_mode(0o600)).map_err(|err| {
        CliError::Failed(format!("cannot make {} private: {err}", file.display()))
    })?;
    crate::credentials::vault::write_private(&secret_file, &secret).map_err(|err| {
        CliError::Failed(format!(
            "the database was copied to {}, but its PIN secret could not be written to {}: {err}",
            file.display(),
            secret_file.display()
        ))
    })?;
    println!(
        "copied the database to {} and its PIN secret to {} (both mode 600); to restore, put \
         both back in place of the database and its secret file, with the server stopped",
        file.display(),
        secret_file.display()
    );
    Ok(())
}
