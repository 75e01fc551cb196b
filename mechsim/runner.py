"""One runner for many runs: chunks of work on threads, processes or a Dask cluster.

Whoever has many runs to do (``simulate_many``, and through it dose-response sweeps,
sensitivity analyses, virtual trials and fits) cuts them into chunks and hands them here.
The answer never depends on how the work was spread: a chunk is a pure function of its
arguments, and the outcomes come back in the order of the chunks.
"""

from __future__ import annotations

import numbers
import os
import signal
import sys
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor

from .errors import ValidationError

__all__ = ["MAX_CHUNK", "PROGRESS_FROM", "chunk_ranges", "ignore_interrupts", "map_chunks",
           "positive", "workers_or_cpus"]

#: Largest default chunk (a progress bar moves at least every MAX_CHUNK runs), and the
#: number of runs from which a progress bar is shown by default.
MAX_CHUNK = 1024
PROGRESS_FROM = 10_000


def positive(name: str, value, default: int) -> int:
    """``value`` if it is a positive integer, ``default`` if it is None; else an error."""
    if value is None:
        return max(1, int(default))
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValidationError(f"`{name}` must be a positive integer or None, got {value!r}")
    return int(value)


def workers_or_cpus(workers: int | None) -> int:
    """The number of workers to use: ``workers``, or the number of CPUs."""
    return positive("workers", workers, os.cpu_count() or 1)


def chunk_ranges(n_runs: int, workers: int, chunk_size: int | None = None) -> list[range]:
    """Consecutive ranges covering ``range(n_runs)``: ``chunk_size`` runs each, by default
    about four chunks per worker and at most :data:`MAX_CHUNK` runs."""
    size = positive("chunk_size", chunk_size, min(-(-n_runs // (4 * workers)), MAX_CHUNK))
    return [range(lo, min(lo + size, n_runs)) for lo in range(0, n_runs, size)]


def ignore_interrupts() -> None:
    """Initializer of worker processes: Ctrl-C reaches the whole process group, but only
    the parent should handle it (it stops the pool); workers would print tracebacks."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def map_chunks(function: Callable, chunks: Sequence[tuple], *, sizes: Sequence[int],
               workers: int, executor=None, processes: bool = False,
               progress: bool | None = None, desc: str = "runs") -> list:
    """``[function(*args) for args in chunks]``, spread over ``workers``.

    Parameters
    ----------
    function
        A module-level function (it may cross processes).
    chunks
        The arguments of each call.
    sizes
        Runs in each chunk, for the progress bar.
    workers
        Threads (or, with ``processes``, worker processes) on this machine; 1 runs the
        chunks here, one after the other.
    executor
        Any object with ``submit(fn, *args)`` returning a future with ``.result()`` (a
        ``concurrent.futures`` pool, a Dask ``distributed.Client``); ``workers`` is then
        ignored.
    processes
        Use worker processes rather than threads (for work that holds the GIL).
    progress
        Show a progress bar on stderr; None: when there are at least
        :data:`PROGRESS_FROM` runs and stderr is a terminal.

    After Ctrl-C the chunks not started are cancelled and the running ones finished; the
    workers ignore the interrupt, so only the caller handles it.
    """
    from tqdm import tqdm

    total = sum(sizes)
    if progress is None:
        progress = total >= PROGRESS_FROM and sys.stderr.isatty()
    with tqdm(total=total, desc=desc, unit="run", disable=not progress, leave=False) as bar:
        def counted(outcomes):
            for size, outcome in zip(sizes, outcomes):
                bar.update(size)
                yield outcome

        if executor is not None:
            futures = [executor.submit(function, *args) for args in chunks]
            return list(counted(f.result() for f in futures))
        if workers == 1 or len(chunks) == 1:
            return list(counted(function(*args) for args in chunks))
        pool = ProcessPoolExecutor(max_workers=workers, initializer=ignore_interrupts) \
            if processes else ThreadPoolExecutor(max_workers=workers)
        try:
            return list(counted(pool.map(function, *zip(*chunks))))
        finally:  # after Ctrl-C: drop the chunks not started, wait for the running ones
            pool.shutdown(wait=True, cancel_futures=True)
