"""samba_cli.atomic: the one atomic-write helper, text and bytes (transcripts: tests/test_writers.py)."""

import os

import pytest
import torch

from samba_cli.atomic import write_all_atomically, write_atomically


def test_bytes_are_written_whole_or_not_at_all(tmp_path):
    path = tmp_path / "deep" / "state.pt"  # a missing folder is made
    write_atomically(path, lambda stream: torch.save({"x": torch.arange(3)}, stream), binary=True)
    assert torch.load(path, weights_only=True)["x"].tolist() == [0, 1, 2]

    def fails(stream):
        stream.write(b"half")
        raise RuntimeError("disk gone")

    with pytest.raises(RuntimeError, match="disk gone"):
        write_atomically(path, fails, binary=True)
    assert torch.load(path, weights_only=True)["x"].tolist() == [0, 1, 2]
    assert os.listdir(path.parent) == ["state.pt"]  # no temporary file left


def test_text_is_utf8_with_newlines_and_the_mode_follows_the_umask(tmp_path):
    path = tmp_path / "config.json"
    write_atomically(path, lambda stream: stream.write("é\n"))
    assert path.read_bytes() == "é\n".encode()
    mask = os.umask(0)
    os.umask(mask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~mask


def test_a_target_that_must_be_new_is_never_replaced(tmp_path):
    made, taken = tmp_path / "a.txt", tmp_path / "b.txt"
    taken.write_text("theirs\n")
    with pytest.raises(FileExistsError) as caught:
        write_all_atomically(
            [(made, lambda s: s.write("mine\n")), (taken, lambda s: s.write("mine\n"))],
            replace=[False, False],
        )
    assert caught.value.filename == str(taken)
    assert taken.read_text() == "theirs\n" and sorted(os.listdir(tmp_path)) == ["b.txt"]  # all or none
    write_all_atomically([(made, lambda s: s.write("mine\n"))], replace=[False])
    assert made.read_text() == "mine\n" and sorted(os.listdir(tmp_path)) == ["a.txt", "b.txt"]
