"""Run units of work in parallel processes; one failing unit never stops the others.

Each unit runs in its own process (``spawn`` start method: no inherited thread pools or locks); its
exceptions are caught in the worker and returned as a :class:`UnitResult`, so the parent always gets
a result per unit and can print the summary table and choose the exit code.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import tempfile
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import EXIT_FAILURE, CannotCreateOutputError, QsmappError

LOGGER = logging.getLogger("qsmapp")


@dataclass
class UnitResult:
    name: str
    status: str  # "ok", "skipped" (complete already), "failed"
    seconds: float = 0.0
    message: str = ""
    exit_code: int = 0
    outputs: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    traceback: str = ""


def _thread_environment(threads: int) -> dict:
    value = str(max(1, threads))
    return {name: value for name in (
        "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMBA_NUM_THREADS",
        "QSMAPP_FFT_WORKERS", "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS",
    )}


def run_guarded(function, task) -> UnitResult:
    """Call ``function(task)``; turn any exception into a failed :class:`UnitResult`."""
    start = time.perf_counter()
    name = getattr(task, "name", str(task))
    try:
        result = function(task)
    except QsmappError as exc:
        return UnitResult(name, "failed", time.perf_counter() - start, str(exc), exc.exit_code,
                          traceback=traceback.format_exc())
    except MemoryError:
        return UnitResult(name, "failed", time.perf_counter() - start,
                          "out of memory: use fewer --n-procs or a machine with more memory", EXIT_FAILURE,
                          traceback=traceback.format_exc())
    except Exception as exc:  # a bug or an unforeseen input: report, keep going
        return UnitResult(name, "failed", time.perf_counter() - start,
                          f"unexpected error: {type(exc).__name__}: {exc} (run with -v for the traceback)",
                          EXIT_FAILURE, traceback=traceback.format_exc())
    result.seconds = time.perf_counter() - start
    return result


def _worker_init(environment: dict, log_level: int):
    os.environ.update(environment)
    logging.basicConfig(level=log_level, format="%(asctime)s %(levelname)-7s %(message)s", datefmt="%H:%M:%S")


def run_units(function, tasks, *, n_procs=1, threads=1, stop_on_first_crash=False,
              log_level=logging.INFO, what: str = "") -> list:
    """Run ``function`` on every task; results in task order. ``what`` names the work in the log lines
    ("registration to the template": ``[sub-01] registration to the template finished in 9.1 s``)."""
    environment = _thread_environment(threads)
    if n_procs <= 1 or len(tasks) <= 1:
        os.environ.update(environment)
        results = []
        for task in tasks:
            result = run_guarded(function, task)
            _log_result(result, what)
            results.append(result)
            if stop_on_first_crash and result.status == "failed":
                break
        return results
    results: dict = {}
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=min(n_procs, len(tasks)), mp_context=context,
                             initializer=_worker_init, initargs=(environment, log_level)) as pool:
        pending = {pool.submit(run_guarded, function, task): i for i, task in enumerate(tasks)}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                index = pending.pop(future)
                try:
                    result = future.result()
                except Exception as exc:  # the worker process itself died (e.g. killed for memory)
                    result = UnitResult(tasks[index].name, "failed", 0.0,
                                        f"worker process died: {exc}", EXIT_FAILURE)
                _log_result(result, what)
                results[index] = result
                if stop_on_first_crash and result.status == "failed":
                    for other in pending:
                        other.cancel()
                    pending = {}
                    break
    return [results[i] for i in sorted(results)]


def _log_result(result: UnitResult, what: str = ""):
    if result.status == "failed":
        LOGGER.error("[%s] FAILED: %s", result.name, result.message)
        LOGGER.debug("[%s] %s", result.name, result.traceback)
    elif result.status == "skipped":
        LOGGER.info("[%s] complete already (same settings): skipped; use --no-resume to redo", result.name)
    else:
        LOGGER.info("[%s] %sfinished in %.1f s", result.name, f"{what} " if what else "", result.seconds)


def summary_table(results) -> str:
    width = max([len("unit")] + [len(r.name) for r in results])
    lines = [f"{'unit':<{width}}  {'status':<8} {'time':>8}  message", "-" * (width + 40)]
    for r in results:
        lines.append(f"{r.name:<{width}}  {r.status:<8} {r.seconds:>7.1f}s  {r.message}")
    failed = sum(r.status == "failed" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    lines.append(f"{len(results)} unit(s): {len(results) - failed - skipped} ok"
                 + (f", {skipped} skipped (complete already)" if skipped else "") + f", {failed} failed")
    return "\n".join(lines)


def exit_code_of(results) -> int:
    """0 when all succeeded; the shared exit code of the failures, else 1."""
    codes = {r.exit_code for r in results if r.status == "failed"}
    if not codes:
        return 0
    return codes.pop() if len(codes) == 1 else EXIT_FAILURE


def attach_run_log(output_dir, run_id: str) -> logging.Handler:
    """Send the ``qsmapp`` logger to ``OUTPUT_DIR/logs/run-<id>.log`` too (remove the handler when done)."""
    path = Path(output_dir) / "logs" / f"run-{run_id}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(message)s"))
    logging.getLogger("qsmapp").addHandler(handler)
    return handler


def make_work_root(work_dir, run_id: str, *, subfolder: str | None = None) -> tuple[Path, bool]:
    """The working folder of a run and whether to remove it afterwards.

    ``--work-dir`` (kept; ``subfolder`` below it when given) or a fresh temporary folder (removed).
    """
    if work_dir is not None:
        root = Path(work_dir) / subfolder if subfolder else Path(work_dir)
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise CannotCreateOutputError(f"cannot create --work-dir {root}: {exc.strerror or exc}") from None
        return root, False
    return Path(tempfile.mkdtemp(prefix=f"qsmapp-{run_id}-")), True
