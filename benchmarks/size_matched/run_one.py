"""The child process of :func:`benchmarks.size_matched.run_case_in_child`.

``python -m benchmarks.size_matched.run_one CASE.json RESULT.json``
"""

import logging
import sys

from .child import child_main

if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING)
    child_main(*sys.argv[1:3])
