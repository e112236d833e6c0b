"""A payment gateway asks Mandate before it takes a payment for a contractor account.

A customer pays a permit fee on behalf of a professional/contractor account (and, optionally,
for one application or permit). The gateway takes the payment only if Mandate says the customer
holds Pay there; otherwise, or if Mandate cannot answer, it refuses: a payment gateway fails
closed.

    export MANDATE_ADDRESS=127.0.0.1:50051 MANDATE_API_KEY=mdt_...   # a key with the check scope
    python payment_gateway.py --customer CUSTOMER_ID --contractor CONTRACTOR_ID \\
        --application "24-123456 BLD" --amount-cents 12500

Exit status: 0 when the payment was taken, 1 when it was refused.
"""

import argparse
import json
import os
import sys

import grpc
from mandate.v1 import common_pb2, permission_pb2, permission_pb2_grpc

# The deadline of each call. A check is fast; one that is not answered in time is refused
# rather than keeping the customer waiting.
TIMEOUT_SECONDS = 2.0

# A check changes nothing, so it is safe to retry while Mandate is briefly UNAVAILABLE (a
# replica restarting). The retries happen inside the call's deadline.
SERVICE_CONFIG = json.dumps(
    {
        "methodConfig": [
            {
                "name": [{"service": "mandate.v1.PermissionService", "method": "CheckPermission"}],
                "retryPolicy": {
                    "maxAttempts": 3,
                    "initialBackoff": "0.1s",
                    "maxBackoff": "0.5s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE"],
                },
            }
        ]
    }
)

# Mandate's reasons, in words for the gateway's log and the customer.
REASONS = {
    permission_pb2.CHECK_REASON_GRANTED_DIRECTLY: "the customer holds Pay",
    permission_pb2.CHECK_REASON_GRANTED_THROUGH_MANAGE: "the customer is a Manager",
    permission_pb2.CHECK_REASON_NOT_ASSOCIATED: "the customer is not associated with the account",
    permission_pb2.CHECK_REASON_PERMISSION_NOT_HELD: "a Manager has not granted the customer Pay",
    permission_pb2.CHECK_REASON_GRANT_EXPIRED: "the customer's permissions have expired",
    permission_pb2.CHECK_REASON_APPLICATION_NOT_LINKED: (
        "the application is not linked to an account of the customer's"
    ),
    permission_pb2.CHECK_REASON_OWN_APPLICATION: "the application is the customer's own",
}

# What a failed call means for the gateway, by status code.
ERRORS = {
    grpc.StatusCode.UNAUTHENTICATED: "the gateway's API key was not accepted",
    grpc.StatusCode.PERMISSION_DENIED: "the gateway's API key may not check permissions",
    grpc.StatusCode.INVALID_ARGUMENT: (
        "the payment names a malformed customer, account or application"
    ),
    grpc.StatusCode.NOT_FOUND: "the payment names an unknown customer or account",
    grpc.StatusCode.UNAVAILABLE: "Mandate is unavailable; try again later",
    grpc.StatusCode.DEADLINE_EXCEEDED: "Mandate did not answer in time; try again later",
}


def check_pay(stub, api_key, customer_id, contractor_id, application_id=""):
    """Asks Mandate whether the customer may pay for the account (and application, if named)."""
    return stub.CheckPermission(
        permission_pb2.CheckPermissionRequest(
            customer_id=customer_id,
            permission=common_pb2.PERMISSION_PAY,
            contractor_id=contractor_id,
            application_id=application_id,
        ),
        metadata=[("authorization", f"Bearer {api_key}")],
        timeout=TIMEOUT_SECONDS,
    )


def reason_name(reason):
    """The reason's enum name; a number for a reason added to the API after these stubs."""
    try:
        return permission_pb2.CheckReason.Name(reason)
    except ValueError:
        return str(reason)


def take_payment(customer_id, contractor_id, application_id, amount_cents):
    """Where the real gateway charges the card; here it does nothing."""


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customer", required=True, help="the paying customer's id")
    parser.add_argument("--contractor", required=True, help="the account the customer pays for")
    parser.add_argument("--application", default="", help="the application or permit paid for")
    parser.add_argument("--amount-cents", type=int, required=True)
    args = parser.parse_args()
    address = os.environ.get("MANDATE_ADDRESS", "127.0.0.1:50051")
    api_key = os.environ.get("MANDATE_API_KEY")
    if not api_key:
        parser.error("set MANDATE_API_KEY to a key with the check scope")

    amount = f"{args.amount_cents // 100}.{args.amount_cents % 100:02d}"
    on_application = f" on {args.application}" if args.application else ""
    print(
        f"payment of {amount} by customer {args.customer} "
        f"for account {args.contractor}{on_application}"
    )

    # One channel per process in a real gateway; it reconnects by itself.
    with grpc.insecure_channel(
        address, options=[("grpc.service_config", SERVICE_CONFIG)]
    ) as channel:
        stub = permission_pb2_grpc.PermissionServiceStub(channel)
        try:
            decision = check_pay(stub, api_key, args.customer, args.contractor, args.application)
        except grpc.RpcError as error:
            # Fail closed: no answer is a refusal. The details are for the operator's log.
            meaning = ERRORS.get(error.code(), "unexpected error")
            print(f"refused: Mandate could not decide: {meaning}")
            print(f"mandate: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1

    reason = f"{reason_name(decision.reason)}: {REASONS.get(decision.reason, 'no explanation')}"
    if not decision.allowed:
        print(f"refused: {reason}")
        return 1
    take_payment(args.customer, args.contractor, args.application, args.amount_cents)
    # On an application, `contractor_id` names the account whose permissions decided it.
    print(f"taken: {reason} (account {decision.contractor_id})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
