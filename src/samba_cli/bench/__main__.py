"""Child process of :func:`samba_cli.bench.run_case_in_child`: ``python -m samba_cli.bench CASE RESULT``."""

import logging
import sys

from samba_cli.bench.child import child_main

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    child_main(*sys.argv[1:3])
