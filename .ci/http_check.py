#!/usr/bin/env python3
"""The "no row changed by a refused call" check of .ci/http-check, and its Schemathesis hooks.

Every request Schemathesis sends (the generated test cases, and the requests its checks send of
their own, such as ignored_auth's without a key) is made between two looks at what the server
holds, with nothing else in between: Schemathesis runs with one worker, and nothing else calls
this server. Each look reads
  - the latest revision: Mandate numbers every committed change with the next revision of one
    counter (in commit order, without gaps). It is read from the database, not from the check
    cache (which may lag a commit): `GET /v1/changes:watch?afterRevision=<i64 max>` answers 400
    at once, without opening a feed, naming "the latest revision, N" it has just read. `setup`
    checks that this reads what a registration has just committed; should the message change,
    every read fails loudly rather than passing;
  - every row of the SQLite database's tables, in one read transaction, but for those that
    change by design without a change of their own (UNWATCHED), read-only beside the server.
A call the server refused (any status outside 2xx) must leave both as they were; a call that
succeeded may change rows only with a revision (every change is in the audit trail); a 2xx
response may report no revision later than the latest.

Loaded by Schemathesis as its hooks module (SCHEMATHESIS_HOOKS=.ci/http_check.py), this file
makes those looks around each request and writes the call to the ledger (one JSON object a line:
the request, the status, the revisions before and after, the rows changed, the revision the
response reports); registers the check `refused_call_changed_nothing`, which fails the test case
whose call broke those rules (with the request, the response and what changed).

Run as a program, by .ci/http-check:
    http_check.py setup --env-file FILE --config FILE
        registers the story the calls work on (two customers, two accounts of the first, the
        second associated with a permission, a linked application), and writes the shell
        variables (CUSTOMER_ID, START_REVISION) and the Schemathesis configuration that binds
        the story's ids, PIN and values to the parameters that take them, often but not always,
        so that calls also get past validation and change things
    http_check.py reconcile --ledger FILE --start N [--report FILE] [--summary FILE]
        judges the calls Schemathesis' check did not see (its checks' own requests), then checks
        the ledger against the change feed from scratch: each revision after N must have been
        committed within one call that succeeded (none within a refused call, none between
        calls), and be listed by the feed, or else be the PIN read a GetPin answer reports (the
        feed omits those); what the successful calls moved the revision by must add up to that.
        Writes the counts for the summary: operations tested, calls made, failures (with those
        of Schemathesis' JSON report).

The server is $MANDATE_HTTP_URL (http://127.0.0.1:PORT), the key $MANDATE_API_KEY, its SQLite
database file $HTTP_CHECK_DATABASE.
"""

import argparse
import collections
import json
import os
import re
import sqlite3
import sys
import threading
import time

import requests

I64_MAX = 9223372036854775807
LATEST = re.compile(r"is ahead of the latest revision, (\d+)")
FEED_TIMEOUT_SECS = 30
SHOWN_CHARS = 600
# GetPin records each read in the audit trail, with a revision of its own, which the feed omits.
PIN_READ = "GET /v1/contractors/{contractor_id}/pin"
# Tables whose rows change by design without a change (and on refused calls), or in the background.
UNWATCHED = {
    "pin_attempts": "a wrong PIN counts toward the customer's lockout",
    "client_pin_tokens": "a wrong PIN spends the client system's PIN budget",
    "denied_checks": "denied checks are written in the background, folded per window",
    "sqlite_sequence": "denied_checks' AUTOINCREMENT",
}
# How often a parameter that takes one of the story's values gets one (else a generated value).
STORY_PROBABILITY = 0.7


class CheckError(Exception):
    """The check cannot do its work: the server does not answer as it should."""


_session = None


def call(method, path, body=None, customer=None, timeout=10):
    """One call to the server with the key; (status, the parsed JSON body or the text)."""
    global _session
    if _session is None:
        _session = requests.Session()  # one connection, kept open
        _session.headers["Authorization"] = f"Bearer {os.environ['MANDATE_API_KEY']}"
    headers = {"X-Customer-Id": customer} if customer else {}
    url = os.environ["MANDATE_HTTP_URL"].rstrip("/") + path
    response = _session.request(method, url, json=body, headers=headers, timeout=timeout)
    try:
        return response.status_code, response.json()
    except ValueError:
        return response.status_code, response.text


