"""Parallel execution: a failing unit never stops the others; summary and exit codes."""

from __future__ import annotations

from dataclasses import dataclass

from bids_app.errors import DataError
from bids_app.pipeline.execution import UnitResult, exit_code_of, run_units, summary_table


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
