"""The `--logger-lamin-*` flags (each also read from `SNAKEMAKE_LOGGER_LAMIN_<NAME>`).

Snakemake turns these dataclass fields into argparse options, which sets two rules: no
`from __future__ import annotations` here (argparse would get the string "int" as a type),
and bool fields default to False (a True default registers a flag Snakemake then cannot
find, and every `--logger lamin` run fails), and `Optional[X]` rather than `X | None`
(argparse calls the annotation to parse the value).
"""

from dataclasses import dataclass, field
from typing import Optional

from snakemake_interface_logger_plugins.settings import LogHandlerSettingsBase


@dataclass
class LogHandlerSettings(LogHandlerSettingsBase):
    db: Optional[str] = field(
        default=None,
        metadata={"help": "Registry to record into: an SQLAlchemy URL or an SQLite file path "
                          "(default: the configured lamin-integrations registry).", "env_var": True},
    )
    storage: Optional[str] = field(
        default=None,
        metadata={"help": "Storage root for registered files: a folder or an fsspec URL such as s3://bucket/prefix "
                          "(default: the registry's storage).", "env_var": True},
    )
    project: Optional[str] = field(
        default=None,
        metadata={"help": "Project (name or uid) to label the workflow's runs and artifacts with.", "env_var": True},
    )
    max_hash_mb: Optional[int] = field(
        default=None,
        metadata={"help": "Record files larger than this many MiB by name and size only: no hashing, no copy.",
                  "env_var": True},
    )
    drain_seconds: Optional[int] = field(
        default=None,
        metadata={"help": "At most this many seconds spent at exit finishing pending records (default 120).",
                  "env_var": True},
    )
    no_inputs: bool = field(
        default=False,
        metadata={"help": "Do not hash and link job inputs (outputs, logs and runs are still recorded).",
                  "env_var": True},
    )
