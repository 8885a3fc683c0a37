"""CPU threads on a shared machine, and search workers that must not outlive their parent (issue 39, items 3, 8)."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest

from samba_cli.threads import read_ahead


def _python(code: str, env: dict | None = None, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def test_importing_the_package_makes_openmp_threads_wait_passively():
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    code = "import os, sys, samba_cli; print(os.environ['OMP_WAIT_POLICY'], 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["PASSIVE", "False"]  # set before torch loads, so OpenMP reads it
    chosen = subprocess.run(
        [sys.executable, "-c", code], env={**env, "OMP_WAIT_POLICY": "ACTIVE"}, capture_output=True, text=True
    )
    assert chosen.stdout.split()[0] == "ACTIVE"  # the user's own choice is kept


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # a zombie (dead, not yet reaped by its new parent) counts as gone
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("from_thread", [False, True])
def test_search_workers_die_with_a_killed_parent(from_thread):
    """kill -9 of the main process (what the out-of-memory killer does) leaves no search worker behind, also
    when the workers were started from another thread than the main one."""
    parent = _python(
        f"""
        import multiprocessing, os, threading, time
        from samba_cli.decoding.pool import search_pool

        def start():
            pool = search_pool(2)
            pool.submit(os.getpid).result()
        if {from_thread}:
            thread = threading.Thread(target=start)
            thread.start()
            thread.join()
        else:
            start()
        print(*[p.pid for p in multiprocessing.active_children()], flush=True)
        time.sleep(600)
        """
    )
    try:
        workers = [int(pid) for pid in parent.stdout.readline().split()]
        assert workers, parent.stderr.read()
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        deadline = time.monotonic() + 10
        while not all(_gone(pid) for pid in workers) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(_gone(pid) for pid in workers)
    finally:
        parent.kill()
        parent.wait()


def test_sigterm_stops_the_cli_like_ctrl_c():
    """SIGTERM becomes KeyboardInterrupt in the CLI, so a run stops the way Ctrl-C stops it (summary printed,
    finished files kept, workers shut down) instead of dying where it stands."""
    out = _python(
        """
        import os, signal
        from samba_cli import cli

        cli.app = lambda: os.kill(os.getpid(), signal.SIGTERM)
        try:
            cli.main()
        except KeyboardInterrupt:
            print("interrupted")
        """
    )
    stdout, stderr = out.communicate(timeout=60)
    assert stdout.strip() == "interrupted", stderr


def test_read_ahead_gives_the_items_in_order_from_another_thread():
    threads = []

    def items():
        for k in range(50):
            threads.append(threading.current_thread())
            yield k

    assert list(read_ahead(items(), 3)) == list(range(50))
    assert threading.current_thread() not in threads


def test_read_ahead_raises_the_producers_error_in_its_turn():
    def items():
        yield 1
        yield 2
        raise ValueError("bad input")

    got = []
    with pytest.raises(ValueError, match="bad input"):
        for item in read_ahead(items(), 4):
            got.append(item)
    assert got == [1, 2]


def test_closing_read_ahead_early_stops_the_producer():
    closed = threading.Event()
    produced = []

    def items():
        try:
            for k in range(1000):
                produced.append(k)
                yield k
        finally:
            closed.set()

    ahead = read_ahead(items(), 2)
    assert next(ahead) == 0
    ahead.close()
    assert closed.wait(timeout=5)  # the producer closed its generator instead of running on
    assert len(produced) < 10


def test_exit_waits_for_a_producer_inside_torch():
    # The consumer leaves while the producer runs torch operations: the interpreter's exit must wait for them
    # (a daemon thread returning from torch code during finalization aborts the process with status 134).
    process = _python(
        """
        import sys, time, torch
        from samba_cli.threads import read_ahead

        def items():
            yield 1
            a = torch.randn(600, 600)
            end = time.monotonic() + 1.5
            while time.monotonic() < end:
                a = torch.tanh(a @ a)
            yield 2

        ahead = read_ahead(items(), 1)
        assert next(ahead) == 1
        time.sleep(0.2)
        sys.exit(0)
        """
    )
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 0, stderr


def test_no_helper_threads_do_cuda_work():
    # A CUDA graph captured while another thread runs CUDA work fails (seen on an H200: the encoder thread and the
    # rescoring thread against the attention beam search's captures), so on a GPU both run in turn.
    import torch

    from samba_cli.decoding.ctc import rescore_beside
    from samba_cli.pipeline import encoder_threads

    for device in ("cuda", "cuda:1"):
        assert encoder_threads(torch.device(device)) == 0
        assert rescore_beside(torch.device(device)) is False
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        if len(os.sched_getaffinity(0)) >= 2:  # the CPU keeps them
            assert encoder_threads(torch.device("cpu")) == 1
            assert rescore_beside(torch.device("cpu")) is True
    finally:
        torch.set_num_threads(before)
