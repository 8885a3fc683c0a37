"""The worker processes that run CTC prefix searches (samba_cli.decoding.prefix_search) in parallel.

Workers import NumPy and the language model code only, never torch: each starts in well under a second and
holds the language model and lexicon, not a second copy of torch.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor

from samba_cli.threads import usable_cores

logger = logging.getLogger(__name__)

# a batch of fewer segments is searched in this process: not worth a round trip to the workers
PARALLEL_SEARCH_MIN_SEGMENTS = 2
MAX_AUTO_SEARCH_WORKERS = 4  # what --search-workers 0 (auto) starts at most when the model runs on the CPU
# on a GPU the model leaves the CPU cores to the searches: auto starts one worker per core but this many, kept for
# the process that feeds the GPU (its decoding loop, the encoder's read-ahead, the rescoring)
GPU_FEEDER_CORES = 1
WORKER_PARENT_CHECK_SECONDS = 1.0  # how often a search worker checks that its parent still runs
# After a kill -9, multiprocessing's resource tracker (a process of its own, sharing samba's stderr) removes the
# pool's semaphores and warns "resource_tracker: There appear to be N leaked semaphore objects": a note about
# Python's internals, not for the user. The tracker takes its -W options from sys.warnoptions when it starts.
_QUIET_TRACKER = "ignore:resource_tracker:UserWarning"
_POOLS: dict[int, ProcessPoolExecutor] = {}
_NO_POOL = False  # set once making a pool has failed


def give_up_pools(error: BaseException) -> None:
    """No search workers for the rest of the process (once a pool could not be made, or broke)."""
    global _NO_POOL
    if not _NO_POOL:
        logger.warning("no search workers (%s): CTC searches run in this process", error)
    _NO_POOL = True
    for pool in _POOLS.values():
        pool.shutdown(wait=False, cancel_futures=True)
    _POOLS.clear()


def auto_search_workers(gpu: bool = False) -> int:
    """One search worker per CPU core this process may use (1: no pool): at most MAX_AUTO_SEARCH_WORKERS when the
    model runs on the CPU (the model's own threads need the cores), all cores but GPU_FEEDER_CORES when it runs
    on a GPU (``gpu``), where the searches are what the CPU is for."""
    if gpu:
        return max(1, usable_cores() - GPU_FEEDER_CORES)
    return max(1, min(MAX_AUTO_SEARCH_WORKERS, usable_cores()))


def _search_worker_init(parent: int) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    threading.Thread(target=_exit_without, args=(parent,), name="samba-parent-watch", daemon=True).start()


def _exit_without(parent: int) -> None:
    """End this worker within WORKER_PARENT_CHECK_SECONDS of process ``parent`` ending, however it ended
    (``kill -9``, the out-of-memory killer): the worker is then someone else's child, and nobody waits for
    its results. (Linux's PR_SET_PDEATHSIG would follow the thread that started the worker, not the process.)"""
    while os.getppid() == parent:
        time.sleep(WORKER_PARENT_CHECK_SECONDS)
    os._exit(1)


def search_pool(workers: int) -> ProcessPoolExecutor | None:
    """The process pool of ``workers`` CTC search workers, created on first use and kept for the process's life.

    Workers are spawned, not forked (a fork of a process holding torch's thread pools or other threads can
    hang), so they import ``__main__`` again: a script that decodes with ``search_workers`` above 1 must guard its
    top-level code with ``if __name__ == "__main__":``, as any multiprocessing program does. Each worker loads the
    language model and lexicon once, on its first search, and ends within a second of the calling process
    ending, however it ends. None (and a warning, once) where the system cannot make
    one (no /dev/shm for its semaphores, for instance) or a pool broke before (a worker died, or could not
    start): the searches then run in the calling process."""
    pool = _POOLS.get(workers)
    if pool is None and not _NO_POOL:
        if _QUIET_TRACKER not in sys.warnoptions:
            sys.warnoptions.append(_QUIET_TRACKER)
        context = multiprocessing.get_context("spawn")
        try:
            pool = _POOLS[workers] = ProcessPoolExecutor(
                workers,
                mp_context=context,
                initializer=_search_worker_init,
                initargs=(os.getpid(),),
            )
        except (OSError, NotImplementedError, ImportError) as error:
            give_up_pools(error)
    return pool
