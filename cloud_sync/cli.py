"""``glucotwin cloud ...``: serve the cloud twin and administer it (a thin shell over the library).

    glucotwin cloud serve [--host 127.0.0.1] [--port 8000] [--db PATH | --postgres DSN] [--master-key PATH]
    glucotwin cloud create-clinic NAME                      -> clinic id
    glucotwin cloud create-clinician CLINIC_ID EMAIL        (password from $GLUCOTWIN_PASSWORD or prompt)
    glucotwin cloud create-patient CLINIC_ID [--name NAME]  -> patient id
    glucotwin cloud enrollment-code PATIENT_ID CLINIC_ID    -> one-time code for the hub
    glucotwin cloud admin-token [--ttl-hours 12]            -> bearer token with the admin role
    glucotwin cloud rotate-ingest-key | list-ingest-keys | verify-audit
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
from typing import Any

__all__ = ["register"]


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("cloud", help="cloud twin service: serve and administer",
                                   description="Cloud twin service: serve it and administer accounts and keys.")
    commands = parser.add_subparsers(dest="cloud_command", metavar="SUBCOMMAND")

    def add(name: str, handler: Any, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        where = sub.add_mutually_exclusive_group()
        where.add_argument("--db", default="glucotwin-cloud.db", help="SQLite database file (default: %(default)s)")
        where.add_argument("--postgres", metavar="DSN", help="use PostgreSQL (psycopg 3 conninfo) instead of SQLite")
        sub.add_argument("--master-key", metavar="PATH",
                         help="32-byte master key file (created 0600 if missing; default: DB path + .master-key)")
        sub.set_defaults(handler=handler)
        return sub

    serve = add("serve", _serve, "run the HTTP service with uvicorn")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--log-level", default="info")

    sub = add("create-clinic", _create_clinic, "create a clinic; prints its id")
    sub.add_argument("name")
    sub = add("create-clinician", _create_clinician, "create a clinician account (password from "
              "$GLUCOTWIN_PASSWORD or a prompt)")
    sub.add_argument("clinic_id")
    sub.add_argument("email")
    sub = add("create-patient", _create_patient, "register a patient at a clinic (with consent); prints the id")
    sub.add_argument("clinic_id")
    sub.add_argument("--name", default=None)
    sub = add("enrollment-code", _enrollment_code, "one-time enrollment code for a patient's hub")
    sub.add_argument("patient_id")
    sub.add_argument("clinic_id")
    sub = add("admin-token", _admin_token, "issue an admin bearer token")
    sub.add_argument("--ttl-hours", type=float, default=12.0)
    add("rotate-ingest-key", _rotate_ingest_key, "retire the active ingest key (kept for old backlogs), make a new one")
    add("list-ingest-keys", _list_ingest_keys, "list ingest keys and their state")
    add("verify-audit", _verify_audit, "verify the audit log's hash chain")
    parser.set_defaults(handler=lambda args: (parser.print_help(), 2)[1])


def _config(args: argparse.Namespace) -> Any:
    from cloud_sync.service.app import ServiceConfig

    return ServiceConfig(db_path=None if args.postgres else args.db, postgres_dsn=args.postgres,
                         master_key_path=args.master_key or (None if not args.postgres else "glucotwin-cloud.master-key"))


def _service(args: argparse.Namespace) -> Any:
    from cloud_sync.service.app import Service

    return Service(_config(args))


def _serve(args: argparse.Namespace) -> int:
    import uvicorn

    from cloud_sync.reports.routes import register_routes
    from cloud_sync.service.app import create_app

    app = register_routes(create_app(_config(args)))  # clinician pages, FHIR export, Nightscout-compatible API
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level)
    return 0


def _with_tx(args: argparse.Namespace, action: str, fn: Any) -> Any:
    from cloud_sync.service import audit

    service = _service(args)
    try:
        with service.db.transaction() as tx:
            result = fn(service, tx)
            audit.append(tx, "cli:" + getpass.getuser(), action, None, {})
        return result
    finally:
        service.close()


def _create_clinic(args: argparse.Namespace) -> int:
    from cloud_sync.service import accounts

    print(_with_tx(args, "create_clinic", lambda s, tx: accounts.create_clinic(tx, args.name)))
    return 0


def _create_clinician(args: argparse.Namespace) -> int:
    from cloud_sync.service import accounts

    password = os.environ.get("GLUCOTWIN_PASSWORD") or getpass.getpass("password (12+ characters): ")
    if len(password) < 12:
        print("password must have at least 12 characters", file=sys.stderr)
        return 2
    print(_with_tx(args, "create_clinician",
                   lambda s, tx: accounts.create_clinician(tx, args.clinic_id, args.email, password)))
    return 0


def _create_patient(args: argparse.Namespace) -> int:
    from cloud_sync.service import accounts

    print(_with_tx(args, "create_patient", lambda s, tx: accounts.create_patient(tx, args.clinic_id, args.name)))
    return 0


def _enrollment_code(args: argparse.Namespace) -> int:
    from cloud_sync.keys import create_enrollment_code

    print(_with_tx(args, "enrollment_code",
                   lambda s, tx: create_enrollment_code(tx, args.patient_id, args.clinic_id)))
    return 0


def _admin_token(args: argparse.Namespace) -> int:
    from cloud_sync.service import accounts

    print(_with_tx(args, "admin_token", lambda s, tx: accounts.issue_token(
        tx, "admin", "cli:" + getpass.getuser(), ttl_s=int(args.ttl_hours * 3600))))
    return 0


def _rotate_ingest_key(args: argparse.Namespace) -> int:
    service = _service(args)
    try:
        print(json.dumps(service.keyring.rotate().to_json()))
    finally:
        service.close()
    return 0


def _list_ingest_keys(args: argparse.Namespace) -> int:
    service = _service(args)
    try:
        print(json.dumps(service.keyring.keys(), indent=2))
    finally:
        service.close()
    return 0


def _verify_audit(args: argparse.Namespace) -> int:
    from cloud_sync.errors import AuditChainBroken
    from cloud_sync.service import audit

    service = _service(args)
    try:
        print(f"audit chain OK: {audit.verify(service.db)} entries")
        return 0
    except AuditChainBroken as exc:
        print(f"audit chain BROKEN: {exc.message} ({exc.detail})", file=sys.stderr)
        return 1
    finally:
        service.close()
