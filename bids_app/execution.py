"""Run units of work in parallel processes; one failing unit never stops the others.

Each unit runs in its own process (``spawn`` start method: no inherited thread pools or locks); its
exceptions are caught in the worker and returned as a :class:`UnitResult`, so the parent always gets
a result per unit and can print the summary table and choose the exit code.

Process lifetime: a worker never outlives the run. The kernel kills it when its parent dies (Linux
``PR_SET_PDEATHSIG``), and a watchdog thread does the same wherever that is unavailable; workers stay
in the parent's process group, so a scheduler or shell signalling the job's group reaches them too;
they ignore SIGINT/SIGHUP (the main process decides). When the main process is signalled
(:func:`signal_handlers`), :func:`run_units` kills the workers and raises
:class:`~bids_app.errors.Interrupted` carrying the results so far, the unfinished units marked
``interrupted``.
"""

from __future__ import annotations

import ctypes
import errno
import json
import logging
import multiprocessing
import os
import shutil
import signal
import tempfile
import threading
import time
import traceback
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .derivatives.atomic import host_name, pid_alive, write_error
from .errors import EXIT_FAILURE, CannotCreateOutputError, Interrupted, QsmappError
from .progress import eta_seconds

LOGGER = logging.getLogger("qsmapp")


@dataclass
class UnitResult:
    name: str
    status: str  # "ok", "skipped" (complete already), "failed", "interrupted"
    seconds: float = 0.0
    message: str = ""
    exit_code: int = 0
    outputs: list = field(default_factory=list)
    notes: list = field(default_factory=list)
    traceback: str = ""
    record: dict | None = None  # what the completion record must hold (written by the main process)

LOG_FORMAT = "%(asctime)s %(levelname)-7s [pid %(process)d] %(message)s"
# OS errors that mean "the output cannot be written", whichever file they hit: exit 73 with the path.
_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)
_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))


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
    except OSError as exc:
        if exc.errno not in _WRITE_ERRNOS:
            return _unexpected(name, start, exc)
        error = write_error(exc.filename or "a file of this unit", exc)
        return UnitResult(name, "failed", time.perf_counter() - start, str(error), error.exit_code,
                          traceback=traceback.format_exc())
    except MemoryError:
        return UnitResult(name, "failed", time.perf_counter() - start,
                          "out of memory: use fewer --n-procs or a machine with more memory", EXIT_FAILURE,
                          traceback=traceback.format_exc())
    except Exception as exc:  # a bug or an unforeseen input: report, keep going
        return _unexpected(name, start, exc)
    result.seconds = time.perf_counter() - start
    return result


def _unexpected(name, start, exc) -> UnitResult:
    return UnitResult(name, "failed", time.perf_counter() - start,
                      f"unexpected error: {type(exc).__name__}: {exc} (run with -v for the traceback)",
                      EXIT_FAILURE, traceback=traceback.format_exc())


# --- process lifetime -----------------------------------------------------------------------------
_PR_SET_PDEATHSIG = 1


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker die as soon as the process ``parent_pid`` that started it is gone."""
    try:  # Linux: the kernel sends SIGKILL when the parent thread exits, even after its kill -9
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        pass
    if os.getppid() != parent_pid:  # the parent died before the line above took effect
        os._exit(1)

    def watchdog():  # other systems (and belt and braces): re-parenting means the parent is gone
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=watchdog, name="qsmapp-parent-watchdog", daemon=True).start()


def _worker_init(environment: dict, log_level: int, parent_pid: int | None = None):
    os.environ.update(environment)
    for signum in _SIGNALS:
        if signum != signal.SIGTERM:  # SIGTERM keeps its default: a group-wide SIGTERM ends workers at once
            signal.signal(signum, signal.SIG_IGN)
    if parent_pid is not None:
        _die_with_parent(parent_pid)
    logging.basicConfig(level=log_level, format=LOG_FORMAT, datefmt="%H:%M:%S")


@contextmanager
def signal_handlers():
    """Turn SIGTERM, SIGINT and SIGHUP into :class:`Interrupted` in the main thread, for the block.

    Only the first signal interrupts; later ones (a scheduler repeating SIGTERM) are ignored so that
    the clean-up and the summary are not cut short. Previous handlers are restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    fired = []

    def handler(signum, frame):
        if fired:
            return
        fired.append(signum)
        raise Interrupted(signum, signal.Signals(signum).name)

    previous = {}
    for signum in _SIGNALS:
        try:
            previous[signum] = signal.signal(signum, handler)
        except (OSError, ValueError):
            pass
    try:
        yield
    finally:
        for signum, old in previous.items():
            signal.signal(signum, old)


