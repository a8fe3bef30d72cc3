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


def metrics_directory() -> Path:
    """Where this node's processes keep their metric samples (made on first use)."""
    path = Path(os.environ.get(MULTIPROC_ENV) or mailcloak_settings.get().data_path / "metrics")
    path.mkdir(parents=True, exist_ok=True)
    os.environ[MULTIPROC_ENV] = str(path)
    return path


metrics_directory()
