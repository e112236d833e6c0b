#!/usr/bin/env python3
"""Replays the README's console sessions against a fresh server and compares every output.

Run by .ci/readme-replay, which puts grpcurl on PATH. Every ```console block of the README is
replayed, in order, in one bash session in a new temporary directory, against one server started
there on a new SQLite database (`sqlite://mandate.db?mode=rwc`, so the README's
`cat mandate.db.bootstrap-key` finds its key) on a free port. A command is a `$ ` line with its
continuation lines (a trailing backslash, or a quote still open, as in multi-line JSON); its
expected output is the lines up to the next `$ ` line or the end of the block. `mandate` in a
command runs the server binary under test; `examples/` is the checkout's.

What a run generates is not compared: ids (UUIDs), PINs, times (RFC 3339) and dates (the expiry
of one-time customer PINs). Everything else is: revisions, status codes, messages, field names,
order, blank lines. The generated values are not ignored blindly either: each value the README
shows is tied to the live value in the same place of the first output that prints it, and from
then on must be that live value wherever the README shows it again (and two ids or PINs the
README shows as different must be different). Commands are run with the README's values replaced
by their live ones, so `MARIE=01a2...` assigns Marie's live id, and a command may only name an id
that an earlier output printed. The server's addresses, 127.0.0.1:50051 (gRPC) and 127.0.0.1:8080
(HTTP) in the README, are replaced by the ones the server picked.

A block preceded by `<!-- replay: skip REASON -->` is not replayed (a human does not see it).

On a mismatch: a unified diff of the expected and the actual output of that command (generated
values shown as <uuid>, <pin>, <time>, <date>), the actual output, and exit status 1.
"""

import argparse
import difflib
import os
import re
import selectors
import shutil
import signal
import subprocess
import sys
import tempfile
import time

README = "README.md"  # as messages name it; --readme sets it
README_ADDRESS = "127.0.0.1:50051"
README_HTTP_ADDRESS = "127.0.0.1:8080"
COMMAND_TIMEOUT_SECS = 60
SERVER_START_TIMEOUT_SECS = 60

NOT_ALNUM_BEFORE = r"(?<![0-9A-Za-z])"
NOT_ALNUM_AFTER = r"(?![0-9A-Za-z])"
PIN_SYMBOL = "[0-9A-HJKMNP-TV-Z]"  # Crockford base32, as crates/domain/src/pin.rs
GENERATED = re.compile(
    NOT_ALNUM_BEFORE
    + "(?:"
    + r"(?P<uuid>[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})"
    + r"|(?P<time>\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:Z|[+-]\d{2}:\d{2}))"
    + r"|(?P<date>\d{4}-\d{2}-\d{2})"
    + f"|(?P<pin>{PIN_SYMBOL}{{4}}-{PIN_SYMBOL}{{4}}-{PIN_SYMBOL}{{2}})"
    + ")"
    + NOT_ALNUM_AFTER
)
# A PIN as a person types it in a command: any case, hyphens or spaces (README step 3).
TYPED_PIN = re.compile(
    NOT_ALNUM_BEFORE + r"[0-9A-Za-z]{4}[- ]?[0-9A-Za-z]{4}[- ]?[0-9A-Za-z]{2}" + NOT_ALNUM_AFTER
)
SKIP_MARKER = re.compile(r"^<!--\s*replay:\s*skip\b.*-->\s*$")


class Mismatch(Exception):
    pass


# ------------------------------------------------------------------------------------------
# The README's console blocks


class Command:
    def __init__(self, line_no, text, expected):
        self.line_no = line_no  # of the `$ ` line, 1-based
        self.text = text  # without the `$ ` prompt; continuation lines included
        self.expected = expected  # the expected output's lines


def is_complete(text):
    """Whether bash would run `text` as it is, rather than read another line for it."""
    if text.endswith("\\"):
        return False
    check = subprocess.run(["bash", "-n", "-c", text], capture_output=True, text=True)
    return "unexpected end of file" not in check.stderr and "unexpected EOF" not in check.stderr