def _descendants(pid: int) -> list[int]:
    """Process ids below ``pid`` (children first), from /proc; empty where /proc is unavailable."""
    found, queue = [], [pid]
    while queue:
        current = queue.pop()
        for task in Path(f"/proc/{current}/task").glob("*"):
            try:
                children = [int(x) for x in (task / "children").read_text().split()]
            except (OSError, ValueError):
                continue
            found += children
            queue += children
    return found


def _kill_workers(pool) -> None:
    """Kill the pool's worker processes (and what they started, e.g. FastSurfer) and wait until they are gone."""
    processes = list(getattr(pool, "_processes", {}).values())
    for process in processes:
        for pid in _descendants(process.pid) if process.pid else []:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
    for process in processes:
        try:
            process.kill()
        except (OSError, ValueError, AttributeError):
            pass
    for process in processes:
        try:
            process.join(timeout=5)
        except (OSError, ValueError, AssertionError):
            pass
    pool.shutdown(wait=False, cancel_futures=True)


def _interrupted(tasks, results: dict, exc: Interrupted) -> Interrupted:
    for index, task in enumerate(tasks):
        if index not in results:
            results[index] = UnitResult(getattr(task, "name", str(task)), "interrupted",
                                        message=f"interrupted by {exc.name}; re-run the same command to resume",
                                        exit_code=exc.exit_code)
    exc.results = [results[i] for i in sorted(results)]
    return exc


def run_units(function, tasks, *, n_procs=1, threads=1, stop_on_first_crash=False,
              log_level=logging.INFO, on_result=None, what: str = "") -> list:
    """Run ``function`` on every task; results in task order.

    ``on_result(task, result)`` is called in this (the main) process as each result arrives, e.g. to
    write the completion record; an error it raises turns the result into a failure. ``what`` names
    the work in the log lines ("registration to the template": ``[sub-01] registration to the
    template finished in 9.1 s``).

    Raises
    ------
    Interrupted
        A signal stopped the run: the workers are killed, ``exc.results`` holds one result per task
        (status ``interrupted`` for those that had not finished).
    """
    environment = _thread_environment(threads)
    results: dict = {}
    counter = _UnitCounter(len(tasks), what)

    def finish(index, result):
        if on_result is not None and result.status != "failed":
            try:
                on_result(tasks[index], result)
            except QsmappError as exc:
                result = UnitResult(result.name, "failed", result.seconds, str(exc), exc.exit_code)
        _log_result(result, what)
        results[index] = result
        counter.add(result)
        return result

    if n_procs <= 1 or len(tasks) <= 1:
        os.environ.update(environment)
        try:
            for index, task in enumerate(tasks):
                result = finish(index, run_guarded(function, task))
                if stop_on_first_crash and result.status == "failed":
                    break
        except Interrupted as exc:
            raise _interrupted(tasks, results, exc) from None
        return [results[i] for i in sorted(results)]
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=min(n_procs, len(tasks)), mp_context=context,
                               initializer=_worker_init, initargs=(environment, log_level, os.getpid()))
    try:
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
                result = finish(index, result)
                if stop_on_first_crash and result.status == "failed":
                    for other in pending:
                        other.cancel()
                    pending = {}
                    break
    except Interrupted as exc:
        _kill_workers(pool)
        raise _interrupted(tasks, results, exc) from None
    pool.shutdown(wait=True)
    return [results[i] for i in sorted(results)]


