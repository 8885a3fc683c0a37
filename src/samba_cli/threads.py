"""CPU threads: how torch's OpenMP threads wait, how many cores this process may use, and a producer thread that
runs ahead of its consumer. Imports no torch.

PyTorch's CPU wheels use GNU OpenMP, whose idle threads spin (busy-wait) before they sleep. When the cores are
shared with another busy process, each parallel operation then waits for a thread that the kernel has
descheduled, while its siblings burn the remaining cores spinning: measured here, greedy CTC on 82 s of audio
took 238 s with 2 torch threads and 18 s with 1 on a loaded 2-core machine, and 16 s with 2 threads that wait
passively. :func:`prefer_passive_waits` asks for passive waiting unless the user chose otherwise; it must run
before torch is first imported (OpenMP reads its settings when it loads), so ``import samba_cli`` runs it.
"""

from __future__ import annotations

import atexit
import os
import queue
import sys
import threading
import time
import typing
from collections.abc import Iterable, Iterator

T = typing.TypeVar("T")

WAIT_POLICY = "OMP_WAIT_POLICY"  # the OpenMP setting: PASSIVE (sleep when idle) or ACTIVE (spin)
EXIT_WAIT_SECONDS = 10.0  # at interpreter exit, how long the read-ahead threads may take to finish their item

_producers: dict[threading.Thread, threading.Event] = {}  # live read-ahead threads and their stop events


def prefer_passive_waits() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless the environment already sets it; True when torch will see the
    value (torch not imported yet), False when it comes too late to matter in this process (child processes
    inherit it all the same)."""
    os.environ.setdefault(WAIT_POLICY, "PASSIVE")
    return "torch" not in sys.modules


def usable_cores() -> int:
    """The CPU cores this process may run on (its affinity mask where the system has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def torch_threads_here() -> int:
    """The CPU threads torch may use in this thread (its ``torch.get_num_threads()``), at most the usable cores:
    what the decoding's helper threads are sized by (torch is imported here, not when this module is)."""
    import torch

    return min(usable_cores(), torch.get_num_threads())


def read_ahead(items: Iterable[T], size: int) -> Iterator[T]:
    """``items`` in order, produced by a daemon thread that runs up to ``size`` items ahead of the consumer (so
    that producing and consuming overlap). An exception raised by ``items`` is raised here in its turn; closing
    this generator early stops the thread (and closes ``items``) at its next item.

    The thread is a daemon (it may be blocked reading a pipe that never ends), but the interpreter's exit waits
    up to :data:`EXIT_WAIT_SECONDS` for it to finish the item in progress (:func:`_stop_producers`): a daemon
    thread that returns from a torch operation once the interpreter is finalizing aborts the process
    ("terminate called without an active exception", status 134), which Ctrl-C during encoding used to do."""
    box: queue.Queue = queue.Queue(size)
    stop = threading.Event()

    def put(entry: tuple[bool, object]) -> bool:
        while not stop.is_set():
            try:
                box.put(entry, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        produced = iter(items)
        try:
            for item in produced:
                if not put((True, item)):
                    return
        except BaseException as exc:  # given to the consumer, raised there
            put((False, exc))
            return
        finally:
            if stop.is_set() and hasattr(produced, "close"):
                produced.close()
        put((False, None))

    def run() -> None:
        try:
            produce()
        finally:
            _producers.pop(threading.current_thread(), None)

    thread = threading.Thread(target=run, name="samba-read-ahead", daemon=True)
    _producers[thread] = stop
    thread.start()
    try:
        while True:
            ok, item = box.get()
            if not ok:
                if item is None:
                    return
                raise typing.cast(BaseException, item)
            yield typing.cast(T, item)
    finally:
        stop.set()


@atexit.register
def _stop_producers() -> None:
    """Stop the live read-ahead threads and wait (at most :data:`EXIT_WAIT_SECONDS` in all) for them to end;
    one still blocked reading its input after that is left to the interpreter (it runs no torch code)."""
    for stop in list(_producers.values()):
        stop.set()
    deadline = time.monotonic() + EXIT_WAIT_SECONDS
    for thread in list(_producers):
        thread.join(max(0.0, deadline - time.monotonic()))