def console_blocks(readme_lines):
    """Yields (first line number, lines, skipped) for each ```console block."""
    i = 0
    while i < len(readme_lines):
        if readme_lines[i].strip() == "```console":
            start = i
            j = i - 1
            while j >= 0 and readme_lines[j].strip() == "":
                j -= 1
            skipped = j >= 0 and bool(SKIP_MARKER.match(readme_lines[j].strip()))
            i += 1
            lines = []
            while i < len(readme_lines) and readme_lines[i].strip() != "```":
                lines.append(readme_lines[i])
                i += 1
            if i == len(readme_lines):
                raise SystemExit(f"{README}:{start + 1}: a console block is never closed")
            yield start + 2, lines, skipped
        i += 1


def parse_block(first_line_no, lines):
    commands = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if not line.startswith("$ "):
            raise SystemExit(
                f"{README}:{first_line_no + i}: a console block must begin with a `$ ` command"
            )
        line_no = first_line_no + i
        text = line[2:]
        i += 1
        while not is_complete(text):
            if i == len(lines):
                raise SystemExit(f"{README}:{line_no}: the command is never completed")
            text += "\n" + lines[i]
            i += 1
        expected = []
        while i < len(lines) and not lines[i].startswith("$ "):
            expected.append(lines[i])
            i += 1
        commands.append(Command(line_no, text, expected))
    return commands


# ------------------------------------------------------------------------------------------
# Generated values: the README's, tied to the live ones


def canonical(kind, value):
    if kind == "uuid":
        return value.lower()
    if kind == "pin":
        return re.sub("[- ]", "", value).upper()
    return value


def in_same_form(template, value):
    """`value` (a live id or PIN) in the case and with the separators of `template`."""
    symbols = iter(re.sub("[- ]", "", value))
    out = []
    for c in template:
        if c.isalnum():
            live = next(symbols)
            out.append(live.lower() if c.islower() else live.upper())
        else:
            out.append(c)
    return "".join(out)


class Values:
    def __init__(self):
        self.live = {}  # (kind, canonical README value) -> live value
        self.readme = {}  # (kind, canonical live value) -> README value, for ids and PINs

    def tie(self, kind, readme_value, live_value, where):
        key = (kind, canonical(kind, readme_value))
        known = self.live.get(key)
        if known is not None:
            if canonical(kind, known) != canonical(kind, live_value):
                raise Mismatch(
                    f"{where}: the README shows {kind} {readme_value} here as it did before, but the "
                    f"server printed {live_value} here and {known} before"
                )
            return
        if kind in ("uuid", "pin"):
            other = self.readme.get((kind, canonical(kind, live_value)))
            if other is not None and canonical(kind, other) != key[1]:
                raise Mismatch(
                    f"{where}: the README shows two different {kind}s, {other} and {readme_value}, "
                    f"where the server printed the same one, {live_value}"
                )
            self.readme[(kind, canonical(kind, live_value))] = readme_value
        self.live[key] = live_value

    def command(self, text, addresses, where):
        """The command to run: the README's generated values replaced by the live ones."""

        def generated(m):
            kind = m.lastgroup
            live = self.live.get((kind, canonical(kind, m.group(0))))
            if live is None:
                if kind == "uuid":
                    raise Mismatch(
                        f"{where}: the command names the id {m.group(0)}, which no earlier output printed"
                    )
                return m.group(0)  # a time or a PIN the README made up (a mistyped PIN, say)
            return in_same_form(m.group(0), live) if kind in ("uuid", "pin") else live

        def typed_pin(m):
            live = self.live.get(("pin", canonical("pin", m.group(0))))
            return in_same_form(m.group(0), live) if live else m.group(0)

        text = GENERATED.sub(generated, text)
        text = TYPED_PIN.sub(typed_pin, text)
        for readme, live in addresses.items():
            text = text.replace(readme, live)
        return text


