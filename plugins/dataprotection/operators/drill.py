"""Operators of quarterly_dr_drill: canaries, simulated outage + failover, integrity, failback, report.

The drill acts only on the drill's DNS record and function (`drill:` in the plan), never on the
production ones, with the same failover code as s3_regional_failover."""

from __future__ import annotations

import hashlib
import time
from typing import Any

from dataprotection import drill, failover
from dataprotection.operators.base import run_time
from dataprotection.operators.failover import VerificationFailed, _FailoverClientsMixin
from dataprotection.reports import write_report
from dataprotection.s3client import make_client
from dataprotection.versions import delete_versions, key_versions

REPORT_KIND = "dr-drill"


def run_tag(run_id: str) -> str:
    return hashlib.sha256(run_id.encode()).hexdigest()[:12]


class DrillCanariesOperator(_FailoverClientsMixin):
    """Writes the drill's canaries to every critical source bucket; returns them with their write times."""

    def execute(self, context) -> dict:
        canaries = drill.write_canaries(self.primary, self.plan, run_tag(context["run_id"]))
        return {"canaries": canaries}


class DrillOutageFailoverOperator(_FailoverClientsMixin):
    """Waits (up to drill.replication_wait_seconds) for the canaries to replicate, starts the simulated
    outage of the primary region, measures RPO from the canaries, fails the drill record and function
    over and verifies; RTO = outage start -> verified failover."""

    template_fields = ("canaries",)

    def __init__(self, *, canaries: Any, **kwargs) -> None:
        super().__init__(**kwargs)
        self.canaries = canaries

    def execute(self, context) -> dict:
        canaries = self.canaries["canaries"]
        drill.wait_for_replication(self.backup_region, canaries, self.plan.drill.replication_wait_seconds)
        outage_ts = time.time()
        # the primary region is now unavailable: a client of its own that refuses every call
        blocked = drill.block_region(
            make_client(self.plan.regions.primary, endpoint_url=self.s3_hook.endpoint_url,
                        session=self.s3_hook.session), self.plan.regions.primary)
        try:
            blocked.head_bucket(Bucket=self.plan.source_buckets[0].name)
            refused = False
        except drill.RegionUnavailable:
            refused = True
        self.log.info("simulated outage of %s started at %s", self.plan.regions.primary, drill.iso(outage_ts))
        clients = failover.Clients(route53=self.failover_clients.route53, lambda_=self.failover_clients.lambda_,
                                   s3={self.plan.regions.primary: blocked,
                                       self.plan.regions.backup: self.backup_region})
        failover_ts = time.time()
        rpo = drill.measure_rpo(self.backup_region, canaries, failover_ts)
        report = failover.run(self.plan, clients, failover.scope(self.plan, "drill"), "failover", dry_run=False)
        verified_ts = time.time()
        self.log.info("failover verified=%s; RPO %.3f s (%d canaries missing); RTO %.3f s", report["verified"],
                      rpo["rpo_seconds"], len(rpo["missing"]), verified_ts - outage_ts)
        return {"outage_started_at": drill.iso(outage_ts), "primary_refused_calls": refused,
                "failover_at": drill.iso(failover_ts), "verified_at": drill.iso(verified_ts),
                "rto_seconds": round(verified_ts - outage_ts, 3), "rpo": rpo, "failover": report}


class DrillIntegrityOperator(_FailoverClientsMixin):
    """Outage over: primary vs replica, within the replicated prefixes (missing, extra, mismatched)."""

    def execute(self, context) -> dict:
        started = time.time()
        result = drill.check_integrity(self.primary, self.backup_region, self.plan)
        self.log.info("integrity: %d missing, %d extra, %d mismatched of %d primary objects", result["missing"],
                      result["extra"], result["mismatched"], result["primary_objects"])
        return {**result, "checked_at": drill.iso(started)}


class DrillFailbackOperator(_FailoverClientsMixin):
    """Fails the drill record and function back to the primary and verifies; removes the drill's canaries.
    Runs even when an earlier step failed (the drill record must not stay failed over)."""

    def __init__(self, *, canaries_task_id: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.canaries_task_id = canaries_task_id

    def execute(self, context) -> dict:
        self.canaries = context["ti"].xcom_pull(task_ids=self.canaries_task_id)
        report = failover.run(self.plan, self.failover_clients, failover.scope(self.plan, "drill"), "failback",
                              dry_run=False)
        removed = 0
        for c in (self.canaries or {}).get("canaries", []):
            for client, bucket in ((self.primary, c["bucket"]), (self.backup_region, c["replica"])):
                removed += delete_versions(client, bucket, key_versions(client, bucket, c["key"]))
        return {**report, "canary_versions_removed": removed}


class DrillReportOperator(_FailoverClientsMixin):
    """Writes the drill report (`reports/dr-drill/<run id>.json`); fails if any scenario failed."""

    def __init__(self, *, schedule: str, outage_task_id: str, integrity_task_id: str, failback_task_id: str,
                 **kwargs) -> None:
        super().__init__(**kwargs)
        self.schedule = schedule
        self.outage_task_id = outage_task_id
        self.integrity_task_id = integrity_task_id
        self.failback_task_id = failback_task_id

    def execute(self, context) -> dict:
        # pulled here, not templated: a step that failed has no result, and the report still gets written
        outage, integrity, failback = (context["ti"].xcom_pull(task_ids=t) or None for t in
                                       (self.outage_task_id, self.integrity_task_id, self.failback_task_id))
        results = drill.scenarios(self.plan, outage, integrity, failback)
        sc = failover.scope(self.plan, "drill")
        target = self.plan.targets.get("regional_outage")
        when = run_time(context)
        doc = {
            "format": 1, "run_id": context["run_id"], "drill_record": sc.record_name,
            "drill_function": sc.function_name, "primary_region": self.plan.regions.primary,
            "backup_region": self.plan.regions.backup,
            "outage_started_at": (outage or {}).get("outage_started_at"),
            "failover_verified_at": (outage or {}).get("verified_at"),
            "rto_seconds": (outage or {}).get("rto_seconds"),
            "rpo_seconds": ((outage or {}).get("rpo") or {}).get("rpo_seconds"),
            "targets": {"rto_seconds": target.rto_minutes * 60 if target else None,
                        "rpo_seconds": target.rpo_minutes * 60 if target else None},
            "scenarios": results, "passed": all(r["passed"] for r in results),
            "issues": drill.issues(outage, integrity, failback, results),
            "rpo": (outage or {}).get("rpo"), "integrity": integrity,
            "failover": (outage or {}).get("failover"), "failback": failback,
            "primary_refused_calls_during_outage": (outage or {}).get("primary_refused_calls"),
            "next_drill": drill.next_drill(self.schedule, when),
        }
        location = write_report(self.primary, self.plan, REPORT_KIND, context["run_id"], doc)
        self.log.info("drill report %s: %s", location, {r["scenario"]: r["passed"] for r in results})
        failed = [r for r in results if not r["passed"]]
        if failed:
            first = failed[0]
            raise VerificationFailed(f"dr_drill_{first['scenario']}", first["measured"], first["target"],
                                     f"{len(failed)} scenarios failed ({', '.join(r['scenario'] for r in failed)});"
                                     f" report {location}")
        return {"report": location, "rto_seconds": doc["rto_seconds"], "rpo_seconds": doc["rpo_seconds"],
                "passed": True}
