"""The one plugin manager: built-ins and third-party plugins travel the same road.

Third parties register through the `lamin_integrations` entry-point group. A plugin that
raises is logged and skipped: a plugin can never break a registry write. Set
`LAMIN_INTEGRATIONS_TRACE_HOOKS=1` to print every hook call and its result.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pluggy

from . import hookspecs

logger = logging.getLogger("lamin_integrations")
ENTRY_POINT_GROUP = "lamin_integrations"
BUILTIN_PLUGINS: tuple[str, ...] = ("lamin_integrations.snakemake.parent",)

# Hooks that announce a committed change (deferred inside a transaction); the others ask.
EVENT_HOOKS = frozenset({"run_started", "run_finished", "artifact_saved", "artifact_recreated", "run_inputs_linked"})

_pm: pluggy.PluginManager | None = None


def manager() -> pluggy.PluginManager:
    global _pm
    if _pm is None:
        pm = pluggy.PluginManager("lamin_integrations")
        pm.add_hookspecs(hookspecs)
        for name in BUILTIN_PLUGINS:
            import importlib

            pm.register(importlib.import_module(name), name=name)
        _load_entry_points(pm)
        _pm = pm
    return _pm


_distributions: dict[str, str] = {}


def _load_entry_points(pm: pluggy.PluginManager) -> None:
    """Register each entry point on its own, so one broken package cannot hide the others."""
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if pm.get_plugin(ep.name) is not None or pm.is_blocked(ep.name):
            continue
        try:
            pm.register(ep.load(), name=ep.name)
        except Exception as e:
            logger.warning("could not load plugin %s (%s): %s: %s", ep.name, ep.value, type(e).__name__, e)
            continue
        _distributions[ep.name] = ep.dist.name if ep.dist is not None else ep.name


def distribution(plugin_name: str) -> str:
    """The distribution that provides a plugin ("built-in" for ours)."""
    return _distributions.get(plugin_name, "built-in")


def has_impls(hook_name: str) -> bool:
    return bool(getattr(manager().hook, hook_name).get_hookimpls())


def fire(hook_name: str, **kwargs: Any) -> list[Any]:
    """Call every implementation of a hook, isolating failures one plugin at a time."""
    pending = getattr(_deferred, "events", None)
    if pending is not None and hook_name in EVENT_HOOKS:
        pending.append((hook_name, kwargs))
        return []
    hook = getattr(manager().hook, hook_name)
    results = []
    for impl in reversed(hook.get_hookimpls()):
        try:
            args = [kwargs[a] for a in impl.argnames]
            result = impl.function(*args)
        except Exception as e:
            logger.warning("plugin %s failed in %s: %s: %s", impl.plugin_name, hook_name, type(e).__name__, e)
            continue
        if os.environ.get("LAMIN_INTEGRATIONS_TRACE_HOOKS"):
            sys.stderr.write(f"hook {hook_name} -> {impl.plugin_name}: {result!r}\n")
        if result is not None:
            results.append(result)
    return results


_deferred = threading.local()


@contextlib.contextmanager
def deferred() -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Collect the events fired in this thread inside the block instead of firing them.

    Used by `Instance.transaction()`: hooks are called after the commit, with the
    collected list, and dropped if the block raises.
    """
    outer = getattr(_deferred, "events", None)
    events: list[tuple[str, dict[str, Any]]] = [] if outer is None else outer
    _deferred.events = events
    try:
        yield events
    finally:
        _deferred.events = outer


def fire_all(events: list[tuple[str, dict[str, Any]]]) -> None:
    if not events:
        return
    pending = getattr(_deferred, "events", None)
    if pending is not None:
        if pending is not events:
            pending.extend(events)
        return
    for hook_name, kwargs in events:
        if has_impls(hook_name):
            fire(hook_name, **kwargs)
