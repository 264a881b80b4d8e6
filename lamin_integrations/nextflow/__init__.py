"""Nextflow: record launches from trace / report / log / history / work dirs, live from the weblog,
or from nextflow-py executions. Imported lazily: `import lamin_integrations` stays fast."""

from __future__ import annotations

import importlib

_LAZY = {
    "ingest_trace": "lamin_integrations.nextflow.ingest",
    "follow_trace": "lamin_integrations.nextflow.ingest",
    "ingest_execution": "lamin_integrations.nextflow.execution",
    "run": "lamin_integrations.nextflow.execution",
    "read_trace": "lamin_integrations.nextflow.trace",
    "make_server": "lamin_integrations.nextflow.weblog",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> object:  # typing is not imported: it costs more than this module
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lamin_integrations.nextflow' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