def ok(method, path, body=None, customer=None):
    """A call that must succeed; its parsed body."""
    status, answer = call(method, path, body, customer)
    if status != 200:
        raise CheckError(f"{method} {path} answered {status} {shown(answer)}")
    return answer


def latest_revision():
    """The revision of the latest committed change, read from the database's counter."""
    status, body = call("GET", f"/v1/changes:watch?afterRevision={I64_MAX}")
    match = LATEST.search(body.get("message", "")) if isinstance(body, dict) else None
    if status != 400 or match is None:
        raise CheckError(
            f"cannot read the latest revision: GET /v1/changes:watch?afterRevision={I64_MAX} "
            f"answered {status} {shown(body)}, not 400 naming 'is ahead of the latest revision, N'"
        )
    return int(match.group(1))


class Rows:
    """Reads the watched tables' rows, read-only, beside the server."""

    def __init__(self, path):
        # One worker thread at a time, under the hooks' lock.
        self.db = sqlite3.connect(
            f"file:{path}?mode=ro", uri=True, isolation_level=None, check_same_thread=False
        )

    def read(self):
        """{table: sorted rows}, all read at one point."""
        self.db.execute("BEGIN")
        try:
            tables = [
                name
                for (name,) in self.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
                if name not in UNWATCHED
            ]
            return {t: sorted(map(repr, self.db.execute(f'SELECT * FROM "{t}"'))) for t in tables}
        finally:
            self.db.execute("COMMIT")


def rows_changed(before, after):
    """{table: {"removed": rows, "added": rows}} for the tables whose rows differ."""
    changed = {}
    for table in sorted(set(before) | set(after)):
        old, new = before.get(table, []), after.get(table, [])
        if old != new:
            removed = sorted(set(old) - set(new))
            added = sorted(set(new) - set(old))
            changed[table] = {"removed": [shown(r) for r in removed[:5]], "added": [shown(r) for r in added[:5]]}
    return changed


def read_feed(after, through):
    """The changes the feed lists after revision `after`, up to `through`, which must come."""
    changes = []
    if through <= after:
        return changes
    url = os.environ["MANDATE_HTTP_URL"].rstrip("/") + f"/v1/changes:watch?afterRevision={after}"
    headers = {"Authorization": f"Bearer {os.environ['MANDATE_API_KEY']}"}
    deadline = time.monotonic() + FEED_TIMEOUT_SECS
    # The feed never ends: lines are read up to the revision wanted, within the time allowed (the
    # timeout also bounds each wait for a line).
    with requests.get(url, headers=headers, stream=True, timeout=FEED_TIMEOUT_SECS) as response:
        if response.status_code != 200:
            raise CheckError(f"the change feed answered {response.status_code} {shown(response.text)}")
        for line in response.iter_lines():
            if time.monotonic() > deadline:
                break
            if not line:
                continue
            item = json.loads(line)
            if "error" in item:
                raise CheckError(f"the change feed failed: {item['error']}")
            changes.append(item["result"]["change"])
            if int(changes[-1]["revision"]) >= through:
                return changes
    raise CheckError(
        f"the change feed did not reach revision {through} within {FEED_TIMEOUT_SECS} s "
        f"(it listed {len(changes)} changes after {after})"
    )


def shown(text):
    text = text if isinstance(text, str) else json.dumps(text)
    return text if len(text) <= SHOWN_CHARS else text[:SHOWN_CHARS] + "…"


def describe(entry):
    """A call of the ledger, as a failure shows it."""
    lines = [f"call #{entry['n']} ({entry['source']}): {entry['method']} {entry['url']}"]
    if entry.get("headers"):
        lines.append("  request headers: " + json.dumps(entry["headers"]))
    if entry.get("request_body") is not None:
        lines.append("  request body: " + entry["request_body"])
    lines.append(f"  response: {entry['status']} {entry.get('response_body', '')}")
    lines.append(f"  latest revision before the call: {entry['before']}, after it: {entry['after']}")
    for table, rows in entry.get("rows", {}).items():
        for row in rows["removed"]:
            lines.append(f"  {table}: - {row}")
        for row in rows["added"]:
            lines.append(f"  {table}: + {row}")
    return "\n".join(lines)


def refused(entry):
    """Whether the server refused the call (any status outside 2xx), or did not answer it."""
    return entry["status"] is None or not 200 <= entry["status"] < 300


