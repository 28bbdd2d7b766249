"""Operators of s3_file_recovery and s3_bulk_recovery: resolve what was live (one exact key, or every key
under a prefix) at a time, copy it back server-side, and write the report to the compliance bucket.

Both re-apply the GDPR erasure ledger: a key an erasure removed is reported as "erased" and never
restored (the report's `gdpr_ledger` counts them)."""

from __future__ import annotations

from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

from airflow.sdk.exceptions import AirflowFailException
from botocore.exceptions import ClientError

from dataprotection import pointintime as pit
from dataprotection.copier import CopyTuning, MiB
from dataprotection.listing import is_versioned, iso
from dataprotection.operators.base import DataProtectionOperator
from dataprotection.operators.gdpr_common import load_redactor
from dataprotection.reports import write_report


def _now() -> str:
    return iso(datetime.now(UTC))


def _opt(value: Any) -> str | None:
    """A nullable param rendered through a template: None, '' and 'None' mean unset."""
    text = "" if value is None else str(value).strip()
    return None if text in ("", "None") else text


def _flag(value: Any) -> bool:
    return str(value).strip().lower() in ("true", "1")


def _run_after(context) -> datetime | None:
    dag_run = context.get("dag_run")
    return getattr(dag_run, "run_after", None)


class _PointInTimeOperator(DataProtectionOperator):
    def execute(self, context) -> Any:
        try:
            return self.recover(context)
        except pit.PointInTimeError as exc:
            # a bad request never succeeds on retry: fail now, with the message naming the param
            raise AirflowFailException(f"{self.task_id}: {exc}") from None

    def recover(self, context) -> Any:
        raise NotImplementedError

    @property
    def tuning(self) -> CopyTuning:
        return CopyTuning(self.plan.backup.multipart_threshold_mb * MiB, self.plan.backup.multipart_chunk_mb * MiB)


