"""samba_cli.distributed.stderr_filter: Ray's one known core-worker line is dropped from fd 2, all else kept.

These tests write to the file descriptor, as Ray's C++ does, and read it back with capfd or through a terminal."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from samba_cli.distributed.stderr_filter import drop_ray_noise, is_ray_noise

pytestmark = pytest.mark.skipif(os.name != "posix", reason="the filter works on POSIX file descriptors")

RAY_LINE = (  # as Ray 2.60's core worker writes it on every cluster run
    b"[2026-12-07 22:57:38,864 E 4486 4486] core_worker.cc:2465: Actor with class name: "
    b"'MapWorker(MapBatches(TranscribeBatch))' and ID: 'fe22fa57e30de051b0c0191201000000' has constructor "
    b"arguments in the object store and max_restarts > 0. If the arguments in the object store go out of scope "
    b"or are lost, the actor restart will fail. See https://github.com/ray-project/ray/issues/53727 for more "
    b"details.\n"
)
SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_the_match_is_narrow():
    assert is_ray_noise(RAY_LINE)
    assert not is_ray_noise(b"[...] core_worker.cc:100: Failed to connect to the raylet\n")
    assert not is_ray_noise(b"error: clip.wav has constructor arguments in the object store\n")


def test_only_the_ray_line_is_dropped(capfd):
    """From this process and from a child that inherits fd 2: order kept, the partial last line out at the end,
    fd 2 the same file afterwards."""
    before = os.fstat(2)
    child = "import os, sys; os.write(2, b'child\\n' + sys.argv[1].encode() + b'child again\\n')"
    with drop_ray_noise():
        os.write(2, b"first\n")
        os.write(2, RAY_LINE)
        subprocess.run([sys.executable, "-c", child, RAY_LINE.decode()], check=True)
        os.write(2, b"[...] core_worker.cc:100: another error\n")
        os.write(2, b"no end of line")
    after = os.fstat(2)
    os.write(2, b"\nafter\n")
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)
    assert capfd.readouterr().err == (
        "first\nchild\nchild again\n[...] core_worker.cc:100: another error\nno end of line\nafter\n"
    )


def test_a_partial_line_is_not_held_back(capfd):
    """A prompt or progress text without its line end comes through while the block still runs."""
    with drop_ray_noise():
        os.write(2, b"50%")
        seen = ""
        for _ in range(200):  # up to 10 s on a busy machine; the filter waits 0.05 s for the line's end
            seen += capfd.readouterr().err
            if seen:
                break
            time.sleep(0.05)
        assert seen == "50%"


def test_python_stderr_stays_the_terminal():
    """On a terminal, sys.stderr inside the block is still one (rich draws its live bar), writes to it go straight
    out, and the filtered fd 2 reaches the same terminal; sys.stderr and fd 2 are as before afterwards."""
    pty = pytest.importorskip("pty")
    code = f"""
import os, sys
from samba_cli.distributed.stderr_filter import drop_ray_noise
python_stderr = sys.stderr
with drop_ray_noise():
    print(sys.stderr.isatty(), sys.stderr is not python_stderr, os.isatty(2))
    sys.stderr.write("python\\n")
    sys.stderr.flush()
    os.write(2, {RAY_LINE!r} + b"fd\\n")
print(sys.stderr is python_stderr, os.isatty(2))
"""
    terminal, child_side = pty.openpty()
    result = subprocess.run(
        [sys.executable, "-c", code],
        stderr=child_side,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": SRC},
        check=True,
    )
    os.close(child_side)
    written = b""
    while True:
        try:
            chunk = os.read(terminal, 4096)
        except OSError:  # Linux: EIO once the other side is closed and all is read
            break
        if not chunk:
            break
        written += chunk
    os.close(terminal)
    assert result.stdout.split() == ["True", "True", "False", "True", "True"]
    assert written.replace(b"\r\n", b"\n") == b"python\nfd\n"
