// A payment gateway asks Mandate before it takes a payment for a contractor account, over
// Mandate's HTTP/JSON API with nothing but Node's own fetch: the twin of
// examples/python/payment_gateway.py and examples/payment_gateway.rs (which speak gRPC), for a
// system that cannot. No npm package, no generated code.
//
//   export MANDATE_HTTP_URL=http://127.0.0.1:8080 MANDATE_API_KEY=mdt_...   # a key with the check scope
//   node payment_gateway.mjs --customer CUSTOMER_ID --contractor CONTRACTOR_ID \
//       --application "24-123456 BLD" --amount-cents 12500
//
// It prints what the Python and Rust gateways print. Its log, on stderr, says what the
// operator needs: the reason and revision of each decision, and the status code, message and
// field violations of each failure (Mandate answers one as a JSON google.rpc.Status).
//
// Exit status 0 when the payment was taken, 1 when it was refused: when Mandate said no, and
// when it could not answer (a payment gateway fails closed); 2 when it is misconfigured.

import { parseArgs } from "node:util";
import { setTimeout as sleep } from "node:timers/promises";

// The deadline of each payment's check, retries included. A check is fast; one that is not
// answered in time is refused rather than keeping the customer waiting.
const TIMEOUT_MS = 2000;

// A check changes nothing, so it is safe to ask again while Mandate is briefly UNAVAILABLE (a
// replica restarting) or asks to slow down: as the Python gateway's retry policy, at most 3
// attempts, waiting 0.1 s then twice as long each time (at most 0.5 s), or as long as
// Mandate's Retry-After says, all within the deadline.
const MAX_ATTEMPTS = 3;
const INITIAL_BACKOFF_MS = 100;
const MAX_BACKOFF_MS = 500;
const RETRYABLE = new Set(["UNAVAILABLE", "RESOURCE_EXHAUSTED"]);

// The gRPC status codes by number, as a google.rpc.Status carries them.
const CODES = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

// The code of an answer that is not Mandate's JSON (a proxy's error page), by HTTP status.
const CODES_BY_HTTP_STATUS = {
  400: "INVALID_ARGUMENT",
  401: "UNAUTHENTICATED",
  403: "PERMISSION_DENIED",
  404: "NOT_FOUND",
  429: "RESOURCE_EXHAUSTED",
  502: "UNAVAILABLE",
  503: "UNAVAILABLE",
  504: "DEADLINE_EXCEEDED",
};

// Mandate's reasons, in words for the gateway's log and the customer.
const REASONS = {
  CHECK_REASON_GRANTED_DIRECTLY: "the customer holds Pay",
  CHECK_REASON_GRANTED_THROUGH_MANAGE: "the customer is a Manager",
  CHECK_REASON_NOT_ASSOCIATED: "the customer is not associated with the account",
  CHECK_REASON_PERMISSION_NOT_HELD: "a Manager has not granted the customer Pay",
  CHECK_REASON_GRANT_EXPIRED: "the customer's permissions have expired",
  CHECK_REASON_APPLICATION_NOT_LINKED:
    "the application is not linked to an account of the customer's",
  CHECK_REASON_OWN_APPLICATION: "the application is the customer's own",
};

// What a failed call means for the gateway, by status code.
const ERRORS = {
  UNAUTHENTICATED: "the gateway's API key was not accepted",
  PERMISSION_DENIED: "the gateway's API key may not check permissions",
  INVALID_ARGUMENT: "the payment names a malformed customer, account or application",
  NOT_FOUND: "the payment names an unknown customer or account",
  RESOURCE_EXHAUSTED: "Mandate is busy; try again later",
  UNAVAILABLE: "Mandate is unavailable; try again later",
  DEADLINE_EXCEEDED: "Mandate did not answer in time; try again later",
};

// A call Mandate did not answer with a decision: its status code, message and details.
class MandateError extends Error {
  constructor(code, message, { httpStatus, fieldViolations = [], retryAfterMs } = {}) {
    super(message);
    this.code = code;
    this.httpStatus = httpStatus;
    this.fieldViolations = fieldViolations;
    this.retryAfterMs = retryAfterMs;
    // Why the gateway did not ask again, when it could have.
    this.gaveUp = "";
  }

