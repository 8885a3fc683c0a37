"""Drop one known, harmless line of Ray's C++ core worker from this process's stderr while a cluster run lasts.

Ray Data passes ``ray.put`` references as its actors' constructor arguments and gives the actors
``max_restarts=-1`` (which samba needs: a killed actor is restarted and its batch retried), so the driver's core
worker logs on every run an error-level line (``core_worker.cc: Actor ... has constructor arguments in the object
store and max_restarts > 0 ...``) that the user can do nothing about. C++ writes it straight to file
descriptor 2, past Python's logging; neither ``RAY_LOG_TO_STDERR=0`` nor ``RAY_BACKEND_LOG_LEVEL`` silences it.
So, within :func:`drop_ray_noise`, fd 2 is a pipe that a thread copies line by line to the real stderr, less that
line; Python's own ``sys.stderr`` (rich's consoles and live bar) writes to the real stderr directly, so that it is
still a terminal when it was one.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import threading
from collections.abc import Iterator
from typing import TextIO

_NOISE = (b"core_worker.cc", b"has constructor arguments in the object store")  # all in one line: dropped
_IDLE_SECONDS = 0.05  # a partial line waits this long for its end, then goes out as it is
_DRAIN_SECONDS = 1.0  # how long the end of the block waits for the last bytes in the pipe
_CHUNK = 65536  # bytes per read of the pipe


def is_ray_noise(line: bytes) -> bool:
    """True for the core worker's note about actor constructor arguments in the object store."""
    return all(mark in line for mark in _NOISE)


@contextlib.contextmanager
def drop_ray_noise() -> Iterator[None]:
    """While the block runs, remove :func:`is_ray_noise` lines from what is written to fd 2, by this process and
    by the processes it starts (they inherit fd 2), and forward all else unchanged, in order, promptly.

    fd 2 and ``sys.stderr`` come back at the end, also on errors and KeyboardInterrupt, and the block's last
    bytes are forwarded (waiting ``_DRAIN_SECONDS`` at most). A process started inside that outlives the block
    may still hold the pipe: its reading thread (a daemon) goes on forwarding until the pipe's last writer is
    gone, so that such a process never writes into a closed pipe. Outside POSIX, or without an fd 2, the block
    runs unfiltered."""
    if os.name != "posix":
        yield
        return
    try:
        real = os.dup(2)
    except OSError:  # no stderr to filter
        yield
        return
    python_stderr = sys.stderr
    direct = _direct_stream(python_stderr, real)
    read, write = os.pipe()
    forwarder = threading.Thread(target=_forward, args=(read, real), name="samba-stderr-filter", daemon=True)
    forwarder.start()  # it owns ``read`` and ``real`` from here and closes them when the pipe ends
    try:
        if python_stderr is not None:
            python_stderr.flush()  # what Python buffered goes out before fd 2 changes
        os.dup2(write, 2)
        if direct is not None:
            sys.stderr = direct
        yield
    finally:
        if direct is not None:
            direct.flush()
            if sys.stderr is direct:
                sys.stderr = python_stderr
        os.dup2(real, 2)
        os.close(write)  # this process's last hold of the pipe: the thread sees its end once children let go
        forwarder.join(_DRAIN_SECONDS)


def _direct_stream(stream: TextIO | None, fd: int) -> TextIO | None:
    """A text stream like ``stream`` on ``fd`` (the real stderr) when ``stream`` writes to fd 2, else None
    (pytest's or CliRunner's capture, which stay as they are). Python's writes then skip the pipe, and
    ``isatty()`` still says whether stderr is a terminal, which rich's live bar needs."""
    try:
        if stream is None or stream.fileno() != 2:
            return None
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return None
    return open(fd, "w", buffering=1, encoding=stream.encoding, errors=stream.errors, closefd=False)


def _forward(read: int, out: int) -> None:
    """Copy the pipe ``read`` to ``out`` until its last writer closes it, less the noise lines; then close both.
    A line is complete at ``\\n`` (or ``\\r``, a redrawn progress line); a partial one goes out once nothing more
    came for ``_IDLE_SECONDS``, or at the end."""
    pending = b""
    try:
        while True:
            if pending and not select.select([read], [], [], _IDLE_SECONDS)[0]:
                _write(out, pending)
                pending = b""
            chunk = os.read(read, _CHUNK)
            if not chunk:
                break
            data = pending + chunk
            end = max(data.rfind(b"\n"), data.rfind(b"\r")) + 1
            pending = data[end:]
            lines = data[:end].splitlines(keepends=True)
            _write(out, b"".join(line for line in lines if not is_ray_noise(line)))
        _write(out, pending)
    finally:
        os.close(read)
        os.close(out)


def _write(fd: int, data: bytes) -> None:
    """All of ``data`` to ``fd``; nothing when that fails (stderr closed): the pipe must go on being read."""
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        pass
