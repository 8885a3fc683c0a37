"""samba-asr: speech transcription with Samba-ASR (Mamba-2 encoder and decoder).

Usage::

    import samba_cli

    model = samba_cli.load_model()  # the bundled model; or a Hub repo id or a local folder
    segments, info = model.transcribe("talk.mp3")
    for segment in segments:  # lazy: decoding happens while you iterate
        print(segment.start, segment.end, segment.text)
"""

from importlib.metadata import PackageNotFoundError, version

from samba_cli.threads import prefer_passive_waits

prefer_passive_waits()  # before anything imports torch: idle OpenMP threads must not spin on shared cores

try:
    __version__ = version("samba-asr")
except PackageNotFoundError:  # running from a source tree without an install
    __version__ = "0.0.0"


def __getattr__(name: str):
    # Lazy: `import samba_cli` (and the CLI's --help) does not import torch.
    if name == "TranscribeOptions":
        from samba_cli import options

        return options.TranscribeOptions
    if name in ("load_model", "Transcriber"):
        from samba_cli import api

        return getattr(api, name)
    raise AttributeError(f"module 'samba_cli' has no attribute {name!r}")


__all__ = ["TranscribeOptions", "Transcriber", "__version__", "load_model"]
