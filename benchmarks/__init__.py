"""Benchmarks of samba-asr (see README.md here). Not part of the installed package: run them from the repository root."""
