//! The server as its own process: for faults that need one (resource limits, signals) and for
//! what it prints before it serves.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::helpers::TestDatabase;

/// A `mandate` server process, and the lines it logs.
pub struct ServerProcess {
    /// `None` once it has exited.
    child: Option<Child>,
    lines: mpsc::Receiver<String>,
    /// The lines read so far.
    seen: Vec<String>,
    /// The threads that read its output; they end when it exits.
    readers: Vec<std::thread::JoinHandle<()>>,
    pub address: SocketAddr,
}

/// How long a server process may take to start or to stop before a test gives up on it.
const PATIENCE: Duration = Duration::from_secs(60);

/// The `mandate` command with `args` and `envs`, logging plain text, ignoring SIGXFSZ (so that
/// a file-size limit makes writes fail instead of killing it, as a full disk would).
pub fn mandate_command(args: &[&str], envs: &[(&str, &str)]) -> Command {
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg("trap '' XFSZ; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_mandate"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("RUST_LOG", "info")
        .env("MANDATE_LOG_FORMAT", "text")
        .env("MANDATE_METRICS_LISTEN", "127.0.0.1:0")
        .env("MANDATE_PROBE_LISTEN", "127.0.0.1:0")
        .env("MANDATE_HTTP_LISTEN", "127.0.0.1:0")
        .env_remove("DATABASE_URL")
        .env_remove("MANDATE_PIN_SECRET")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

impl ServerProcess {
    /// Starts `mandate` on a free port over `database`, with `args`, and waits until it serves;
    /// it writes its bootstrap key where `database.key()` reads it.
    pub async fn start(database: &TestDatabase, args: &[&str]) -> Self {
        Self::start_with_log(database, args, "info").await
    }

    /// `start`, logging at `filter` (a `RUST_LOG` value).
    pub async fn start_with_log(database: &TestDatabase, args: &[&str], filter: &str) -> Self {
        Self::start_on(&database.url, &database.key_file(), args, filter).await
    }

    /// Starts `mandate` on a free port over the database at `url`, writing a bootstrap key to
    /// `key_file` if it makes one, and waits until it serves.
    pub async fn start_url(url: &str, key_file: &std::path::Path) -> Self {
        Self::start_on(url, key_file, &[], "info").await
    }

    async fn start_on(url: &str, key_file: &std::path::Path, args: &[&str], filter: &str) -> Self {
        let mut all: Vec<String> = [
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            url,
            "--bootstrap-key-file",
            &key_file.display().to_string(),
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
        all.extend(args.iter().map(|arg| (*arg).to_owned()));
        let filter = filter.to_owned();
        tokio::task::spawn_blocking(move || {
            let args: Vec<&str> = all.iter().map(String::as_str).collect();
            Self::spawn(&args, &filter)
        })
        .await
        .expect("the server process starts")
    }

    fn spawn(all: &[&str], filter: &str) -> Self {
        let mut child = mandate_command(all, &[("RUST_LOG", filter)])
            .spawn()
            .expect("start the mandate binary");
        let (sender, lines) = mpsc::channel();
        let mut readers = Vec::new();
        for output in [
            child
                .stdout
                .take()
                .map(|o| Box::new(o) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|e| Box::new(e) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let sender = sender.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(output).lines().map_while(Result::ok) {
                    if std::env::var_os("TEST_LOG").is_some() {
                        eprintln!("[server] {line}");
                    }
                    if sender.send(line).is_err() {
                        return;
                    }
                }
            }));
        }
        let mut server = Self {
            child: Some(child),
            lines,
            seen: Vec::new(),
            readers,
            address: "0.0.0.0:0".parse().expect("an address"),
        };
        let line = server
            .wait_for_line("serving mandate.v1")
            .expect("the server starts serving");
        let address = line
            .split("address=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .expect("the serving line names the address");
        server.address = address.parse().expect("a socket address");
        server
    }

    /// Where the server serves its probes, as its log says.
    pub fn probe_address(&self) -> Option<std::net::SocketAddr> {
        self.logged_address("serving the probes over HTTP")
    }

    /// The address on the line of the log that says `what`.
    fn logged_address(&self, what: &str) -> Option<std::net::SocketAddr> {
        self.seen
            .iter()
            .find(|line| line.contains(what))?
            .split("address=")
            .nth(1)?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    }

    /// Stops the server (as `stop`) and returns every line it logged.
    pub async fn whole_log_after_stop(self) -> Vec<String> {
        tokio::task::spawn_blocking(move || {
            let mut server = self;
            server.terminate();
            server.whole_log()
        })
        .await
        .expect("the server process stops")
    }

    /// The process id, for sending it signals and limits.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// The first line logged from now on that contains `text`.
    pub fn wait_for_line(&mut self, text: &str) -> Option<String> {
        let deadline = Instant::now() + PATIENCE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if line.contains(text) {
                        return Some(line);
                    }
                }
                Err(_) => return None,
            }
        }
        None
    }

    /// Every line logged since the last one read; call it once the process has exited.
    pub fn rest_of_the_log(&mut self) -> Vec<String> {
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let rest: Vec<String> = self.lines.try_iter().collect();
        self.seen.extend(rest.iter().cloned());
        rest
    }

    /// Every line the process logged, from its start; call it once the process has exited.
    pub fn whole_log(&mut self) -> Vec<String> {
        self.rest_of_the_log();
        self.seen.clone()
    }

    /// `terminate`, from async code: the wait runs on a blocking thread.
    pub async fn stop(self) -> (ExitStatus, Duration) {
        tokio::task::spawn_blocking(move || {
            let mut server = self;
            server.terminate()
        })
        .await
        .expect("the server process stops")
    }

    /// Sends SIGTERM and waits for the process to exit; returns how it exited and how long it
    /// took.
    pub fn terminate(&mut self) -> (ExitStatus, Duration) {
        let sent = Instant::now();
        let killed = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .expect("run kill");
        assert!(killed.success(), "SIGTERM was delivered");
        let mut child = self.child.take().expect("a running server");
        let (sender, exited) = mpsc::channel();
        std::thread::spawn(move || {
            let _ = sender.send(child.wait());
        });
        let status = exited
            .recv_timeout(PATIENCE)
            .expect("the server exits after SIGTERM")
            .expect("the server's exit status");
        (status, sent.elapsed())
    }

    /// Sets the largest file the process may write (`prlimit`, the soft limit), in bytes; `None`
    /// lifts it.
    pub fn limit_file_size(&self, bytes: Option<u64>) {
        let limit = bytes.map_or_else(|| "unlimited".to_owned(), |b| b.to_string());
        let status = Command::new("prlimit")
            .args([
                "--pid",
                &self.pid().to_string(),
                &format!("--fsize={limit}:unlimited"),
            ])
            .status()
            .expect("run prlimit");
        assert!(status.success(), "prlimit set the file size limit");
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
