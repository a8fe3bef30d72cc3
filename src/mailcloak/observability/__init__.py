"""Observability without surveillance: logs, metrics and operator figures that say what the
service did without saying what anyone wrote, and by default without full addresses.

Importing this package points prometheus-client's multiprocess mode at DATA_DIR/metrics
(see instruments.py). prometheus-client picks its storage when it is first imported, and every
module of ours that uses it lives in this package, so this runs first.
"""

from __future__ import annotations

import os
from pathlib import Path

from mailcloak import settings as mailcloak_settings

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def metrics_directory() -> Path | None:
    """Where this node's processes keep their metric samples (made on first use); None when it
    cannot be made (a read-only data directory, as for a command run as another user): the
    process then keeps its samples in memory, and no other process sees them."""
    path = Path(os.environ.get(MULTIPROC_ENV) or mailcloak_settings.get().data_path / "metrics")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:
        os.environ.pop(MULTIPROC_ENV, None)
        return None
    os.environ[MULTIPROC_ENV] = str(path)
    return path


# Decided once, before prometheus-client is imported: it picks its storage at import.
SHARED_METRICS = metrics_directory()
