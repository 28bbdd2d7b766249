"""What the application database says a user owns: their rows, and the S3 objects those rows name.

Framework-free (psycopg connection, boto3 clients). Nothing here changes anything. Table and
column names come from the validated plan and are quoted with `psycopg.sql.Identifier`; the user
id is always a bound parameter.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from dataprotection.config import Plan, Table


class ErasureInputError(ValueError):
    """A GDPR request parameter is invalid; the message names the field and what is allowed."""


def check_user_id(plan: Plan, user_id: Any) -> str:
    if not isinstance(user_id, str) or not re.fullmatch(plan.gdpr.user_id_pattern, user_id):
        raise ErasureInputError(f"user_id: {user_id!r} does not match {plan.gdpr.user_id_pattern}")
    if user_id in plan.reserved_user_ids:
        raise ErasureInputError(
            f"user_id: {user_id!r} is reserved for dataprotection's own canary objects "
            "(failover.canary_name, drill.canary_prefix), not a user"
        )
    return user_id


def check_request_reference(value: Any) -> str:
    from dataprotection.params import REQUEST_REFERENCE_PATTERN

    if not isinstance(value, str) or not re.fullmatch(REQUEST_REFERENCE_PATTERN, value):
        raise ErasureInputError(
            f"request_reference: {value!r} is not a ticket id (allowed: {REQUEST_REFERENCE_PATTERN})"
        )
    return value


# --------------------------------------------------------------------------- S3 URLs in rows
_VHOST = re.compile(r"^(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])\.s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com$")
_PATH_HOST = re.compile(r"^s3(?:[.-][a-z0-9-]+)?\.amazonaws\.com$")


def parse_s3_url(url: str | None) -> tuple[str, str] | None:
    """(bucket, key) of an `s3://b/k`, virtual-hosted or path-style S3 URL; None for anything else.

    The key is returned as written (URLs stored by the application are not always percent-encoded);
    `key_candidates` gives the decoded form as well.
    """
    if not url:
        return None
    parts = urlsplit(url.strip())
    if parts.scheme == "s3" and parts.netloc:
        key = parts.path.lstrip("/")
        return (parts.netloc, key) if key else None
    if parts.scheme not in ("http", "https"):
        return None
    host = (parts.hostname or "").lower()
    if m := _VHOST.match(host):
        key = parts.path.lstrip("/")
        return (m["bucket"], key) if key else None
    if _PATH_HOST.match(host):
        bucket, _, key = parts.path.lstrip("/").partition("/")
        return (bucket, key) if bucket and key else None
    return None


def key_candidates(key: str) -> list[str]:
    """The key as written and, if different, percent-decoded (which of them exists is for S3 to say)."""
    decoded = unquote(key)
    return [key] if decoded == key else [key, decoded]


# --------------------------------------------------------------------------- rows
@dataclass(frozen=True)
class ObjectRef:
    """An S3 object a row names (bucket, key), and where the reference came from."""

    bucket: str
    key: str
    table: str
    column: str


def user_rows(conn: psycopg.Connection, table: Table, user_id: str) -> list[dict[str, Any]]:
    """Every row of `table` belonging to `user_id` (parameterised; ordered by primary key)."""
    query = sql.SQL("SELECT * FROM {t} WHERE {u} = %s ORDER BY {pk}").format(
        t=sql.Identifier(table.name), u=sql.Identifier(table.user_column), pk=sql.Identifier(table.primary_key)
    )
    with conn.cursor(row_factory=dict_row) as cur:
        return cur.execute(query, (user_id,)).fetchall()


def row_refs(table: Table, row: dict[str, Any]) -> Iterator[ObjectRef]:
    """The S3 objects one row names: its bucket/key columns and its URL columns."""
    if table.bucket_column and table.key_column:
        bucket, key = row.get(table.bucket_column), row.get(table.key_column)
        if bucket and key:
            yield ObjectRef(bucket, key, table.name, table.key_column)
    for column in table.url_columns:
        parsed = parse_s3_url(row.get(column))
        if parsed:
            for key in key_candidates(parsed[1]):
                yield ObjectRef(parsed[0], key, table.name, column)


def user_prefixes(plan: Plan, user_id: str) -> list[tuple[str, str]]:
    """The plan's per-user folders of `user_id`: [(bucket, prefix)], e.g. user-uploads/<user_id>/."""
    return [(p.bucket, p.prefix.replace("{user_id}", user_id)) for p in plan.gdpr.user_prefixes]


def prefix_owner(plan: Plan, bucket: str, key: str) -> str | None:
    """The user id whose per-user folder holds `key` in `bucket`, if any (never a reserved name)."""
    owner = _folder_owner(plan, bucket, key)
    return None if owner in plan.reserved_user_ids else owner


def _folder_owner(plan: Plan, bucket: str, key: str) -> str | None:
    for p in plan.gdpr.user_prefixes:
        if p.bucket != bucket:
            continue
        head, _, tail = p.prefix.partition("{user_id}")
        if not key.startswith(head):
            continue
        rest = key[len(head):]
        if tail:
            user, sep, _ = rest.partition(tail)
            if sep and user and re.fullmatch(plan.gdpr.user_id_pattern, user):
                return user
        elif rest and re.fullmatch(plan.gdpr.user_id_pattern, rest):
            return rest
    return None
