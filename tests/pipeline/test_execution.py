"""Parallel execution: a failing unit never stops the others; summary and exit codes."""

from __future__ import annotations

from dataclasses import dataclass

from bids_app.errors import DataError
from bids_app.execution import UnitResult, exit_code_of, run_units, summary_table


@dataclass
class Task:
    name: str
    fail: str = ""


def work(task):
    if task.fail == "data":
        raise DataError(f"{task.name}: broken input")
    if task.fail == "bug":
        raise ZeroDivisionError("boom")
    return UnitResult(task.name, "ok")


def test_failures_are_isolated_in_parallel():
    tasks = [Task("a"), Task("b", "data"), Task("c")]
    results = run_units(work, tasks, n_procs=2, threads=1)
    assert [r.status for r in results] == ["ok", "failed", "ok"]
    assert results[1].exit_code == 65 and "broken input" in results[1].message
    assert exit_code_of(results) == 65
    table = summary_table(results)
    assert "3 unit(s): 2 ok, 1 failed" in table


def test_unexpected_errors_are_reported_not_raised():
    results = run_units(work, [Task("a", "bug"), Task("b")], n_procs=1)
    assert results[0].status == "failed" and "ZeroDivisionError" in results[0].message
    assert results[1].status == "ok"
    assert exit_code_of(results) == 1


def test_stop_on_first_crash():
    results = run_units(work, [Task("a", "data"), Task("b")], n_procs=1, stop_on_first_crash=True)
    assert len(results) == 1


def test_mixed_failure_codes_give_1():
    results = [UnitResult("a", "failed", exit_code=65), UnitResult("b", "failed", exit_code=66)]
    assert exit_code_of(results) == 1
    assert exit_code_of([UnitResult("a", "ok")]) == 0


def test_memory_limit_caps_concurrent_units_and_knows_nextqsm():
    from types import SimpleNamespace

    from bids_app.config import premade_settings
    from bids_app.config.execution import ExecutionOptions
    from bids_app.pipeline.plan import estimated_unit_bytes, parallel_units

    infos = [SimpleNamespace(shape=(256, 256, 176), n_echoes=5) for _ in range(4)]
    default, nextqsm = premade_settings("default"), premade_settings("nextqsm")
    per_unit = estimated_unit_bytes(infos[0], default)
    assert 1.0e9 < per_unit < 4.0e9  # the measured default pipeline peaks at 2.1 GB here
    assert estimated_unit_bytes(infos[0], nextqsm) > 8e9  # measured NeXtQSM peak 8.3 GiB
    options = ExecutionOptions(n_procs=4, mem_gb=16)
    assert parallel_units(infos, options, default) == min(4, int(16 * 1024**3 // per_unit))
    assert parallel_units(infos, options, nextqsm) == 1
    assert parallel_units(infos, ExecutionOptions(n_procs=3)) == 3
