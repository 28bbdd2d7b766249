"""Airflow-side access to the erasure ledger: the hashing secret (an Airflow Variable) and the Redactor."""

from __future__ import annotations

from airflow.sdk import Variable

from dataprotection.config import Plan
from dataprotection.gdpr.ledger import LedgerError, Redactor, check_hash_key


def gdpr_secret(plan: Plan) -> bytes:
    """The ledger's HMAC key from the Airflow Variable the plan names (env AIRFLOW_VAR_<NAME> works too)."""
    name = plan.gdpr.hash_key_variable
    try:
        value = Variable.get(name, default=None)
    except Exception as exc:  # noqa: BLE001 - a missing/unreachable Variable backend is reported below
        raise LedgerError(f"cannot read Airflow Variable {name!r} (gdpr.hash_key_variable): {exc}") from exc
    return check_hash_key(value, f"Airflow Variable {name!r}, set by gdpr.hash_key_variable")


def load_redactor(client, plan: Plan) -> Redactor:
    """Everything the erasure ledger says was erased, for a restore to skip."""
    return Redactor.load(client, plan, gdpr_secret(plan))
