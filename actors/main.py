"""``python -m actors.main``: run a synchronizer, serve the model API, or talk to one.

Commands (each has ``--help``; the parser is :mod:`actors.cli`)::

    python -m actors.main                     run the steps_examples synchronizer (embedded SQLite)
    python -m actors.main -C config.yaml      run any synchronizer
    python -m actors.main run -C config.yaml  the same
    python -m actors.main core ...            serve the model API alone over a store
    python -m actors.main objects ...         list/get/create/update/delete objects of a core
    python -m actors.main models ...          list models and fields of a core
    python -m actors.main protos|login|hash-password ...

Exit status: 0 done (also after SIGINT/SIGTERM), 1 failed, 2 bad usage or config, or a
start that cannot go on (the store unusable or owned by another process, the API port in
use, the remote core unreachable): one line on stderr says which.
"""

from __future__ import annotations

import sys

from actors.cli import main

__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
