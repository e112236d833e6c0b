// A city system asks Mandate over gRPC-Web, the protocol a web page can speak, here from Node:
// Connect's gRPC-Web transport (@connectrpc/connect-web, on fetch) with the client that
// protoc-gen-es generates from proto/. Mandate serves gRPC-Web on its HTTP listener, beside the
// HTTP/JSON API, through the same keys, scopes and limits as gRPC.
//
// It goes through the README's story (examples/python/setup_story.py sets it up and writes
// its ids to story.env): single checks that are allowed and denied, on an account and on an
// application, a batch, the applications a customer may act on page by page, and two calls
// that fail, and prints what Mandate answered.
//
//   npm ci && npx buf generate ../../proto     # once, and whenever proto/ changes
//   export MANDATE_HTTP_URL=http://127.0.0.1:8080 MANDATE_API_KEY=mdt_...   # a key with the check scope
//   node --env-file=story.env grpc_web_check.mjs
//
// Exit status 0 when every call was answered as printed (a refusal or an error status is an
// answer); 1 when one could not be made at all; 2 when it is misconfigured.

import { Code, ConnectError, createClient } from "@connectrpc/connect";
import { createGrpcWebTransport } from "@connectrpc/connect-web";
import { BadRequestSchema } from "./gen/google/rpc/error_details_pb.js";
import { Permission } from "./gen/mandate/v1/common_pb.js";
import { CheckReasonSchema, PermissionService } from "./gen/mandate/v1/permission_pb.js";

// The deadline of each call; Connect sends it as `grpc-timeout`, and Mandate stops working on
// a call whose deadline passed.
const TIMEOUT_MS = 2000;

const STORY = ["MARIE", "BEN", "LUC", "RIDEAU", "BYTOWN"];
const missing = [...STORY, "MANDATE_API_KEY"].filter((name) => !process.env[name]);
if (missing.length > 0) {
  console.error(
    `grpc_web_check.mjs: set ${missing.join(", ")} (node --env-file=story.env; a key with the check scope)`,
  );
  process.exit(2);
}
const { BEN, LUC, MARIE, RIDEAU, BYTOWN } = process.env;
// The story's ids by name, to print names rather than ids.
const NAMES = { [MARIE]: "Marie", [BEN]: "Ben", [LUC]: "Luc", [RIDEAU]: "Rideau", [BYTOWN]: "Bytown" };

const transport = createGrpcWebTransport({
  baseUrl: process.env.MANDATE_HTTP_URL || "http://127.0.0.1:8080",
  defaultTimeoutMs: TIMEOUT_MS,
});
const permissions = createClient(PermissionService, transport);

// The key goes with each call, as `authorization: Bearer <key>`.
function withKey(key = process.env.MANDATE_API_KEY) {
  return { headers: { authorization: `Bearer ${key}` } };
}

function enumName(schema, number) {
  return schema.value[number]?.name ?? String(number);
}

// A gRPC code's name, as grpc-status numbers it: INVALID_ARGUMENT for Code.InvalidArgument.
function codeName(code) {
  return (Code[code] ?? String(code)).replace(/([a-z])([A-Z])/g, "$1_$2").toUpperCase();
}

function decision(response) {
  const verdict = response.allowed ? "allowed" : "denied";
  // The account whose permissions decided it, if one did.
  const account = response.contractorId
    ? `, account ${NAMES[response.contractorId] ?? response.contractorId}`
    : "";
  return `${verdict}, ${enumName(CheckReasonSchema, response.reason)}${account}, revision ${response.revision}`;
}

// A status Mandate answered: its code, message and the fields a google.rpc.BadRequest names.
function failure(error) {
  const lines = [`${codeName(error.code)}: ${error.rawMessage}`];
  for (const badRequest of error.findDetails(BadRequestSchema)) {
    for (const violation of badRequest.fieldViolations) {
      lines.push(`  field ${violation.field}: ${violation.description}`);
    }
  }
  return lines.join("\n");
}

// Makes one call and prints its answer after `title`; a call that could not be made at all
// (no answer, not a status) fails the run.
let unanswered = 0;
async function show(title, call, print) {
  let text;
  try {
    text = print(await call());
  } catch (error) {
    if (!(error instanceof ConnectError)) {
      throw error;
    }
    text = failure(error);
    if (error.code === Code.Unavailable || error.code === Code.DeadlineExceeded) {
      unanswered += 1;
    }
  }
  // An answer of several lines starts on the next one.
  console.log(`${title}:${text.startsWith("\n") ? "" : " "}${text}`);
}


function check(title, request, key) {
  return show(title, () => permissions.checkPermission(request, withKey(key)), decision);
}

await check("Ben, Pay at Rideau", {
  customerId: BEN,
  permission: Permission.PAY,
  contractorId: RIDEAU,
});
await check("Luc, Pay at Rideau", {
  customerId: LUC,
  permission: Permission.PAY,
  contractorId: RIDEAU,
});
await check("Ben, Pay at Bytown", {
  customerId: BEN,
  permission: Permission.PAY,
  contractorId: BYTOWN,
});
// On an application, the answer names the account whose permissions decided it.
await check("Ben, Inspections on 24-654321 plb", {
  customerId: BEN,
  permission: Permission.INSPECTIONS,
  applicationId: "24-654321 plb",
});
await check("Marie, Upload Files on 24-777777 PLB", {
  customerId: MARIE,
  permission: Permission.UPLOAD_FILES,
  applicationId: "24-777777 PLB",
});

// A batch: one result per item, in order; an item that cannot be decided has its own error.
await show(
  "a batch of three",
  () =>
    permissions.checkPermissions(
      {
        items: [
          { customerId: MARIE, permission: Permission.MANAGE, contractorId: RIDEAU },
          { customerId: LUC, permission: Permission.INSPECTIONS, contractorId: RIDEAU },
          { customerId: "luc", permission: Permission.INSPECTIONS, contractorId: RIDEAU },
        ],
      },
      withKey(),
    ),
  (response) =>
    response.results
      .map((result, index) => {
        const outcome = result.outcome;
        if (outcome.case === "decision") {
          return `\n  ${index + 1}. ${decision(outcome.value)}`;
        }
        if (outcome.case === "error") {
          const fields = outcome.value.fieldViolations.map((v) => v.field).join(", ");
          return `\n  ${index + 1}. ${codeName(outcome.value.code)}: ${outcome.value.message} (fields: ${fields})`;
        }
        return `\n  ${index + 1}. no outcome`;
      })
      .join(""),
);

// What Ben may request inspections on, one page at a time.
const applications = [];
let pageToken = "";
let pages = 0;
do {
  const page = await permissions.listAccessibleApplications(
    { customerId: BEN, permission: Permission.INSPECTIONS, pageSize: 1, pageToken },
    withKey(),
  );
  pages += 1;
  for (const application of page.applications) {
    const account = NAMES[application.contractorId] ?? application.contractorId;
    applications.push(`${application.applicationId} through ${account}`);
  }
  pageToken = page.nextPageToken;
} while (pageToken !== "");
console.log(
  `Ben may request inspections on (${pages} pages of 1): ${applications.join("; ") || "nothing"}`,
);

await check("a malformed customer id", {
  customerId: "ben",
  permission: Permission.PAY,
  contractorId: RIDEAU,
});
await check(
  "a wrong key",
  { customerId: BEN, permission: Permission.PAY, contractorId: RIDEAU },
  "mdt_wrong",
);

process.exitCode = unanswered === 0 ? 0 : 1;
