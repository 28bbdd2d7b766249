"""Operators of monthly_recovery_test: scratch space (setup/teardown), the four restore scenarios, report."""

from __future__ import annotations

from functools import cached_property

from airflow.sdk.exceptions import AirflowFailException

from dataprotection import recoverytest as rt
from dataprotection.hooks.appdb import AppDatabaseHook
from dataprotection.operators.base import DataProtectionOperator
from dataprotection.operators.failover import VerificationFailed
from dataprotection.reports import write_report

REPORT_KIND = "recovery-test"


class _RecoveryTestOperator(DataProtectionOperator):
    @cached_property
    def db_hook(self) -> AppDatabaseHook:
        return AppDatabaseHook(self.plan.connections.app_db)

    def connect(self):
        return self.db_hook.get_conn(autocommit=True)


class RecoveryScratchCreateOperator(_RecoveryTestOperator):
    """Setup: the run's scratch bucket (primary region, public access blocked) and scratch schema."""

    def execute(self, context) -> dict:
        with self.connect() as conn:
            names = rt.create_scratch(self.primary, conn, self.plan, context["run_id"])
        self.log.info("scratch space: s3://%s and schema %s", names["bucket"], names["schema"])
        return names


class RecoveryScratchRemoveOperator(_RecoveryTestOperator):
    """Teardown: always runs; deletes every object version and the scratch bucket, drops the schema."""

    def execute(self, context) -> dict:
        with self.connect() as conn:
            out = rt.remove_scratch(self.primary, conn, self.plan, context["run_id"])
        self.log.info("scratch space removed: %s", out)
        return out


class RecoveryArchiveRequestOperator(_RecoveryTestOperator):
    """First step of the archive_object scenario: picks the archived object and requests its restore.
    Returns the pick (bucket, snapshot, key, stored location, size, checksum, request time)."""

    def execute(self, context) -> dict:
        try:
            return rt.archive_request(self.primary, self.plan, context["run_id"])
        except rt.ScenarioError as exc:  # no archive yet: retrying would not help
            raise AirflowFailException(str(exc)) from None


class RecoveryScenarioOperator(_RecoveryTestOperator):
    """Runs one scenario (snapshot_sample, point_in_time, archive_object, table_export) into the scratch space.
    `archive_object` verifies the restore requested by RecoveryArchiveRequestOperator: pass its output as
    `archive_pick`, and wait for the restore (S3GlacierRestoreSensor) in between."""

    template_fields = ("archive_pick",)

    def __init__(self, *, scenario: str, archive_pick: dict | None = None, **kwargs) -> None:
        super().__init__(**kwargs)
        if scenario not in rt.SCENARIOS:
            raise ValueError(f"scenario: {scenario!r} is not allowed; expected one of {', '.join(rt.SCENARIOS)}")
        if (scenario == "archive_object") != (archive_pick is not None):
            raise ValueError("archive_pick: required for the archive_object scenario (the restore request's "
                             "output), and only for it")
        self.scenario = scenario
        self.archive_pick = archive_pick

    def execute(self, context) -> dict:
        try:
            return self._run(context)
        except rt.ScenarioError as exc:  # nothing to test yet (no snapshot...): retrying would not help
            raise AirflowFailException(str(exc)) from None

    def _run(self, context) -> dict:
        run_id = context["run_id"]
        bucket, schema = rt.scratch_names(self.plan, run_id)
        if self.scenario == "snapshot_sample":
            result = rt.snapshot_sample(self.primary, self.plan, run_id, bucket)
        elif self.scenario == "point_in_time":
            # the instant the run started: fixed per run (a re-run samples the same), and data written
            # after a scheduled run's data interval still counts
            result = rt.point_in_time(self.primary, self.plan, run_id, bucket, context["dag_run"].run_after)
        elif self.scenario == "archive_object":
            result = rt.archive_verify(self.primary, self.plan, self.archive_pick, bucket)
        else:
            with self.connect() as conn:
                result = rt.table_export(self.primary, conn, self.plan, schema)
        self.log.info("%s: %d objects, %d mismatches, %.3f s", self.scenario, result["objects"],
                      len(result["mismatches"]), result["seconds"])
        return result


class RecoveryTestReportOperator(_RecoveryTestOperator):
    """Writes `reports/recovery-test/<run id>.json`; fails (naming the object) if any scenario mismatched
    or missed its target. Runs when a scenario failed too (that scenario is reported as not run)."""

    def __init__(self, *, scenario_task_ids: dict[str, str], **kwargs) -> None:
        super().__init__(**kwargs)
        self.scenario_task_ids = scenario_task_ids

    def execute(self, context) -> dict:
        ti = context["ti"]
        results = rt.evaluate(self.plan, {name: ti.xcom_pull(task_ids=task_id) or None
                                          for name, task_id in self.scenario_task_ids.items()})
        bucket, schema = rt.scratch_names(self.plan, context["run_id"])
        doc = {"format": 1, "run_id": context["run_id"], "scratch": {"bucket": bucket, "schema": schema},
               "sample_size": self.plan.recovery_test.sample_size, "scenarios": results,
               "passed": all(r["passed"] for r in results)}
        location = write_report(self.primary, self.plan, REPORT_KIND, context["run_id"], doc)
        self.log.info("recovery test report %s: %s", location, {r["scenario"]: r["passed"] for r in results})
        problem = rt.first_problem(results)
        if problem:
            failed = [r for r in results if not r["passed"]]
            raise VerificationFailed("recovery_test", f"{len(failed)} scenarios failed", "0 failed",
                                     f"{problem}; report {location}")
        return {"report": location, "passed": True,
                "rto_seconds": {r["scenario"]: r["rto_seconds"] for r in results}}
