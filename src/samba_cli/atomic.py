"""Atomic file writes: a temporary file next to the target, written, flushed and fsynced, then renamed over it.

Readers see either the old file or the whole new one; a failure leaves the old file as it was and no temporary
file behind. The one helper of every file the package writes whole: transcripts, reports, the cluster's index,
training state and configuration. Text is UTF-8 with ``\n`` line ends; ``binary=True`` hands the callable a binary
stream (Parquet, torch.save).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

__all__ = ["write_all_atomically", "write_atomically"]


def write_atomically(
    path: str | os.PathLike, write: Callable[[IO[Any]], object], binary: bool = False
) -> None:
    """Call ``write`` on a temporary file next to ``path`` (UTF-8 text, or bytes with ``binary``), fsync it, then
    rename it over ``path``.

    Readers see either the old file or the whole new one. If anything fails (``write`` included) the
    temporary file is removed, the old file is left untouched, and the error propagates. A missing folder is made.
    """
    write_all_atomically([(path, write)], binary=binary)


def write_all_atomically(
    files: Sequence[tuple[str | os.PathLike, Callable[[IO[Any]], object]]],
    binary: bool = False,
    replace: Sequence[bool] | None = None,
) -> None:
    """Write several files all or none: every file is staged first (a temporary file next to its target, UTF-8
    text or with ``binary`` bytes, written by its callable and fsynced), and only once all are staged are they
    renamed over their targets.

    ``replace[k]`` False (default: True for every file): the k-th target must not exist when it is put in place;
    if another process created it meanwhile, FileExistsError is raised and that file is left as it is (a hard
    link puts the new file in place, which fails atomically when the target exists; on a file system without
    hard links the check and the rename are two steps).

    If anything fails (a callable, a full disk, a target that is a folder, a rename, a target that appeared),
    every temporary file is removed and every old file is as it was: targets already replaced get their old
    file back, new ones are removed. An OSError names the target in its ``filename``. Missing folders are made.
    """
    replace = [True] * len(files) if replace is None else list(replace)
    staged: list[tuple[Path, Path]] = []  # (temporary, target)
    # (target, a hard link to its old file or None, whether it had one) for the targets being replaced
    backups: list[tuple[Path, Path | None, bool]] = []
    try:
        for target, write in files:
            target = Path(target)
            with _naming(target):
                if target.is_dir():
                    raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), str(target))
                target.parent.mkdir(parents=True, exist_ok=True)
                staged.append((_temporary(target), target))
                # exclusive creation: never truncates a file that is not ours; the mode follows the umask
                text = {} if binary else {"encoding": "utf-8", "newline": "\n"}
                with staged[-1][0].open("xb" if binary else "x", **text) as stream:
                    write(stream)
                    stream.flush()
                    os.fsync(stream.fileno())
        for (temporary, target), replacing in zip(staged, replace, strict=True):
            with _naming(target):
                if not replacing:
                    _create(temporary, target)
                    backups.append((target, None, False))
                    continue
                backups.append((target, _keep(target), target.exists()))
                os.replace(temporary, target)
    except BaseException:
        for target, backup, existed in reversed(backups):
            with contextlib.suppress(OSError):
                if backup is not None:
                    os.replace(backup, target)
                elif not existed and _replaced(target, staged):
                    target.unlink(missing_ok=True)
        for temporary, _ in staged:
            temporary.unlink(missing_ok=True)
        raise
    finally:
        for _, backup, _ in backups:
            if backup is not None:
                backup.unlink(missing_ok=True)


def _create(temporary: Path, target: Path) -> None:
    """Move ``temporary`` to ``target``, which must not exist: FileExistsError when it does."""
    try:
        os.link(temporary, target)  # atomic: fails when the target exists
    except FileExistsError:
        raise
    except OSError:  # no hard links here (FAT, some network file systems): check, then rename
        if target.exists():
            raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), str(target)) from None
        os.replace(temporary, target)
        return
    temporary.unlink()


def _temporary(target: Path, kind: str = "tmp") -> Path:
    return target.with_name(f".{target.name}.{secrets.token_hex(6)}.{kind}")


def _keep(target: Path) -> Path | None:
    """A hard link to ``target``'s current file, to put back if a later rename fails; None when there is none
    (or the file system has no hard links: the old file then cannot be put back after its own rename)."""
    if not target.exists():
        return None
    backup = _temporary(target, "old")
    try:
        os.link(target, backup)
    except OSError:
        return None
    return backup


def _replaced(target: Path, staged: list[tuple[Path, Path]]) -> bool:
    """True when ``target`` now holds its staged file (its temporary file is gone)."""
    return any(t == target and not temporary.exists() for temporary, t in staged)


@contextlib.contextmanager
def _naming(target: Path) -> Iterator[None]:
    """OSErrors raised in the block name ``target`` (not a temporary file next to it)."""
    try:
        yield
    except OSError as error:
        error.filename = str(target)
        raise
