//! Why the database could not be opened, in the operator's terms: the driver's error says what
//! failed inside it ("unable to open database file", "pool timed out"), not what to fix.

use std::fs::OpenOptions;
use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

/// The cause of a failure to open the database at `url`, as far as it can be found; `error` is
/// the driver's own account, kept at the end. Never repeats the URL's password.
pub fn database_failure(url: &str, error: &str, wait: Duration) -> String {
    let scheme = url.split_once(':').map_or("", |(scheme, _)| scheme);
    let cause = match scheme {
        "sqlite" => sqlite_failure(url),
        "postgres" | "postgresql" => postgres_failure(url, error, wait),
        _ => Some(format!(
            "DATABASE_URL (--database-url) must start with `sqlite://` or `postgres://`, not \
             `{}`",
            if scheme.is_empty() {
                "(no scheme)"
            } else {
                scheme
            }
        )),
    };
    match cause {
        Some(cause) => format!("{cause} ({error})"),
        None => error.to_owned(),
    }
}

fn sqlite_failure(url: &str) -> Option<String> {
    let file = mandate_store::sqlite_file(url)?;
    let dir = match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => Path::new(".").to_path_buf(),
    };
    if !dir.is_dir() {
        return Some(format!(
            "the directory {} of the SQLite database does not exist: create it, or name another \
             file in DATABASE_URL",
            dir.display()
        ));
    }
    if !writable(&dir) {
        return Some(format!(
            "the directory {} of the SQLite database is not writable by this user: SQLite keeps \
             its write-ahead log beside the database, and the server its PIN secret",
            dir.display()
        ));
    }
    let creates = url.contains("mode=rwc");
    if !file.exists() && !creates {
        return Some(format!(
            "the SQLite database {} does not exist, and the URL does not ask for it to be \
             created: add `?mode=rwc` to DATABASE_URL",
            file.display()
        ));
    }
    None
}

/// Whether this user can create a file in `dir` (the only test that accounts for every ACL,
/// mount option and privilege).
fn writable(dir: &Path) -> bool {
    let mut tag = [0u8; 8];
    if getrandom::fill(&mut tag).is_err() {
        return true;
    }
    let probe = dir.join(format!(".mandate-write-check-{}", hex::encode(tag)));
    let created = OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
        .is_ok();
    if created {
        let _ = std::fs::remove_file(&probe);
    }
    created
}

fn postgres_failure(url: &str, error: &str, wait: Duration) -> Option<String> {
    let (host, port, database) = postgres_target(url)?;
    if error.contains("does not exist") && error.contains(&format!("\"{database}\"")) {
        return Some(format!(
            "PostgreSQL at {host}:{port} has no database `{database}`: create it (`createdb \
             {database}`), or name an existing one in DATABASE_URL"
        ));
    }
    if error.contains("password authentication failed") {
        return Some(format!(
            "PostgreSQL at {host}:{port} refused the user and password in DATABASE_URL"
        ));
    }
    let addresses = match (host.as_str(), port).to_socket_addrs() {
        Ok(addresses) => addresses.collect::<Vec<_>>(),
        Err(err) => {
            return Some(format!(
                "the PostgreSQL host `{host}` in DATABASE_URL cannot be resolved: {err}"
            ));
        }
    };
    let reached = addresses
        .iter()
        .any(|address| TcpStream::connect_timeout(address, wait).is_ok());
    (!reached).then(|| {
        format!(
            "nothing accepts connections at {host}:{port}, the PostgreSQL server DATABASE_URL \
             names: is it running, and is that its address?"
        )
    })
}

/// Host, port and database of a `postgres://USER:PASSWORD@HOST:PORT/DATABASE?…` URL; `None`
/// when it names a Unix socket or cannot be read.
fn postgres_target(url: &str) -> Option<(String, u16, String)> {
    let rest = url.split_once("://")?.1;
    let (authority, path) = rest.split_once('/').unwrap_or((rest, ""));
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, hp)| hp);
    let database = path.split('?').next().unwrap_or_default().to_owned();
    if url.contains("host=/") {
        return None;
    }
    let (host, port) = match host_port.strip_prefix('[') {
        Some(v6) => {
            let (host, after) = v6.split_once(']')?;
            (host.to_owned(), after.strip_prefix(':'))
        }
        None => match host_port.rsplit_once(':') {
            Some((host, port)) => (host.to_owned(), Some(port)),
            None => (host_port.to_owned(), None),
        },
    };
    let port = match port {
        Some(port) => port.parse().ok()?,
        None => 5432,
    };
    let host = if host.is_empty() {
        "localhost".to_owned()
    } else {
        host
    };
    Some((host, port, database))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_url_names_its_host_port_and_database_without_its_password() {
        assert_eq!(
            postgres_target("postgres://app:s3cret@db.example:6432/permits?sslmode=require"),
            Some(("db.example".into(), 6432, "permits".into()))
        );
        assert_eq!(
            postgres_target("postgresql://[::1]/test"),
            Some(("::1".into(), 5432, "test".into()))
        );
        assert_eq!(
            postgres_target("postgres:///test?host=/run/postgresql"),
            None
        );
    }

    #[test]
    fn an_unknown_scheme_is_named() {
        let message = database_failure("mysql://x/y", "no driver", Duration::from_millis(10));
        assert!(message.contains("not `mysql`"), "{message}");
    }

    #[test]
    fn a_missing_directory_is_named() {
        let message = database_failure(
            "sqlite:///no/such/dir/mandate.db?mode=rwc",
            "unable to open database file",
            Duration::from_millis(10),
        );
        assert!(
            message.contains("the directory /no/such/dir of the SQLite database does not exist"),
            "{message}"
        );
    }
}