class _UnitCounter:
    """``k/N units done`` after each result of a run of several units, with an ETA.

    The ETA is the wall time so far per *processed* unit times the units left: resumed units (complete
    already) take no time and would make the rest look faster than it is. Wall time, not the units' own
    times, so that parallel units are counted as they run.
    """

    def __init__(self, total: int, what: str = "", clock=time.perf_counter):
        self.total, self.what, self.clock = total, what, clock
        self.start = clock()
        self.done = self.processed = 0

    def add(self, result: UnitResult) -> str | None:
        """Count ``result``; log (and return) the progress line, or None for a run of one unit."""
        self.done += 1
        self.processed += result.status != "skipped"
        if self.total <= 1:
            return None
        left = self.total - self.done
        eta = eta_seconds(self.processed, self.processed + left, self.clock() - self.start) if left else None
        line = (f"{self.what or 'units'}: {self.done}/{self.total} unit(s) done"
                + (f", about {eta:.0f} s left" if eta is not None else ""))
        LOGGER.info("%s", line)
        return line


def _log_result(result: UnitResult, what: str = ""):
    if result.status == "failed":
        LOGGER.error("[%s] FAILED: %s", result.name, result.message)
        LOGGER.debug("[%s] %s", result.name, result.traceback)
    elif result.status == "interrupted":
        LOGGER.warning("[%s] interrupted", result.name)
    elif result.status == "skipped":
        LOGGER.info("[%s] complete already (same settings): resumed, nothing to redo; use --no-resume to redo "
                    "it", result.name)
    else:
        LOGGER.info("[%s] %sfinished in %.1f s", result.name, f"{what} " if what else "", result.seconds)


def summary_table(results) -> str:
    width = max([len("unit")] + [len(r.name) for r in results])
    lines = [f"{'unit':<{width}}  {'status':<11} {'time':>8}  message", "-" * (width + 40)]
    for r in results:  # "skipped" units were complete already: the user sees them as resumed
        status = "resumed" if r.status == "skipped" else r.status
        lines.append(f"{r.name:<{width}}  {status:<11} {r.seconds:>7.1f}s  {r.message}")
    failed = sum(r.status == "failed" for r in results)
    interrupted = sum(r.status == "interrupted" for r in results)
    skipped = sum(r.status == "skipped" for r in results)
    lines.append(f"{len(results)} unit(s): {len(results) - failed - interrupted - skipped} ok"
                 + (f", {skipped} resumed (complete already, same settings: not redone)" if skipped else "")
                 + f", {failed} failed" + (f", {interrupted} interrupted" if interrupted else ""))
    return "\n".join(lines)


def exit_code_of(results) -> int:
    """0 when all succeeded; the shared exit code of the failures, else 1."""
    codes = {r.exit_code for r in results if r.status in ("failed", "interrupted")}
    if not codes:
        return 0
    return codes.pop() if len(codes) == 1 else EXIT_FAILURE


def attach_run_log(output_dir, run_id: str) -> logging.Handler:
    """Send the ``qsmapp`` logger to ``OUTPUT_DIR/logs/run-<id>.log`` too (remove the handler when done)."""
    path = Path(output_dir) / "logs" / f"run-{run_id}.log"
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
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
    remove_orphan_work_roots()
    try:
        root = Path(tempfile.mkdtemp(prefix=f"qsmapp-{run_id}-"))
        (root / _WORK_OWNER).write_text(json.dumps({"pid": os.getpid(), "host": host_name()}) + "\n")
    except OSError as exc:
        raise CannotCreateOutputError(f"cannot create a temporary folder in {tempfile.gettempdir()}: "
                                      f"{exc.strerror or exc}", hint="set TMPDIR to a writable folder, or "
                                      "give --work-dir") from None
    return root, True


_WORK_OWNER = ".qsmapp-owner.json"


def remove_orphan_work_roots() -> int:
    """Remove temporary work folders (``$TMPDIR/qsmapp-*``) of runs of this host that no longer exist.

    Such folders are left only when a run was killed with SIGKILL (no clean-up possible); the owner file
    written in each folder says whose it is, so a live run's folder is never touched.
    """
    removed = 0
    for folder in Path(tempfile.gettempdir()).glob("qsmapp-*"):
        try:
            owner = json.loads((folder / _WORK_OWNER).read_text())
        except (OSError, ValueError):
            continue
        if owner.get("host") == host_name() and not pid_alive(int(owner.get("pid") or 0)):
            shutil.rmtree(folder, ignore_errors=True)
            removed += 1
    return removed