  // The operator's log lines: the code (and HTTP status), the message, each field at fault.
  describe() {
    const http = this.httpStatus ? ` (HTTP ${this.httpStatus})` : "";
    const gaveUp = this.gaveUp ? `; ${this.gaveUp}` : "";
    const lines = [`${this.code}${http}: ${this.message}${gaveUp}`];
    for (const { field, description } of this.fieldViolations) {
      lines.push(`  field ${field}: ${description}`);
    }
    return lines;
  }
}

// Asks Mandate whether the customer may pay for the account (and application, if named):
// `POST /v1/checks:check`, asking again as Mandate allows within the deadline.
async function checkPay(baseUrl, apiKey, payment) {
  const deadline = Date.now() + TIMEOUT_MS;
  const signal = AbortSignal.timeout(TIMEOUT_MS);
  let backoffMs = INITIAL_BACKOFF_MS;
  for (let attempt = 1; ; attempt++) {
    let error;
    try {
      return await askOnce(baseUrl, apiKey, payment, deadline, signal);
    } catch (thrown) {
      if (!(thrown instanceof MandateError)) {
        throw thrown;
      }
      error = thrown;
    }
    if (!RETRYABLE.has(error.code) || attempt === MAX_ATTEMPTS) {
      throw error;
    }
    // Retry-After is Mandate's word on when to come back: never sooner.
    const waitMs = error.retryAfterMs ?? backoffMs;
    if (Date.now() + waitMs >= deadline) {
      error.gaveUp = `Mandate asks to wait ${waitMs / 1000} s, past the payment's deadline`;
      throw error;
    }
    log(error.describe(), `asking again in ${waitMs / 1000} s`);
    await sleep(waitMs);
    backoffMs = Math.min(backoffMs * 2, MAX_BACKOFF_MS);
  }
}

// One `POST /v1/checks:check`: the decision, or a MandateError.
async function askOnce(baseUrl, apiKey, payment, deadline, signal) {
  let response;
  let text;
  try {
    response = await fetch(`${baseUrl.replace(/\/+$/, "")}/v1/checks:check`, {
      method: "POST",
      headers: {
        authorization: `Bearer ${apiKey}`,
        "content-type": "application/json",
        // Mandate stops working on the call when the time left passes, as for a gRPC
        // deadline, and answers DEADLINE_EXCEEDED (504).
        "request-timeout": String(Math.max(deadline - Date.now(), 1) / 1000),
      },
      // The proto3 JSON form of CheckPermissionRequest: lowerCamelCase, the enum by name.
      body: JSON.stringify({
        customerId: payment.customer,
        permission: "PERMISSION_PAY",
        contractorId: payment.contractor,
        applicationId: payment.application,
      }),
      signal,
    });
    text = await response.text();
  } catch (error) {
    if (signal.aborted) {
      throw new MandateError("DEADLINE_EXCEEDED", `no answer within ${TIMEOUT_MS / 1000} s`);
    }
    // No answer at all: no server there, or the connection was cut (fetch says why in `cause`).
    const why = error.cause?.code ?? String(error.cause ?? error);
    throw new MandateError("UNAVAILABLE", `cannot reach Mandate at ${baseUrl}: ${why}`);
  }
  if (!response.ok) {
    throw statusError(response, text);
  }
  try {
    return JSON.parse(text);
  } catch {
    // Not Mandate's answer (a proxy's page): no decision, so no payment.
    throw new MandateError("UNKNOWN", "the answer is not JSON", { httpStatus: response.status });
  }
}

