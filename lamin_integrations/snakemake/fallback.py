"""A do-nothing logger plugin used when the real one cannot be imported.

Snakemake validates every `snakemake_logger_plugin_*` package it finds while building its
argument parser; a failing import would break every snakemake command, so the shim falls
back to this and the reason is printed once, only when `--logger lamin` is used.
"""

import sys
from dataclasses import dataclass
from typing import Any


def make_fallback(error: BaseException) -> tuple[Any, Any]:
    from snakemake_interface_logger_plugins.base import LogHandlerBase
    from snakemake_interface_logger_plugins.settings import LogHandlerSettingsBase

    @dataclass
    class LogHandlerSettings(LogHandlerSettingsBase):
        pass

    class LogHandler(LogHandlerBase):
        def __post_init__(self) -> None:
            sys.stderr.write(f"lamin-integrations: the lamin logger is not available ({type(error).__name__}: {error}); "
                             "nothing will be recorded\n")

        def emit(self, record: Any) -> None:
            pass

        writes_to_stream = property(lambda self: False)
        writes_to_file = property(lambda self: False)
        has_filter = property(lambda self: True)
        has_formatter = property(lambda self: True)
        needs_rulegraph = property(lambda self: False)

    return LogHandler, LogHandlerSettings
