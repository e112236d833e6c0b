"""An inspection-booking system lists what a customer may book, and asks Mandate before booking.

The booking page shows the applications and permits on which the customer may request
inspections (through any of its contractor accounts, or as its own). When the customer books,
the system asks again for that one application: the list may be minutes old, and the customer
may have typed a permit number that was not in it.

    export MANDATE_ADDRESS=127.0.0.1:50051 MANDATE_API_KEY=mdt_...   # a key with the check scope
    python inspection_booking.py --customer CUSTOMER_ID                  # the list only
    python inspection_booking.py --customer CUSTOMER_ID --book "24-123456 BLD" --inspection Framing

Exit status: 0 when the list was shown (and the inspection booked, if asked), 1 otherwise.
"""

import argparse
import os
import sys

import grpc
from mandate.v1 import common_pb2, permission_pb2, permission_pb2_grpc

# The deadline of each call: a slow answer is an error, not a hung booking page.
TIMEOUT_SECONDS = 2.0

# What a failed call means for the booking system, by status code.
ERRORS = {
    grpc.StatusCode.UNAUTHENTICATED: "the booking system's API key was not accepted",
    grpc.StatusCode.PERMISSION_DENIED: "the booking system's API key may not check permissions",
    grpc.StatusCode.INVALID_ARGUMENT: "the request names a malformed customer or application",
    grpc.StatusCode.NOT_FOUND: "the request names an unknown customer",
    grpc.StatusCode.UNAVAILABLE: "Mandate is unavailable; try again later",
    grpc.StatusCode.DEADLINE_EXCEEDED: "Mandate did not answer in time; try again later",
}


class Mandate:
    """The two questions the booking system asks, with its key and a deadline on each call."""

    def __init__(self, channel, api_key):
        self._stub = permission_pb2_grpc.PermissionServiceStub(channel)
        self._metadata = [("authorization", f"Bearer {api_key}")]

    def inspectable_applications(self, customer_id, page_size=0):
        """Yields every application the customer may request inspections on, page by page."""
        page_token = ""
        while True:
            page = self._stub.ListAccessibleApplications(
                permission_pb2.ListAccessibleApplicationsRequest(
                    customer_id=customer_id,
                    permission=common_pb2.PERMISSION_INSPECTIONS,
                    page_size=page_size,
                    page_token=page_token,
                ),
                metadata=self._metadata,
                timeout=TIMEOUT_SECONDS,
            )
            yield from page.applications
            page_token = page.next_page_token
            if not page_token:
                return

    def may_book(self, customer_id, application_id):
        """Decides whether the customer may request an inspection on the application."""
        return self._stub.CheckPermission(
            permission_pb2.CheckPermissionRequest(
                customer_id=customer_id,
                permission=common_pb2.PERMISSION_INSPECTIONS,
                application_id=application_id,
            ),
            metadata=self._metadata,
            timeout=TIMEOUT_SECONDS,
        )


def through(contractor_id):
    """How the customer reaches an application: an account, or none for its own."""
    return f"through account {contractor_id}" if contractor_id else "as the customer's own"


def reason_name(reason):
    """The reason's enum name; a number for a reason added to the API after these stubs."""
    try:
        return permission_pb2.CheckReason.Name(reason)
    except ValueError:
        return str(reason)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customer", required=True, help="the customer's id")
    parser.add_argument("--book", metavar="APPLICATION", help="the application to book on")
    parser.add_argument("--inspection", default="Framing", help="the kind of inspection")
    parser.add_argument("--page-size", type=int, default=0, help="0 for the server's default")
    args = parser.parse_args()
    address = os.environ.get("MANDATE_ADDRESS", "127.0.0.1:50051")
    api_key = os.environ.get("MANDATE_API_KEY")
    if not api_key:
        parser.error("set MANDATE_API_KEY to a key with the check scope")

    with grpc.insecure_channel(address) as channel:
        mandate = Mandate(channel, api_key)
        try:
            print(f"customer {args.customer} may request inspections on:")
            applications = list(mandate.inspectable_applications(args.customer, args.page_size))
            for application in applications:
                print(f"  {application.application_id} {through(application.contractor_id)}")
            if not applications:
                print("  nothing")
            if not args.book:
                return 0

            print(f"booking a {args.inspection} inspection on {args.book}")
            decision = mandate.may_book(args.customer, args.book)
        except grpc.RpcError as error:
            print(f"failed: {ERRORS.get(error.code(), 'unexpected error')}")
            print(f"mandate: {error.code().name}: {error.details()}", file=sys.stderr)
            return 1

    reason = reason_name(decision.reason)
    if not decision.allowed:
        print(f"refused: {reason}")
        return 1
    # Here the real system would put the inspection in the inspectors' calendar.
    print(f"booked: {reason} {through(decision.contractor_id)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