// The error a non-2xx answer carries: Mandate's JSON google.rpc.Status when it is one.
function statusError(response, text) {
  let status;
  try {
    status = JSON.parse(text);
  } catch {
    status = null;
  }
  const retryAfterMs = retryAfter(response.headers.get("retry-after"));
  const httpStatus = response.status;
  if (status === null || typeof status !== "object" || typeof status.code !== "number") {
    const code = CODES_BY_HTTP_STATUS[httpStatus] ?? "UNKNOWN";
    const message = `an answer that is not Mandate's: ${response.statusText}`;
    return new MandateError(code, message, { httpStatus, retryAfterMs });
  }
  // A google.rpc.BadRequest among the details names each field at fault.
  const fieldViolations = (status.details ?? [])
    .filter((detail) => detail["@type"] === "type.googleapis.com/google.rpc.BadRequest")
    .flatMap((detail) => detail.fieldViolations ?? []);
  return new MandateError(CODES[status.code] ?? String(status.code), status.message ?? "", {
    httpStatus,
    fieldViolations,
    retryAfterMs,
  });
}

// Retry-After in milliseconds: seconds, or an HTTP date; undefined when absent or unreadable.
function retryAfter(value) {
  if (value === null) {
    return undefined;
  }
  if (/^\d+$/.test(value.trim())) {
    return Number(value.trim()) * 1000;
  }
  const date = Date.parse(value);
  return Number.isNaN(date) ? undefined : Math.max(date - Date.now(), 0);
}

// The operator's log (stderr), as the other gateways write it: `mandate: ...`.
function log(lines, note) {
  const all = [...lines];
  if (note) {
    all[0] = `${all[0]}; ${note}`;
  }
  for (const line of all) {
    console.error(`mandate: ${line}`);
  }
}

// Where the real gateway charges the card; here it does nothing.
function takePayment(_payment) {}

function usage(message) {
  console.error(`payment_gateway.mjs: ${message}`);
  console.error(
    "usage: node payment_gateway.mjs --customer ID --contractor ID [--application NUMBER] --amount-cents N",
  );
  return 2;
}

async function main() {
  let options;
  try {
    ({ values: options } = parseArgs({
      options: {
        customer: { type: "string" },
        contractor: { type: "string" },
        application: { type: "string", default: "" },
        "amount-cents": { type: "string" },
      },
    }));
  } catch (error) {
    return usage(error.message);
  }
  for (const name of ["customer", "contractor", "amount-cents"]) {
    if (options[name] === undefined) {
      return usage(`--${name} is required`);
    }
  }
  if (!/^\d+$/.test(options["amount-cents"])) {
    return usage("--amount-cents must be a whole number of cents");
  }
  const baseUrl = process.env.MANDATE_HTTP_URL || "http://127.0.0.1:8080";
  const apiKey = process.env.MANDATE_API_KEY;
  if (!apiKey) {
    return usage("set MANDATE_API_KEY to a key with the check scope");
  }
  const payment = {
    customer: options.customer,
    contractor: options.contractor,
    application: options.application,
    amountCents: BigInt(options["amount-cents"]),
  };

  const amount = `${payment.amountCents / 100n}.${String(payment.amountCents % 100n).padStart(2, "0")}`;
  const onApplication = payment.application ? ` on ${payment.application}` : "";
  console.log(
    `payment of ${amount} by customer ${payment.customer} for account ${payment.contractor}${onApplication}`,
  );

  let decision;
  try {
    decision = await checkPay(baseUrl, apiKey, payment);
  } catch (error) {
    if (!(error instanceof MandateError)) {
      throw error;
    }
    // Fail closed: no answer is a refusal. The details are for the operator's log.
    console.log(`refused: Mandate could not decide: ${ERRORS[error.code] ?? "unexpected error"}`);
    log(error.describe());
    return 1;
  }

  // proto3 JSON leaves out a field at its default, and gives a reason added to the API after
  // this gateway was written by its number.
  const allowed = decision.allowed === true;
  const reasonName = String(decision.reason ?? "CHECK_REASON_UNSPECIFIED");
  const reason = `${reasonName}: ${REASONS[reasonName] ?? "no explanation"}`;
  log([`${allowed ? "allowed" : "denied"} (${reasonName}) at revision ${decision.revision ?? "0"}`]);
  if (!allowed) {
    console.log(`refused: ${reason}`);
    return 1;
  }
  takePayment(payment);
  // On an application, `contractorId` names the account whose permissions decided it.
  console.log(`taken: ${reason} (account ${decision.contractorId ?? ""})`);
  return 0;
}

process.exitCode = await main();