# --------------------------------------------------------------------------- one file
class S3FileVersionResolveOperator(_PointInTimeOperator):
    """Validates the params and picks the version of exactly `key` to restore (read-only). Returns the
    resolution: status "found" with its origin (version id, size, ETag), "did_not_exist" with why, or
    "erased" when the GDPR erasure ledger says the key was erased (it is then never restored)."""

    template_fields = ("bucket", "key", "mode", "version_id", "as_of", "source", "destination", "recovery_prefix")

    def __init__(self, *, bucket: str, key: str, mode: str, version_id: Any, as_of: Any, source: str,
                 destination: str, recovery_prefix: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.bucket = bucket
        self.key = key
        self.mode = mode
        self.version_id = version_id
        self.as_of = as_of
        self.source = source
        self.destination = destination
        self.recovery_prefix = recovery_prefix

    def recover(self, context) -> dict:
        dest_key = pit.file_destination(self.plan, bucket=self.bucket, key=self.key, destination=self.destination,
                                        recovery_prefix=self.recovery_prefix)
        as_of = pit.parse_as_of(self.as_of) if _opt(self.as_of) else None
        if as_of is not None:
            pit.check_not_after(as_of, _run_after(context))
        resolution = pit.resolve_file(
            self.primary, self.primary, bucket=self.bucket, key=self.key, mode=self.mode,
            version_id=_opt(self.version_id), as_of=as_of, source=self.source, store_bucket=self.plan.backup.bucket,
            redactor=load_redactor(self.primary, self.plan),
        )
        resolution.update(destination=self.destination, dest_bucket=self.bucket, dest_key=dest_key)
        if resolution["status"] == "found":
            o = resolution["origin"]
            self.log.info("s3://%s/%s: restoring version %s (%d bytes, last modified %s) into s3://%s/%s",
                          self.bucket, self.key, o["source_version_id"], o["size"], o["last_modified"],
                          self.bucket, dest_key)
        else:
            self.log.warning("s3://%s/%s %s — nothing will be restored", self.bucket, self.key,
                             resolution["reason"])
        return resolution


class S3FileRestoreOperator(_PointInTimeOperator):
    """Copies the resolved version server-side (in place: a new current version; else under the recovery
    prefix), verifies it with a HEAD, and writes the report. Re-running copies nothing twice."""

    template_fields = ("resolution",)

    def __init__(self, *, resolution: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.resolution = resolution

    def recover(self, context) -> dict:
        started = _now()
        r = dict(self.resolution)
        result = pit.restore_file(self.primary, r, dest_bucket=r["dest_bucket"], dest_key=r["dest_key"],
                                  tuning=self.tuning)
        doc = {
            "run_id": context["run_id"],
            "params": dict(context["params"]),
            "status": r["status"],
            "reason": r.get("reason"),
            "resolution": r,
            "restored": result,
            "gdpr_ledger": {"erased_skipped": int(r["status"] == "erased")},
            "started_at": started,
            "finished_at": _now(),
        }
        uri = write_report(self.primary, self.plan, "file-recovery", context["run_id"], doc)
        if r["status"] == "found":
            origin = r["origin"]
            self.log.info("%s s3://%s/%s from version %s: %s; report %s", result["action"], r["bucket"], r["key"],
                          origin["source_version_id"], {k: result.get(k) for k in ("dest", "new_version_id",
                                                                                  "size", "checksum")}, uri)
        else:
            self.log.warning("nothing restored: s3://%s/%s %s; report %s", r["bucket"], r["key"], r["reason"], uri)
        return {"report": uri, "status": r["status"], "action": result["action"],
                "version_id": (r.get("origin") or {}).get("source_version_id"),
                **{k: result.get(k) for k in ("dest", "new_version_id", "size", "checksum") if k in result}}


# --------------------------------------------------------------------------- a prefix
class S3BulkRecoveryCheckOperator(_PointInTimeOperator):
    """Validates the request before anything is listed: times, destination (never over the source it
    reads unless in place), target bucket, and for source=snapshot the snapshot to use. Returns the request."""

    template_fields = ("bucket", "prefix", "as_of", "source", "destination", "target_bucket", "target_prefix",
                       "delete_newer", "dry_run")

    def __init__(self, *, bucket: str, prefix: str, as_of: Any, source: str, destination: str, target_bucket: Any,
                 target_prefix: Any, delete_newer: Any, dry_run: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.bucket = bucket
        self.prefix = prefix
        self.as_of = as_of
        self.source = source
        self.destination = destination
        self.target_bucket = target_bucket
        self.target_prefix = target_prefix
        self.delete_newer = delete_newer
        self.dry_run = dry_run

    def recover(self, context) -> dict:
        if not _opt(self.as_of):
            raise pit.PointInTimeError("as_of: required, e.g. 2026-12-01T10:00:00Z")
        as_of = pit.parse_as_of(self.as_of)
        pit.check_not_after(as_of, _run_after(context))
        target_bucket, target_prefix = _opt(self.target_bucket), _opt(self.target_prefix) or ""
        pit.check_bulk_request(self.plan, bucket=self.bucket, prefix=self.prefix, destination=self.destination,
                               target_bucket=target_bucket, target_prefix=target_prefix,
                               delete_newer=_flag(self.delete_newer))
        request = {
            "bucket": self.bucket, "prefix": self.prefix, "as_of": iso(as_of), "source": self.source,
            "destination": self.destination, "delete_newer": _flag(self.delete_newer), "dry_run": _flag(self.dry_run),
            "target_bucket": None, "target_prefix": "", "snapshot_id": None, "snapshot_time": None,
            "store_bucket": None,
        }
        if self.destination == "other_location":
            request.update(target_bucket=target_bucket or self.bucket, target_prefix=target_prefix)
            self._check_bucket_exists(request["target_bucket"])
        if self.source == "snapshot":
            found = pit.snapshot_as_of(self.primary, self.plan.backup.bucket, self.bucket, as_of)
            if found is None:
                raise pit.PointInTimeError(
                    f"source: no complete daily snapshot of {self.bucket!r} taken at or before {iso(as_of)} in "
                    f"s3://{self.plan.backup.bucket}; use source=versions or a later as_of"
                )
            sid, summary = found
            request.update(snapshot_id=sid, snapshot_time=iso(pit.snapshot_time(summary)),
                           store_bucket=self.plan.backup.bucket)
        elif self.source == "versions":
            if not is_versioned(self.primary, self.bucket):
                raise pit.PointInTimeError(f"source: bucket {self.bucket!r} is not versioned; use source=snapshot")
        else:
            raise pit.PointInTimeError(f"source: {self.source!r} is not one of versions, snapshot")
        self.log.info("bulk recovery request: %s", request)
        return request

    def _check_bucket_exists(self, bucket: str) -> None:
        try:
            self.primary.head_bucket(Bucket=bucket)
        except ClientError as exc:
            raise pit.PointInTimeError(f"target_bucket: s3://{bucket} cannot be used ({exc.response['Error']['Code']});"
                                       " create it (versioned) first or choose another") from None


class S3BulkRecoveryOperator(_PointInTimeOperator):
    """Restores every key under the prefix to its state at `as_of` (or only plans it with dry_run):
    streams the version listing or the snapshot manifest, copies server-side in parallel, adds delete
    markers for newer keys with delete_newer, leaves keys erased under GDPR (the ledger) alone, and
    writes the report (counts + a sample of decisions)."""

    template_fields = ("request",)

    def __init__(self, *, request: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.request = request

    def recover(self, context) -> dict:
        started = _now()
        r = dict(self.request)
        req = pit.BulkRequest(
            bucket=r["bucket"], prefix=r["prefix"], as_of=pit.parse_as_of(r["as_of"]), source=r["source"],
            snapshot_id=r["snapshot_id"], store_bucket=r["store_bucket"], target_bucket=r["target_bucket"],
            target_prefix=r["target_prefix"], delete_newer=r["delete_newer"], dry_run=r["dry_run"],
            concurrency=self.plan.backup.max_concurrency, tuning=self.tuning, excludes=tuple(self.plan.excludes),
        )
        result = pit.bulk_recover(self.primary, req, redactor=load_redactor(self.primary, self.plan))
        doc = {
            "run_id": context["run_id"],
            "params": dict(context["params"]),
            "request": r,
            "dry_run": req.dry_run,
            **asdict(result),
            "gdpr_ledger": {"erased_skipped": result.erased_skipped},
            "started_at": started,
            "finished_at": _now(),
        }
        uri = write_report(self.primary, self.plan, "bulk-recovery", context["run_id"], doc)
        counts = dict(result.counts)
        self.log.info("%s%s: %d keys %s, %d bytes restored; report %s", "dry run — " if req.dry_run else "",
                      f"s3://{req.bucket}/{req.prefix}", result.keys, {k: v for k, v in counts.items() if v},
                      result.bytes_restored, uri)
        if result.counts["failed"]:
            raise RuntimeError(f"{result.counts['failed']} keys could not be restored (e.g. {result.failures[:3]}); "
                               f"report {uri}. Re-run the task: keys already restored are not copied again.")
        return {"report": uri, "dry_run": req.dry_run, "keys": result.keys, **counts,
                "bytes": result.bytes_restored, "erased_skipped": result.erased_skipped,
                "versions_listed": result.versions_listed,
                "max_in_flight": result.max_in_flight}
