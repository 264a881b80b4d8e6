"""`snakemake --logger lamin`: Snakemake finds logger plugins by this package name.

Any import error here would break every snakemake command (`--help` included), so the real
plugin is imported under a guard and a silent stand-in takes its place if it fails.
"""

try:
    from lamin_integrations.snakemake.plugin import LogHandler, LogHandlerSettings
except Exception as _error:  # pragma: no cover - only when the installation is broken
    from lamin_integrations.snakemake.fallback import make_fallback

    LogHandler, LogHandlerSettings = make_fallback(_error)

__all__ = ["LogHandler", "LogHandlerSettings"]