def violation(entry):
    """How this call of the ledger broke the rules, or None."""
    if entry["status"] is None:
        return None  # no answer: the reconciliation names what it committed, if anything
    moved = entry["after"] != entry["before"]
    tables = ", ".join(entry.get("rows", {}))
    if refused(entry) and (moved or tables):
        what = []
        if moved:
            what.append(f"the latest revision moved from {entry['before']} to {entry['after']}")
        if tables:
            what.append(f"rows of {tables} changed")
        return f"a refused call ({entry['status']}) changed something: {'; '.join(what)}"
    if tables and not moved:
        return f"a call changed rows of {tables} without a change in the audit trail (no revision)"
    reported = entry.get("revision")
    if reported is not None and reported > entry["after"]:
        return f"the response reports revision {reported}, not committed when it answered"
    return None


# --- Schemathesis hooks ---------------------------------------------------------------------------


def install_hooks():
    import schemathesis
    from schemathesis.transport.requests import RequestsTransport

    ledger = open(os.environ["HTTP_CHECK_LEDGER"], "a", encoding="utf-8")
    rows = Rows(os.environ["HTTP_CHECK_DATABASE"])
    lock = threading.RLock()
    calls = [0]
    # The ledger entry of each response the check may still ask about, by the response's identity.
    pending = collections.OrderedDict()

    def write(record):
        ledger.write(json.dumps(record) + "\n")
        ledger.flush()

    send = RequestsTransport.send

    def looked_at_send(self, case, *args, **kwargs):
        with lock:
            before, rows_before = latest_revision(), rows.read()
            response = None
            try:
                response = send(self, case, *args, **kwargs)
                return response
            finally:
                after, rows_after = latest_revision(), rows.read()
                calls[0] += 1
                entry = ledger_entry(calls[0], case, response, before, after)
                changed = rows_changed(rows_before, rows_after)
                if changed:
                    entry["rows"] = changed
                write(entry)
                if response is not None:
                    pending[id(response)] = (response, entry)
                    while len(pending) > 1000:
                        pending.popitem(last=False)

    RequestsTransport.send = looked_at_send

    @schemathesis.check
    def refused_call_changed_nothing(ctx, response, case):
        """A refused call (non-2xx) changes no row and takes no revision."""
        with lock:
            found = pending.get(id(response))
            if found is None or found[0] is not response:
                raise AssertionError(
                    "this response did not come through the transport that looks at the server "
                    "around each call, so whether its call changed something is unknown"
                )
            write({"judged": found[1]["n"]})
        problem = violation(found[1])
        if problem:
            raise AssertionError(f"{problem}\n\n{describe(found[1])}")


def ledger_entry(n, case, response, before, after):
    phase = getattr(getattr(case, "meta", None), "phase", None)
    entry = {
        "n": n,
        "operation": case.operation.label,
        "source": phase.name.value if phase is not None else "a check's own request",
        "before": before,
        "after": after,
        "status": None,
        "revision": None,
        "method": case.method.upper(),
        "url": case.formatted_path,
    }
    if response is None:
        return entry
    request = response.request
    body = request.body
    if isinstance(body, bytes):
        body = body.decode(errors="replace")
    shown_headers = ("x-customer-id", "content-type")
    entry.update(
        method=request.method,
        url=request.url,
        headers={k: v for k, v in request.headers.items() if k.lower() in shown_headers},
        request_body=shown(body) if body is not None else None,
        status=response.status_code,
        response_body=shown(response.content.decode(errors="replace")),
    )
    # The key is not shown; a request sent without it, or with another (ignored_auth's), says so.
    key = request.headers.get("Authorization")
    if key != f"Bearer {os.environ['MANDATE_API_KEY']}":
        entry["headers"]["Authorization"] = key if key is not None else "(none)"
    if not refused(entry):
        try:
            reported = json.loads(response.content).get("revision")
            entry["revision"] = int(reported) if reported is not None else None
        except (ValueError, AttributeError, TypeError):
            pass
    return entry


# --- The programs run by .ci/http-check -----------------------------------------------------------


