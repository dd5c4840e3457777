"""The `kvs-sentinel` program (its console script and `python -m kvs_sentinel`): the command line, with
the garbage collector kept out of start-up and shutdown.

Importing the package and its libraries makes ~35k objects that live until the process ends, and almost
no garbage (~700 objects). Collections while they are made, and the full collection at exit, walk them all
for nothing: ~55 ms of a `replay` start-up (bench/startup_bench.py). Frozen, later collections skip them.
"""

from __future__ import annotations

import gc


def main() -> int:
    gc.disable()
    try:
        from kvs_sentinel.cli import main as command_line
    finally:
        gc.enable()
    gc.freeze()
    try:
        return command_line()
    finally:
        gc.freeze()  # what is left is freed as the interpreter ends, without one more walk over it
