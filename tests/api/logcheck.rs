//! Every in-process server of the suite logs at `trace` level into a scanner that looks for
//! secrets in each line: an API key, a 256-bit hex secret (the PIN secret), or a PIN, typed or
//! formatted. A finding fails the next test server to stop, naming the line. `TEST_LOG=1` also
//! prints the log. rustls logs at `info`: below, it prints handshake messages, whose
//! public random nonces look like hex secrets.

use std::io::{self, Write};
use std::sync::{Mutex, OnceLock, PoisonError};

use mandate::credentials::keys::KEY_PREFIX;
use mandate_domain::pin::{PIN_LEN, Pin};
use tracing_subscriber::fmt::MakeWriter;

/// The lines in which a secret was found, with what was found.
static FINDINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// Installs the scanning log for the whole test binary (once).
pub fn install() {
    static INSTALLED: OnceLock<()> = OnceLock::new();
    INSTALLED.get_or_init(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(
                "trace,h2=debug,rustls=info",
            ))
            .with_ansi(false)
            .with_writer(Scanner {
                echo: std::env::var_os("TEST_LOG").is_some(),
            })
            .try_init();
    });
}

/// Panics, listing them, if any log line so far held a secret.
pub fn assert_no_secrets_logged() {
    let findings = FINDINGS.lock().unwrap_or_else(PoisonError::into_inner);
    assert!(
        findings.is_empty(),
        "secrets reached the log:\n{}",
        findings.join("\n")
    );
}

/// What the log is written to: a line buffer per event.
#[derive(Clone, Copy)]
struct Scanner {
    echo: bool,
}

impl<'a> MakeWriter<'a> for Scanner {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line {
            text: Vec::new(),
            echo: self.echo,
        }
    }
}

/// One event's text, scanned when the event is written out.
struct Line {
    text: Vec<u8>,
    echo: bool,
}

impl Write for Line {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.text.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.text);
        if self.echo {
            eprint!("{text}");
        }
        if let Some(secret) = secret_in(&text) {
            FINDINGS
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(format!("{secret}: {}", text.trim_end()));
        }
    }
}

/// What kind of secret `line` holds, if any.
pub fn secret_in(line: &str) -> Option<&'static str> {
    if line.contains(KEY_PREFIX)
        && line
            .split(KEY_PREFIX)
            .skip(1)
            .any(|rest| hex_run(rest) >= 64)
    {
        return Some("an API key");
    }
    let bytes = line.as_bytes();
    let mut start = 0;
    while start < bytes.len() {
        let run = hex_run(&line[start..]);
        if run >= 64 {
            return Some("a 256-bit hex secret");
        }
        start += run.max(1);
        while start < bytes.len() && !line.is_char_boundary(start) {
            start += 1;
        }
    }
    let words = line.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'));
    if words.into_iter().any(is_pin) {
        return Some("a PIN");
    }
    None
}

/// How many hex digits `text` starts with.
fn hex_run(text: &str) -> usize {
    text.bytes().take_while(u8::is_ascii_hexdigit).count()
}

/// Whether `word` is a PIN as Mandate shows one (`7KQ4-M9XA-2B`), or as a person types it
/// without separators (with a digit and a letter, unlike an upper-case word), with a right check
/// character.
fn is_pin(word: &str) -> bool {
    let symbols: String = word.chars().filter(|&c| c != '-').collect();
    let formatted = word.len() == PIN_LEN + 2
        && word.as_bytes().get(4) == Some(&b'-')
        && word.as_bytes().get(9) == Some(&b'-');
    let bare = word.len() == PIN_LEN
        && symbols.chars().any(|c| c.is_ascii_digit())
        && symbols.chars().any(|c| c.is_ascii_uppercase());
    (formatted || bare)
        && symbols.len() == PIN_LEN
        && symbols
            .chars()
            .all(|c| c.is_ascii_digit() || c.is_ascii_uppercase())
        && Pin::parse("pin", &symbols).is_ok()
}

#[test]
fn the_scanner_finds_keys_secrets_and_pins_and_nothing_else() {
    let key = format!("{KEY_PREFIX}{}", "ab12".repeat(16));
    assert_eq!(secret_in(&format!("key={key}")), Some("an API key"));
    assert_eq!(
        secret_in(&format!("secret {}", "5e6f".repeat(16))),
        Some("a 256-bit hex secret")
    );
    let pin = Pin::from_random(42).expose_formatted();
    assert_eq!(secret_in(&format!("pin=\"{pin}\"")), Some("a PIN"));
    assert_eq!(secret_in(&pin.replace('-', "")), Some("a PIN"));
    for innocent in [
        "customer_id=0193b0a2-7c1e-7f3a-9b2d-4e5f6a7b8c9d key_id=mdt_1a2b3c4d",
        "rpc{path=/mandate.v1.ContractorService/AssociateByPin}: code=ResourceExhausted",
        "sha256:4e5f6a7b8 PERMISSION_DENIED NOT_SERVING REFERENCES",
    ] {
        assert_eq!(secret_in(innocent), None, "{innocent}");
    }
}