def masked(text):
    return GENERATED.sub(lambda m: f"<{m.lastgroup}>", text)


def compare(command, actual, values, where):
    expected = "\n".join(command.expected)
    if masked(expected) != masked(actual):
        diff = difflib.unified_diff(
            masked(expected).split("\n"),
            masked(actual).split("\n"),
            fromfile=f"{README}:{command.line_no} (expected)",
            tofile="actual",
            lineterm="",
        )
        raise Mismatch(
            f"{where}: the output differs from the README's"
            + " (ids, PINs, times and dates shown as <uuid>, <pin>, <time>, <date>):\n"
            + "\n".join(diff)
            + "\n--- the actual output, as printed:\n"
            + actual
        )
    for e, a in zip(GENERATED.finditer(expected), GENERATED.finditer(actual)):
        values.tie(e.lastgroup, e.group(0), a.group(0), where)


# ------------------------------------------------------------------------------------------
# The server and the shell session


def plain_environment(**extra):
    """The environment of someone following the README: none of the server's settings (a
    DATABASE_URL or MANDATE_* of the CI would point `mandate import-legacy` elsewhere)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "RUST_LOG") and not k.startswith("MANDATE_")
    }
    env.update(NO_COLOR="1", **extra)
    return env


def start_server(binary, workdir):
    log = open(os.path.join(workdir, "server.log"), "w")
    env = plain_environment()
    server = subprocess.Popen(
        [
            binary,
            "--listen",
            "127.0.0.1:0",
            "--metrics-listen",
            "127.0.0.1:0",
            "--probe-listen",
            "127.0.0.1:0",
            "--http-listen",
            "127.0.0.1:0",
            "--log-format",
            "text",
            "--database-url",
            "sqlite://mandate.db?mode=rwc",
        ],
        cwd=workdir,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + SERVER_START_TIMEOUT_SECS
    serving = re.compile(r"serving mandate\.v1 address=(\S+)")
    http = re.compile(r"serving the HTTP/JSON API and gRPC-Web address=(\S+)")
    while time.monotonic() < deadline:
        with open(os.path.join(workdir, "server.log")) as f:
            text = f.read()
        m, h = serving.search(text), http.search(text)
        if m and h:
            return server, {README_ADDRESS: m.group(1), README_HTTP_ADDRESS: h.group(1)}
        if server.poll() is not None:
            break
        time.sleep(0.05)
    raise Mismatch(
        "the server did not start (it logs `serving mandate.v1 address=...` and `serving the "
        "HTTP/JSON API and gRPC-Web address=...`)"
    )


def stop(process, grace_secs):
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(grace_secs)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


class Shell:
    """One bash session; each command is sourced from a file, so its assignments persist."""

    def __init__(self, workdir, binary):
        self.workdir = workdir
        self.count = 0
        self.sentinel = f"__readme_replay_{os.getpid()}_{time.time_ns()}__"
        self.bash = subprocess.Popen(
            ["bash", "--noprofile", "--norc"],
            cwd=workdir,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=plain_environment(MANDATE_BIN=binary),
            start_new_session=True,
        )
        # `mandate` in the README is the binary under test.
        self._send('mandate() { "$MANDATE_BIN" "$@"; }\n')
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.bash.stdout, selectors.EVENT_READ)
        self.pending = b""

    def _send(self, text):
        self.bash.stdin.write(text.encode())
        self.bash.stdin.flush()

    def run(self, text, where):
        self.count += 1
        script = os.path.join(self.workdir, f".replay-{self.count}.sh")
        with open(script, "w") as f:
            f.write(text + "\n")
        # The command's stdin is not the session's script; its output ends with a newline of
        # ours, so that the sentinel begins a line even after output without one.
        self._send(f"source {script} </dev/null 2>&1; printf '\\n{self.sentinel} %d\\n' $?\n")
        end = re.compile(rb"\n" + self.sentinel.encode() + rb" (\d+)\n")
        deadline = time.monotonic() + COMMAND_TIMEOUT_SECS
        while True:
            m = end.search(self.pending)
            if m:
                output = self.pending[: m.start()]
                if output.endswith(b"\n"):  # the README's block shows the lines, not their ends
                    output = output[:-1]
                self.pending = self.pending[m.end() :]
                os.remove(script)
                return output.decode(errors="replace"), int(m.group(1))
            left = deadline - time.monotonic()
            if left <= 0:
                raise Mismatch(f"{where}: the command did not finish within {COMMAND_TIMEOUT_SECS} s")
            if self.selector.select(left):
                chunk = os.read(self.bash.stdout.fileno(), 65536)
                if not chunk:
                    raise Mismatch(f"{where}: the shell session ended (an `exit` in the command?)")
                self.pending += chunk

    def close(self):
        if self.bash.poll() is None:
            try:
                os.killpg(self.bash.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        self.bash.wait()


# ------------------------------------------------------------------------------------------


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--readme", default="README.md")
    parser.add_argument("--bin", required=True, help="the server binary")
    parser.add_argument("--examples", default="examples", help="the checkout's examples/")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument(
        "--keep-going",
        action="store_true",
        help="report every mismatch, not only the first (later ones may follow from it)",
    )
    args = parser.parse_args()

    global README
    README = args.readme
    binary = os.path.abspath(args.bin)
    if not os.access(binary, os.X_OK):
        raise SystemExit(f"readme-replay: no server binary at {binary} (build it: cargo build)")
    with open(args.readme) as f:
        readme_lines = f.read().split("\n")

    commands, skipped = [], []
    for first_line_no, lines, skip in console_blocks(readme_lines):
        if skip:
            skipped.append(first_line_no - 1)
        else:
            commands.extend(parse_block(first_line_no, lines))

    # SIGTERM (CI's timeout, say) unwinds like Ctrl-C, through the `finally` that stops both.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    workdir = tempfile.mkdtemp(prefix="readme-replay.")
    os.symlink(os.path.abspath(args.examples), os.path.join(workdir, "examples"))
    server = shell = None
    started = time.monotonic()
    try:
        server, addresses = start_server(binary, workdir)
        shell = Shell(workdir, binary)
        values = Values()
        mismatches = 0
        for command in commands:
            where = f"{README}:{command.line_no}"
            try:
                text = values.command(command.text, addresses, where)
                output, _status = shell.run(text, where)
                if server.poll() is not None:
                    raise Mismatch(f"{where}: the server exited during the command")
                for readme, live in addresses.items():
                    output = output.replace(live, readme)
                compare(command, output, values, where)
            except Mismatch as e:
                if not args.keep_going:
                    raise
                print(f"readme-replay: {e}\n", file=sys.stderr)
                mismatches += 1
        if mismatches:
            raise Mismatch(f"{mismatches} of {len(commands)} commands did not answer as in the README")
        print(
            f"readme-replay: {len(commands)} commands in "
            f"{sum(1 for _ in console_blocks(readme_lines)) - len(skipped)} console blocks "
            f"replayed, every output as in the README ({time.monotonic() - started:.1f} s)"
            + (f"; blocks skipped by marker at lines {skipped}" if skipped else "")
        )
        return 0
    except Mismatch as e:
        print(f"readme-replay: {e}", file=sys.stderr)
        log = os.path.join(workdir, "server.log")
        if os.path.exists(log):
            with open(log) as f:
                tail = f.read().split("\n")[-20:]
            print("--- the server's log, last lines:\n" + "\n".join(tail), file=sys.stderr)
        return 1
    finally:
        if shell is not None:
            shell.close()
        stop(server, 15)
        if args.keep:
            print(f"readme-replay: kept {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