def setup(args):
    """Registers the story the calls work on; writes the shell variables and the configuration."""
    def customer(name):
        answer = ok(
            "POST",
            "/v1/customers",
            {"externalSubject": f"oidc|{name.lower()}", "displayName": name, "email": f"{name.lower()}@example.ca"},
        )
        return answer["customer"]["customerId"], int(answer["revision"])

    marie, revision = customer("Marie")
    latest = latest_revision()
    if latest != revision:
        raise CheckError(f"the latest revision reads {latest} right after a registration committed {revision}")
    ben, _ = customer("Ben")

    def account(name):
        answer = ok(
            "POST",
            "/v1/contractors",
            {
                "businessName": name,
                "contact": {"name": "Marie Tremblay", "phone": "613-555-0100", "email": "marie@example.ca"},
                "mailingAddress": {
                    "street": "110 Laurier Ave W",
                    "city": "Ottawa",
                    "province": "ON",
                    "postalCode": "K1P 1J1",
                    "country": "CA",
                },
            },
            customer=marie,
        )
        return answer["contractor"]["contractorId"], answer["pin"]

    rideau, pin = account("Rideau Builders")
    bytown, _ = account("Bytown Plumbing")
    ok("POST", "/v1/contractors:associateByPin", {"pin": pin}, customer=ben)
    ok(
        "POST",
        f"/v1/contractors/{rideau}/associates/{ben}:setPermissions",
        {"permissions": ["PERMISSION_PAY"]},
        customer=marie,
    )
    application = "24-123456 BLD"
    ok("POST", f"/v1/applications/{application.replace(' ', '%20')}:link", {"contractorId": rideau})
    start = latest_revision()

    with open(args.env_file, "w", encoding="utf-8") as out:
        out.write(f"CUSTOMER_ID={marie}\nSTART_REVISION={start}\n")
    dictionaries = {
        "customers": [marie, ben],
        "contractors": [rideau, bytown],
        "applications": [application, "24-654321 PLB"],
        "pins": [pin],
        "masks": ["*", "business_name", "contact.email", "mailing_address"],
        "revisions": ["0"],
        "subjects": ["oidc|luc"],
        "names": ["Luc Gagnon", "Gatineau Renovations"],
        "emails": ["luc@example.ca"],
        "phones": ["819-555-0199"],
        "streets": ["25 Rue Laurier"],
        "cities": ["Gatineau"],
        "provinces": ["QC"],
        "postal_codes": ["J8X 4C8"],
        "countries": ["CA"],
    }
    bindings = {
        "path.contractor_id": "contractors",
        "path.survivor_contractor_id": "contractors",
        "path.customer_id": "customers",
        "path.application_id": "applications",
        "body.customerId": "customers",
        "body.contractorId": "contractors",
        "body.applicationId": "applications",
        "body.atLeastRevision": "revisions",
        "body.items[*].customerId": "customers",
        "body.items[*].contractorId": "contractors",
        "body.items[*].applicationId": "applications",
        "body.items[*].atLeastRevision": "revisions",
        "body.absorbedContractorIds[*]": "contractors",
        "body.pin": "pins",
        "body.updateMask": "masks",
        "body.externalSubject": "subjects",
        "body.displayName": "names",
        "body.email": "emails",
    }
    # RegisterContractor's account, and UpdateContractor's (whose id is the path's).
    for prefix in ("body.", "body.contractor."):
        bindings.update(
            {
                prefix + "businessName": "names",
                prefix + "contact.name": "names",
                prefix + "contact.email": "emails",
                prefix + "contact.phone": "phones",
                prefix + "mailingAddress.street": "streets",
                prefix + "mailingAddress.city": "cities",
                prefix + "mailingAddress.province": "provinces",
                prefix + "mailingAddress.postalCode": "postal_codes",
                prefix + "mailingAddress.country": "countries",
            }
        )
    bindings["body.contractor.contractorId"] = "contractors"
    with open(args.config, "w", encoding="utf-8") as out:
        out.write("# Written by .ci/http_check.py setup: the story's values, bound to the parameters.\n")
        out.write("[dictionaries]\n")
        for name, values in dictionaries.items():
            out.write(f"{name} = {{ values = {json.dumps(values)} }}\n")
        out.write("\n[parameters]\n")
        for key, name in bindings.items():
            out.write(f'"{key}" = {{ dictionary = "{name}", probability = {STORY_PROBABILITY} }}\n')


