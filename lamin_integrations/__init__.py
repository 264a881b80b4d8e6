"""lamin-integrations: a lineage registry for scientific pipelines.

    import lamin_integrations as ln
    ln.track()
    ...
    ln.finish()

Everything is imported on first use, so `import lamin_integrations` costs almost nothing
and never touches the database.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_LAZY = {
    "Transform": "lamin_integrations.core.models",
    "Run": "lamin_integrations.core.models",
    "Artifact": "lamin_integrations.core.models",
    "Storage": "lamin_integrations.core.models",
    "User": "lamin_integrations.core.models",
    "Project": "lamin_integrations.core.models",
    "Feature": "lamin_integrations.core.models",
    "Record": "lamin_integrations.core.models",
    "ULabel": "lamin_integrations.core.models",
    "Collection": "lamin_integrations.core.models",
    "RunBlock": "lamin_integrations.core.models",
    "JsonValue": "lamin_integrations.core.models",
    "Q": "lamin_integrations.core.query",
    "QuerySet": "lamin_integrations.core.queryset",
    "context": "lamin_integrations.core.context",
    "track": "lamin_integrations.core.context",
    "finish": "lamin_integrations.core.context",
    "step": "lamin_integrations.core.step",
    "flow": "lamin_integrations.core.step",
    "save": "lamin_integrations.core.bulk",
    "connect": "lamin_integrations.core.instance",
    "errors": "lamin_integrations.errors",
    "lineage": "lamin_integrations.lineage",
    "settings": "lamin_integrations.core.settings",
}

__all__ = sorted([*_LAZY, "__version__", "instance"])


def __getattr__(name: str) -> object:  # typing is not imported: it costs more than the package
    if name == "instance":
        from .core.instance import current

        return current()
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'lamin_integrations' has no attribute {name!r}")
    if name in ("errors", "lineage"):
        return importlib.import_module(module)
    value = getattr(importlib.import_module(module), name)
    if name != "context":
        globals()[name] = value
    return value


def __dir__() -> list[str]:
    return __all__
