"""Typed errors. Every error the user can cause carries a one-line message naming the input and the cause.

The CLI prints ``str(error)`` and never a traceback for a :class:`SambaError`.
"""

from __future__ import annotations


def original_message(error: BaseException) -> str:
    """The message of ``error``; for an error a DataLoader worker raised, the worker's own message (torch re-raises
    it with the worker's traceback in the text)."""
    text = str(error)
    if "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]
    prefix = f"{type(error).__name__}: "
    return last[len(prefix) :] if last.startswith(prefix) else last


class SambaError(Exception):
    """Base class: a user-facing failure with a one-line message."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


class OptionError(ValueError):
    """Options a model cannot run with, such as CTC decoding without a CTC head. ``option`` names the
    command-line option to change (``--decoder``), which the CLI shows with the message."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


class MediaError(SambaError):
    """An input file or stream could not be turned into audio samples."""

    def __init__(self, source: str, cause: str) -> None:
        self.source = source
        self.cause = cause
        super().__init__(f"{source}: {cause}")


class InputNotFoundError(MediaError):
    """The input path does not exist."""


class NotAFileError(MediaError):
    """A directory (or other non-file) was given where a media file was expected."""


class NoAudioStreamError(MediaError):
    """The container has no audio stream (for example a silent video)."""


class DecodeError(MediaError):
    """ffmpeg could not decode the input (corrupt, truncated or not media at all)."""


class EmptyAudioError(MediaError):
    """The input decoded to zero samples."""


class FFmpegNotFoundError(SambaError):
    """Neither a system ffmpeg nor the imageio-ffmpeg binary is available."""


class CheckpointError(SambaError):
    """A checkpoint folder is missing files, has a bad config, or its tensors do not match the config."""


class BackendError(SambaError):
    """A compute backend was requested that cannot run here (for example ``fused`` without CUDA)."""


class HubError(SambaError):
    """Fetching a model from the Hugging Face Hub failed (not found, unauthorised, offline and not cached)."""
