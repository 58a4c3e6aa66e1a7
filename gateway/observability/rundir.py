"""The directory of one `portico serve` run's metric files (prometheus_client's multiprocess mode).

prometheus_client decides once, when it is first imported, whether values go
to per-process files: PROMETHEUS_MULTIPROC_DIR must be in the environment
before that, in the serving process and in every worker it starts. Hence this
module imports nothing of prometheus_client, and `portico serve` enters
`metrics_run` before the server (and the application) is loaded.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

ENV = "PROMETHEUS_MULTIPROC_DIR"


def prepare(chosen: str = "") -> Path:
    """A fresh, empty directory, named in the environment for the workers to inherit.

    `chosen` (PORTICO_METRICS_DIR) is wiped first: files an earlier run left would add its counts to this
    run's. Without it, a new temporary directory.
    """
    if chosen:
        directory = Path(chosen)
        shutil.rmtree(directory, ignore_errors=True)
        directory.mkdir(mode=0o700, parents=True)
    else:
        directory = Path(tempfile.mkdtemp(prefix="portico-metrics-"))
    os.environ[ENV] = str(directory)
    return directory


@contextlib.contextmanager
def metrics_run(chosen: str = "") -> Iterator[Path]:
    """The run's directory while the server runs; a temporary one is removed when it stops."""
    before = os.environ.get(ENV)
    directory = prepare(chosen)
    try:
        yield directory
    finally:
        if before is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = before
        if not chosen:
            shutil.rmtree(directory, ignore_errors=True)
