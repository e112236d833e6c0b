"""Registers the README's story through the API, so the examples have something to check.

What the customer portal and the permit system would do, in the order the city's Customer
Portal User-Guide tells it:

1. Marie Tremblay, Ben Okafor and Luc Bergeron register as customers.
2. Marie registers her company, Rideau Builders Inc., and becomes its Manager; Luc registers
   his, Bytown Plumbing.
3. Marie reads Rideau's PIN and shares it; Ben and Luc associate with Rideau by PIN.
4. Marie grants Ben Pay and Inspections; Luc holds nothing at Rideau yet.
5. The permit system links two permits to Rideau and one to Bytown.

It needs a key with the `portal` and `records` scopes (the bootstrap key has every scope). It
prints what it did, and writes the ids it made to --env-file as shell assignments (MARIE=...),
for the examples that follow. The PIN is neither printed nor written: it is a secret.

    PYTHONPATH=gen python setup_story.py --env-file story.env
"""

import argparse
import os
import sys

import grpc
from mandate.v1 import (
    common_pb2,
    contractor_pb2,
    contractor_pb2_grpc,
    identity_pb2,
    identity_pb2_grpc,
    permission_pb2,
    permission_pb2_grpc,
)

# Every call gets a deadline: a call Mandate cannot answer in time fails with
# DEADLINE_EXCEEDED instead of hanging.
TIMEOUT_SECONDS = 5.0

# The permits the permit system links to each account.
RIDEAU_APPLICATIONS = ["24-123456 BLD", "24-654321 PLB"]
BYTOWN_APPLICATIONS = ["24-777777 PLB"]


def names(permissions):
    """The permissions' enum names, for printing."""
    return ", ".join(common_pb2.Permission.Name(p) for p in permissions) or "nothing"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env-file", required=True, help="where to write the ids (MARIE=...)")
    args = parser.parse_args()
    address = os.environ.get("MANDATE_ADDRESS", "127.0.0.1:50051")
    key = os.environ.get("MANDATE_API_KEY")
    if not key:
        parser.error("set MANDATE_API_KEY to a key with the portal and records scopes")

    with grpc.insecure_channel(address) as channel:
        identity = identity_pb2_grpc.IdentityServiceStub(channel)
        contractors = contractor_pb2_grpc.ContractorServiceStub(channel)
        permissions = permission_pb2_grpc.PermissionServiceStub(channel)

        def call(method, request, acting_customer_id=None):
            """Calls `method` with the key, a deadline and, when given, the acting customer."""
            metadata = [("authorization", f"Bearer {key}")]
            if acting_customer_id:
                # Calls that act for a customer name it in `x-customer-id`.
                metadata.append(("x-customer-id", acting_customer_id))
            return method(request, metadata=metadata, timeout=TIMEOUT_SECONDS)

        def register_customer(subject, name, email):
            customer = call(
                identity.RegisterCustomer,
                identity_pb2.RegisterCustomerRequest(
                    external_subject=subject, display_name=name, email=email
                ),
            ).customer
            print(f"registered customer {customer.display_name}")
            return customer.customer_id

        def register_contractor(manager_id, business_name, contact, address):
            registered = call(
                contractors.RegisterContractor,
                contractor_pb2.RegisterContractorRequest(
                    business_name=business_name, contact=contact, mailing_address=address
                ),
                acting_customer_id=manager_id,
            )
            print(
                f"{contact.name} registered {registered.contractor.business_name} "
                f"and holds {names(registered.permissions)}"
            )
            return registered.contractor.contractor_id

        def link(application_id, contractor_id, business_name):
            call(
                permissions.LinkApplication,
                permission_pb2.LinkApplicationRequest(
                    application_id=application_id, contractor_id=contractor_id
                ),
            )
            print(f"the permit system linked {application_id} to {business_name}")

        marie = register_customer("oidc|marie", "Marie Tremblay", "marie@rideaubuilders.ca")
        ben = register_customer("oidc|ben", "Ben Okafor", "ben@example.ca")
        luc = register_customer("oidc|luc", "Luc Bergeron", "luc@bytownplumbing.ca")

        rideau = register_contractor(
            marie,
            "Rideau Builders Inc.",
            common_pb2.Contact(
                name="Marie Tremblay", phone="613-555-0199", email="marie@rideaubuilders.ca"
            ),
            common_pb2.MailingAddress(
                street="110 Laurier Ave W",
                city="Ottawa",
                province="ON",
                postal_code="K1P 1J1",
                country="CA",
            ),
        )
        bytown = register_contractor(
            luc,
            "Bytown Plumbing",
            common_pb2.Contact(
                name="Luc Bergeron", phone="613-555-0142", email="luc@bytownplumbing.ca"
            ),
            common_pb2.MailingAddress(
                street="25 Bank St",
                city="Ottawa",
                province="ON",
                postal_code="K1R 7S8",
                country="CA",
            ),
        )

        # guide, "Provide Access": a Manager reads the PIN and shares it with employees.
        pin = call(
            contractors.GetPin, contractor_pb2.GetPinRequest(contractor_id=rideau), marie
        ).pin
        for name, customer_id in [("Ben", ben), ("Luc", luc)]:
            associated = call(
                contractors.AssociateByPin,
                contractor_pb2.AssociateByPinRequest(pin=pin),
                customer_id,
            )
            print(
                f"{name} entered Marie's PIN and is associated with "
                f"{associated.contractor.business_name}, holding {names(associated.permissions)}"
            )

        granted = call(
            permissions.SetPermissions,
            permission_pb2.SetPermissionsRequest(
                contractor_id=rideau,
                customer_id=ben,
                permissions=[common_pb2.PERMISSION_PAY, common_pb2.PERMISSION_INSPECTIONS],
            ),
            marie,
        )
        print(f"Marie granted Ben {names(granted.associate.permissions)}")

        for application_id in RIDEAU_APPLICATIONS:
            link(application_id, rideau, "Rideau Builders Inc.")
        for application_id in BYTOWN_APPLICATIONS:
            link(application_id, bytown, "Bytown Plumbing")

    ids = {"MARIE": marie, "BEN": ben, "LUC": luc, "RIDEAU": rideau, "BYTOWN": bytown}
    with open(args.env_file, "w", encoding="utf-8") as env_file:
        env_file.writelines(f"{name}={value}\n" for name, value in ids.items())


if __name__ == "__main__":
    try:
        main()
    except grpc.RpcError as error:
        # The story is set up on a fresh database: any refusal is a bug worth stopping for.
        sys.exit(f"setting up the story failed: {error.code().name}: {error.details()}")
