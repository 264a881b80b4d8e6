"""Where the registry is configured, without importing SQLAlchemy.

`ln.track()` on the embedded registry must not pay for SQLAlchemy's import (core/fasttrack.py),
yet it must find the same database and storage root as every other entry point. So the
resolution order lives here and `instance.py` builds engines on top of it:
`ln.connect(...)` -> `LAMIN_INTEGRATIONS_DB` / `LAMIN_INTEGRATIONS_STORAGE` -> the config file ->
an embedded SQLite file and storage folder under the user's data directory.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

from ..errors import InstanceError

ENV_DB = "LAMIN_INTEGRATIONS_DB"
ENV_STORAGE = "LAMIN_INTEGRATIONS_STORAGE"
ENV_HOME = "LAMIN_INTEGRATIONS_HOME"
SQLITE_BUSY_TIMEOUT_MS = 30_000
SCHEMA_HEAD = "0006"  # the newest migration (core/migrations/versions); migrate.HEAD


ENV_MAX_HASH_MB = "LAMIN_INTEGRATIONS_MAX_HASH_MB"


def max_hash_bytes() -> int | None:
    """The size above which adapters record a file or folder by name and size only (no hash,
    no copy into storage): LAMIN_INTEGRATIONS_MAX_HASH_MB, unset = no limit."""
    text = os.environ.get(ENV_MAX_HASH_MB, "").strip()
    if not text:
        return None
    try:
        return max(0, int(float(text) * 1024 * 1024))
    except ValueError:
        return None


def data_dir() -> Path:
    """The per-user folder for the embedded registry (XDG on Linux, the OS convention elsewhere)."""
    if os.environ.get(ENV_HOME):
        return Path(os.environ[ENV_HOME]).expanduser()
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif os.name == "nt":
        base = Path(os.environ.get("LOCALAPPDATA", Path.home() / "AppData" / "Local"))
    else:
        base = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return base / "lamin-integrations"


def user_handle() -> str:
    """Who creates records: the OS user (the registry's `user.handle`)."""
    import getpass

    try:
        return getpass.getuser()
    except Exception:
        return "unknown"


def config_file() -> Path:
    return data_dir() / "config.json"


# The lookbehind starts a match only where a scheme can start, so a long run of letters is
# scanned once, not once per position (a 200 KB journal line took minutes).
_PASSWORD_IN_URL = re.compile(r"(?<![a-zA-Z0-9+.-])(?P<head>[a-zA-Z][a-zA-Z0-9+.-]*://[^/\s:@]*:)[^@\s/]*@")


# A parameter or option whose name says it holds a secret (`api_key`, `--password`, `auth-token`),
# as a whole word of the name: `tokenizer` and `max_tokens` are not secrets.
SECRET_NAME = re.compile(r"(?i)(?:^|[_.-])(?:password|passwd|pwd|secret|token|api_?key|access_?key|private_?key|credentials?)$")
# `--config api_key=X db_password=Y` (Snakemake), `key=value` arguments generally, and the
# repr of an object holding one (`DBConfig(host='h', password='hunter2')`)
_SECRET_ASSIGN = re.compile(r"(?i)(?<![\w.-])([\w.]*?(?:password|passwd|secret|token|api_?key|access_?key|private_?key)=)"
                            r"(?!\*\*\*)(?:'[^']*'|\"[^\"]*\"|[^\s'\"]+)")  # a repr's password='...' too
_SECRET_OPTION = re.compile(r"(?i)(?<![\w-])(--?[\w.-]*?(?:password|passwd|secret|token|api[_-]?key|access[_-]?key|private[_-]?key)(?:=|\s+))(?!-)\S+")


# `DB_PASSWORD = "hunter2"`, `api_key: str = '...'`, `"token": "..."` in code that is stored
_SECRET_IN_SOURCE = re.compile(
    r"""(?im)^([ \t]*[\w.\[\]"']*?(?:password|passwd|secret|token|api_?key|access_?key|private_?key)[\w"'\]]*"""
    r"""[ \t]*(?::[ \t]*[\w.\[\], ]+?[ \t]*)?[=:][ \t]*[rbuf]?)(["'])(?!\*\*\*)([^"'\n]{3,})\2""")


def redact_source(code: str) -> str:
    """Source code as stored in the registry: string literals assigned to secret-looking names
    replaced, as lamindb does (`DB_PASSWORD = "***REDACTED***"`), so exports do not ship them."""
    if not any(word in code.lower() for word in ("password", "passwd", "secret", "token", "key")):
        return code
    return _SECRET_IN_SOURCE.sub(lambda m: f"{m.group(1)}{m.group(2)}***REDACTED***{m.group(2)}", code)


def mask_text(text: str) -> str:
    """Free text (an error message, a command line) with the passwords of `scheme://user:password@`
    URLs and the values of secret-looking options (`--password X`, `--api-key=X`) hidden."""
    if "://" in text:
        text = _PASSWORD_IN_URL.sub(lambda m: m.group("head") + "***@", text)
    if "-" in text:
        text = _SECRET_OPTION.sub(lambda m: m.group(1) + "***", text)
    if "=" in text:
        text = _SECRET_ASSIGN.sub(lambda m: m.group(1) + "***", text)
    return text


def read_config() -> dict[str, str]:
    path = config_file()
    if not path.exists():
        return {}
    import json

    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise InstanceError(f"cannot read {path}: {e}; fix or delete the file") from None


_PLAIN_SQLITE = re.compile(r"sqlite(?:\+pysqlite)?:///([^?%]+)")


def sqlite_file(db: str) -> str | None:
    """The database file of a plain `sqlite:///path` URL; None for any other URL.

    Plain means no query string and no %-escapes: those, and every other backend, are
    left to SQLAlchemy's URL parser.
    """
    match = _PLAIN_SQLITE.fullmatch(db)
    return match.group(1) if match and match.group(1) != ":memory:" else None


def as_url(db: str) -> str:
    """A registry given as a plain SQLite file path (`lineage.db`, `~/reg.sqlite`) is that
    file, as `--logger-lamin-db` takes it. Anything else is left to the URL parser, so a
    lamindb instance slug (`account/instance`) or a typo is an error, not a new file."""
    if db and "://" not in db and db.lower().endswith((".db", ".sqlite", ".sqlite3")):
        return "sqlite:///" + os.path.abspath(os.path.expanduser(db))
    return db


def resolve(db: str | None = None, storage: str | None = None) -> tuple[str, str]:
    """The (database URL, storage root) to use, by the documented order of precedence."""
    config = read_config() if not (db and storage) else {}
    db = db or os.environ.get(ENV_DB) or config.get("db")
    if db:
        db = as_url(db)
    storage = storage or os.environ.get(ENV_STORAGE) or config.get("storage")
    if not db:
        db = f"sqlite:///{data_dir() / 'lineage.db'}"
    if not storage:
        database = sqlite_file(db)
        if database is None:
            from .instance import parse_url

            url = parse_url(db)
            if url.get_backend_name() == "sqlite" and url.database not in (None, "", ":memory:"):
                database = url.database
        if database is not None:
            storage = str(Path(database).expanduser().resolve().parent / "storage")
        else:
            storage = str(data_dir() / "storage")
    if "://" not in storage:
        storage = str(Path(storage).expanduser().resolve())
    return db, storage


def announce(message: str) -> None:
    """One line on stderr for the person running the script, as lamindb prints it: `ln.track()`
    tells the uid to pin (`ln.track("...")`) there. LAMIN_INTEGRATIONS_QUIET=1 silences it."""
    if os.environ.get("LAMIN_INTEGRATIONS_QUIET", "").strip() not in ("", "0") or settings.verbosity in ("error", 0):
        return
    try:
        sys.stderr.write(f"→ {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError, AttributeError):  # stderr closed or replaced by None
        pass


class Settings:
    """`ln.settings`: the switches lamindb users set in code.

    `track_run_inputs` (default True): `load()`, `cache()` and `open()` of an artifact link it
    as an input of the current run unless given `is_run_input=False`; set it to False to link
    inputs only where `is_run_input=True` is passed. `instance` / `storage` / `user`: where
    records go and who creates them. `verbosity = "error"` (or 0) silences the one-line notes.
    """

    _VERBOSITY = ("error", "warning", "success", "info", "hint", "debug")

    def __init__(self) -> None:
        self.track_run_inputs = True
        self._verbosity: str | int = "warning"

    @property
    def instance(self) -> str:
        from .instance import current

        return current().url

    @property
    def storage(self) -> StorageRoot:
        from .instance import current

        return StorageRoot(current().storage_root)

    @storage.setter
    def storage(self, root: str) -> None:
        """lamindb's `ln.settings.storage = "s3://bucket/folder"`: new artifacts of this process
        are stored there (the registry stays the same)."""
        from .instance import connect, current

        if not isinstance(root, str) or not root:
            raise ValueError(f"ln.settings.storage takes a folder or a URL, got {root!r}")
        connect(current()._url.render_as_string(hide_password=False), root)

    @property
    def user(self) -> object:
        """The User record of whoever runs this process (`Artifact.filter(created_by=ln.settings.user)`)."""
        from .instance import current

        return current().user

    @property
    def verbosity(self) -> str | int:
        return self._verbosity

    @verbosity.setter
    def verbosity(self, value: str | int) -> None:
        if value not in self._VERBOSITY and value not in range(len(self._VERBOSITY)):
            raise ValueError(f"verbosity is one of {', '.join(self._VERBOSITY)} (or 0-5), got {value!r}")
        self._verbosity = value

    def __repr__(self) -> str:
        return f"Settings(track_run_inputs={self.track_run_inputs}, verbosity={self.verbosity!r})"


class StorageRoot(str):
    """`ln.settings.storage`: the storage root as text, with lamindb's `.root` (a path) and `.root_as_str`."""

    @property
    def root(self) -> object:
        if "://" in self and not self.startswith("file://"):
            from upath import UPath

            return UPath(str(self))
        return Path(self.removeprefix("file://"))

    @property
    def root_as_str(self) -> str:
        return str(self)


settings = Settings()