def reconcile(args):
    entries, judged = [], set()
    with open(args.ledger, encoding="utf-8") as ledger:
        for line in ledger:
            record = json.loads(line)
            if "judged" in record:
                judged.add(record["judged"])
            else:
                entries.append(record)
    entries.sort(key=lambda e: e["n"])
    failures = []
    # What Schemathesis' check did not judge: its checks' own requests, and any it missed.
    for entry in entries:
        problem = None if entry["n"] in judged else violation(entry)
        if problem:
            failures.append(f"{problem}\n{describe(entry)}")

    # The feed lists no PIN read: a change of its own marks the end of what there is to read.
    end = int(
        ok(
            "POST",
            "/v1/customers",
            {"externalSubject": "oidc|http-check-end", "displayName": "End", "email": "end@example.ca"},
        )["revision"]
    )
    changes = [c for c in read_feed(args.start, end) if int(c["revision"]) != end]
    listed = {}
    for change in changes:
        revision = int(change["revision"])
        if revision in listed or not args.start < revision < end or (listed and revision < max(listed)):
            failures.append(f"the feed lists revision {revision} out of order, twice or out of range")
        listed[revision] = change

    # Each revision, with the call it was committed within (calls are serial: their spans do not
    # overlap). A revision the feed does not list must be the PIN read a GetPin answer reports.
    spans = [(e["before"], e["after"], e) for e in entries if e["after"] != e["before"]]
    within = collections.defaultdict(list)
    pin_reads = 0
    for revision in range(args.start + 1, end):
        owner = next((e for before, after, e in spans if before < revision <= after), None)
        change = listed.get(revision)
        what = f"revision {revision} ({change['kind']})" if change else f"revision {revision}"
        if owner is None:
            failures.append(f"{what} was committed between Schemathesis' calls, within none of them")
            continue
        within[owner["n"]].append(what)
        if change is None and not refused(owner):
            if owner["operation"] == PIN_READ and owner["revision"] == revision:
                pin_reads += 1
            else:
                failures.append(f"the feed does not list {what}, committed within\n{describe(owner)}")
    for entry in entries:
        if refused(entry) and within.get(entry["n"]):
            what = f"a refused call ({entry['status']})" if entry["status"] else "a call that got no answer"
            failures.append(
                f"{what} changed something: {'; '.join(within[entry['n']])} committed within "
                f"it\n{describe(entry)}"
            )
    succeeded = [e for e in entries if not refused(e)]
    moved = sum(e["after"] - e["before"] for e in succeeded)
    if moved != len(changes) + pin_reads:
        failures.append(
            f"the successful calls moved the latest revision by {moved} in all; the feed lists "
            f"{len(changes)} changes after revision {args.start}, and GetPin read {pin_reads} PINs"
        )

    for failure in failures:
        print(f"http-check: {failure}\n", file=sys.stderr)
    changing = sum(1 for e in succeeded if e["after"] != e["before"])
    refused_calls = [e for e in entries if refused(e)]
    refused_changing = sum(
        1 for e in refused_calls if e["after"] != e["before"] or e.get("rows") or within.get(e["n"])
    )
    print(
        f"http-check: after revision {args.start}, {changing} of the {len(succeeded)} successful "
        f"calls committed {len(changes)} changes the feed lists and {pin_reads} PIN reads (which "
        f"it does not); {refused_changing} of the {len(refused_calls)} refused calls changed "
        "something"
    )
    tested, found = schemathesis_counts(args.report) if args.report else (None, 0)
    summary = {
        "operations": tested if tested is not None else len({e["operation"] for e in entries}),
        "calls": len(entries),
        "schemathesis_failures": found,
        "change_failures": len(failures),
    }
    if args.summary:
        with open(args.summary, "w", encoding="utf-8") as out:
            out.write("".join(f"{name}={value}\n" for name, value in summary.items()))
    return 1 if failures else 0


def schemathesis_counts(path):
    """Operations tested, and failures and errors, as Schemathesis' JSON report counts them."""
    with open(path, encoding="utf-8") as report:
        document = json.load(report)
    tested = (document.get("operations") or {}).get("tested")
    found = sum(group["count"] for group in document["failures"] + document["errors"])
    return tested, found


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("setup")
    p.add_argument("--env-file", required=True)
    p.add_argument("--config", required=True)
    p = commands.add_parser("reconcile")
    p.add_argument("--ledger", required=True)
    p.add_argument("--start", type=int, required=True)
    p.add_argument("--report", help="Schemathesis' JSON report")
    p.add_argument("--summary", help="where to write the counts, as shell variables")
    args = parser.parse_args()
    try:
        if args.command == "setup":
            setup(args)
            return 0
        return reconcile(args)
    except CheckError as error:
        print(f"http-check: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
else:
    install_hooks()
