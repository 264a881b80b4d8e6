"""The run context: `ln.track()` / `ln.finish()` and the current run.

The current run lives in a ContextVar (so threads and asyncio tasks each see their own),
with the global `ln.context.run` as the fallback. Child processes find their parent through
an environment variable holding its uid.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import sys
import threading
import time
from contextvars import ContextVar
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import (
    InvalidArgument,
    ObjectDoesNotExist,
    TrackNotCalled,
    UpdateContext,
    ValidationError,
)
from .gitinfo import git_reference, git_root, git_state
from .jsonutil import run_params
from .settings import announce

if TYPE_CHECKING:
    from .models import Project, Run, Transform

logger = logging.getLogger("lamin_integrations")

ENV_RUN_UID = "LAMIN_INTEGRATIONS_RUN_UID"
ENV_LAMINDB_RUN_UID = "LAMIN_INITIATED_BY_RUN_UID"  # lamindb's name, honoured too
PARENT_WAIT_SECONDS = 10.0

_current_run: ContextVar[Run | None] = ContextVar("lamin_integrations_current_run", default=None)


def get_current_run() -> Run | None:
    """The run that new records belong to: this thread/task's, else the global one.

    An adapter that writes runs in the background (Prefect task runs) may make a run current
    before it is in the registry; such a run carries a `_materialize` callable in its state,
    called here so that whoever asks gets a saved run.
    """
    run = _current_run.get() or context.run
    if run is not None and run.id is None:
        materialize = run.__dict__.get("_materialize")
        if materialize is not None:
            materialize()
    return run


def peek_current_run() -> Run | None:
    """The current run without waiting for a background write (adapters' own bookkeeping)."""
    return _current_run.get() or context.run


def set_current_run(run: Run | None) -> Any:
    """Make `run` current in this thread/task; returns a token for `reset_current_run`."""
    return _current_run.set(run)


def reset_current_run(token: Any) -> None:
    _current_run.reset(token)


_LAMINDB_ONLY = {"space", "branch", "pypackages", "stream_tracking", "expected_param_types"}


def _plan_artifact(plan: Any) -> Any:
    """`track(plan=...)`: an Artifact, or the key or uid of one (None, with a warning, while
    the registry is unavailable: the run is journaled without it rather than not at all)."""
    from .journal import is_unavailable

    try:
        return _find_plan(plan)
    except Exception as e:
        if not is_unavailable(e):
            raise
        logger.warning("ln.track(plan=...): the registry is unavailable; the run is recorded without its plan")
        return None


def _find_plan(plan: Any) -> Any:
    from .models import Artifact

    if isinstance(plan, Artifact):
        return plan if plan.id is not None else plan.save()
    if isinstance(plan, str):
        found = Artifact.filter(uid=plan).one_or_none() if len(plan) in (16, 20) else None
        found = found or Artifact.filter(key=plan, is_latest=True).order_by("-id").first()
        if found is not None:
            return found
        raise ValidationError(f"track(plan=...): no artifact has the key or uid {plan!r}; save the plan first")
    raise ValidationError(f"track(plan=...) takes an Artifact or its key or uid, got {type(plan).__name__}")


def parent_run_from_env(environ: Any = None) -> Run | None:
    """The run that launched this process, if it told us through the environment.

    `environ`: the variables to read instead of `os.environ` (an adapter that exports its own
    runs' uids passes what the process was started with)."""
    from .models import Run

    environ = os.environ if environ is None else environ
    ours = environ.get(ENV_RUN_UID)
    uid = ours or environ.get(ENV_LAMINDB_RUN_UID)
    if not uid:
        return None
    # Our variable is set by a process that records the run in the background (an engine
    # adapter): give it a moment to appear. lamindb's variable may point at another registry.
    deadline = time.monotonic() + (PARENT_WAIT_SECONDS if ours else 0)
    while True:
        run = Run.filter(uid=uid).one_or_none()
        if run is not None:
            from . import plugins

            refined = plugins.fire("parent_run_for_process", run=run) if plugins.has_impls("parent_run_for_process") else []
            if not refined:
                run.__dict__["_unrefined"] = True  # a plugin may still say where it belongs (parent_hint)
            return refined[0] if refined else run
        if time.monotonic() >= deadline:
            break
        time.sleep(0.1)
    logger.warning("parent run %s (from the environment) is not in this registry; starting a top-level run", uid)
    return None


def _caller_file() -> Path | None:
    """The file of the first caller outside this package (the user's script or module)."""
    package_dir = Path(__file__).resolve().parents[1]
    frame: Any = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if filename.endswith(".py") and not filename.startswith("<"):
            path = Path(filename).resolve()
            if package_dir not in path.parents and path.exists():
                return path
        frame = frame.f_back
    return None


def _caller_script() -> Path | None:
    """The user's script, also when an engine runs a copy of it."""
    path = _caller_file()
    return _original_script(path) if path is not None else None


def _original_script(path: Path) -> Path:
    """The user's file when `path` is an engine's temporary copy of it (Snakemake `script:`)."""
    from . import plugins

    if not plugins.has_impls("original_script_path"):
        return path
    found = plugins.fire("original_script_path", path=path)
    return found[0] if found else path


def script_key(path: Path) -> str:
    """Path relative to the git root, else the file name: stable across clones and machines."""
    root = git_root(path)
    return path.relative_to(root).as_posix() if root else path.name


class Context:
    """`ln.context`: the transform and run managed by `ln.track()`."""

    def __init__(self) -> None:
        self._transform: Transform | None = None
        self._run: Run | None = None
        self._project: Project | None = None
        self._project_of_run = False
        # uid / version / description: what the tracked transform has, or, set before
        # `ln.track()`, the uid to track and the version / description a new transform gets
        self.uid: str | None = None
        self.version: str | None = None
        self.description: str | None = None
        self._activated: tuple[str | None, str | None, str | None] = (None, None, None)
        self._requested: dict[str, Any] = {}
        self._guard: Any = None
        self._parent_env: str | None = None

    @property
    def transform(self) -> Transform | None:
        from .fasttrack import TransformRow

        if isinstance(self._transform, TransformRow):  # tracked without the registry API: load it now
            from .models import Transform

            # The registry the run is in (not whatever ln.connect() chose since).
            registry = self._run._db  # type: ignore[union-attr]
            self._transform = Transform.connect(registry).filter(id=self._transform.id).one()
        return self._transform

    @property
    def run(self) -> Run | None:
        return self._run

    @property
    def project(self) -> Project | None:
        return self._project

    def use_project(self, project: str | Project | None) -> Project | None:
        """Label every record created from now on with `project` (a name, uid or Project)."""
        from .models import Project

        if project is None or isinstance(project, Project):
            self._project = project
            return project
        try:
            self._project = Project.get(name=project) if not _looks_like_uid(project) else Project.get(project)
        except ObjectDoesNotExist:
            try:
                self._project = Project.get(name=project)
            except ObjectDoesNotExist:
                raise ValidationError(f"no project named {project!r}; create it with ln.Project(name={project!r}).save()") from None
        return self._project

    def track(
        self,
        transform: str | Transform | None = None,
        *,
        project: str | None = None,
        params: dict | None = None,
        new_run: bool | None = None,
        path: str | None = None,
        initiated_by_run: Run | str | None = None,
        features: dict | None = None,
        key: str | None = None,
        kind: str | None = None,
        source_code: str | None = None,
        entrypoint: str | None = None,
        plan: str | Any = None,
        **ignored: Any,
    ) -> Run:
        """Start (or resume) a run of this script; returns the Run.

        `features` annotates the run with values of declared features (`run.features.add_values`),
        checked before the run starts. `key`, `kind` and `source_code` describe the transform
        instead of the script file (code without a file: an agent, a function); `entrypoint`
        names the function run; `plan` is an artifact (or its key or uid) the run follows.
        lamindb's `space`, `branch`, `pypackages`, `stream_tracking` and `expected_param_types`
        are taken and have no effect here."""
        unknown = set(ignored) - _LAMINDB_ONLY
        if unknown:
            raise TypeError(f"track() got an unexpected keyword argument {sorted(unknown)[0]!r}")
        if any(v is not None for k, v in ignored.items() if k in ("space", "branch")):
            logger.warning("ln.track(): space= and branch= are lamindb permissions this registry does not have: ignored")
        if plan is not None:
            plan = _plan_artifact(plan)  # a wrong plan starts no run, saves no transform
        if key is not None or kind is not None or source_code is not None:
            if transform is not None:
                raise ValidationError("track() takes a transform, or key / kind / source_code to describe one, not both")
            # not saved yet: the run's own checks come first, and offline it is journaled
            transform = self._described_transform(key, kind, source_code, path)
        if entrypoint is not None or plan is not None:
            run = self.track(transform, project=project, params=params, new_run=new_run, path=path,
                             initiated_by_run=initiated_by_run, features=features)
            if plan is not None:
                run.plan = plan
            run.entrypoint = entrypoint[:255] if entrypoint else run.entrypoint
            return run.save() if run.id is not None else run  # type: ignore[no-any-return]
        if features is not None:
            from .features import resolve_values
            from .instance import current

            resolve_values(features, current())
            run = self.track(transform, project=project, params=params, new_run=new_run, path=path,
                             initiated_by_run=initiated_by_run)
            run.features.add_values(features)
            return run
        if params is not None:
            if not isinstance(params, dict):
                raise ValidationError(f"params must be a dict, got {type(params).__name__}")
            params = run_params(params)
        if initiated_by_run is not None:
            from .models import Run

            if isinstance(initiated_by_run, str):  # lamindb takes the parent's uid too
                parent = Run.filter(uid=initiated_by_run).one_or_none()
                if parent is None:
                    raise ValidationError(f"initiated_by_run: no run with uid {initiated_by_run!r}")
                initiated_by_run = parent
            if not isinstance(initiated_by_run, Run):
                raise ValidationError(f"initiated_by_run expects a Run or its uid, got {initiated_by_run!r}")
        if self._run is not None and _current_run.get() is self._run:
            self._supersede()
        from . import fasttrack

        down = _registry_recently_unavailable()
        if down is not None:  # another process just waited for it in vain: do not wait again
            from ..errors import RegistryUnavailable

            run = self._track_offline(RegistryUnavailable(down), transform, project, params, path, initiated_by_run,
                                      remember=False)
            return self._announce(run, self._transform)
        requested = self._requested_fields()
        if transform is None and requested.get("uid") is not None:
            transform = requested["uid"]  # `ln.context.uid = "..."` then `ln.track()`
        self._requested = {k: v for k, v in requested.items() if k != "uid"}
        if (transform is None or isinstance(transform, str)) and fasttrack.eligible(new_run, project, initiated_by_run) \
                and not self._requested:
            blocked = _block_signals()  # as in _track: no signal between the insert and the handlers
            try:
                started = fasttrack.start(transform, params, path)
                if started is not None:
                    self._activate(started[1], started[0])  # type: ignore[arg-type]
            finally:
                _unblock_signals(blocked)
            if started is not None:
                return self._announce(started[0], started[1])
        try:
            run = self._track(transform, project, params, new_run, path, initiated_by_run)
        except Exception as e:
            from .journal import is_unavailable

            if not is_unavailable(e):
                raise
            run = self._track_offline(e, transform, project, params, path, initiated_by_run)
        return self._announce(run, self._transform)

    @staticmethod
    def _announce(run: Any, transform: Any) -> Run:
        # after the run is guarded, so that both ways of tracking have the line in the report
        if transform.uid is None:  # journaled while the registry is unavailable: its uid comes with `sync`
            announce(f"started Run('{run.uid}') of Transform(key={transform.key!r}), journaled")
        else:
            announce(f"started Run('{run.uid}') of Transform('{transform.uid}', key={transform.key!r})")
        return run  # type: ignore[no-any-return]

    def _track(self, transform: str | Transform | None, project: str | None, params: dict | None,
               new_run: bool | None, path: str | None, initiated_by_run: Run | None) -> Run:
        if project is not None:
            self.use_project(project)
            self._project_of_run = True  # labels what this run creates, not what comes after finish()
        parent = initiated_by_run or _current_run.get() or parent_run_from_env()
        if parent is not None and parent.id is None and parent.__dict__.get("_materialize"):
            parent.__dict__["_materialize"]()  # an adapter's run still being written in the background
        transform_record = self._resolve_transform(transform, path, parent)
        environment = _environment_artifact()
        script = Path(path).expanduser().resolve() if path else _caller_script()
        git = git_state(script) if script is not None else None
        # A signal between "the run is saved" and "its handlers are installed" would leave it
        # started forever: hold SIGTERM/SIGINT until both are done, then deliver them.
        blocked = _block_signals()
        try:
            run = self._start_run(transform_record, parent, params, new_run, environment, git)
        finally:
            _unblock_signals(blocked)
        return run

    def _start_run(self, transform_record: Transform, parent: Run | None, params: dict | None,
                   new_run: bool | None, environment: Any, git: dict | None) -> Run:
        from .models import Run
        from .settings import mask_text

        run = None
        if new_run is False:
            run = transform_record.latest_run
            if run is not None:
                from .schema import now

                run.status = "restarted"
                run.started_at = now()
                run.finished_at = None
                if params is not None:
                    run.params = params
                run.save()
        if run is None:
            run = Run(transform_record, params=params, initiated_by_run=parent, status="started")
            run.cli_args = mask_text(" ".join(sys.argv[1:]))[:4096] or None
            run.host = socket.gethostname()[:255]
            run.pid = os.getpid()
            run.environment = environment
            aux: dict[str, Any] = {"git": git} if git else {}
            if parent is not None and parent.__dict__.get("_unrefined"):
                from . import plugins

                # the run it belongs to below `parent` was not recorded yet (an engine's job
                # still being written): the engine's recorder adopts it when it is
                hints = plugins.fire("parent_hint_for_process") if plugins.has_impls("parent_hint_for_process") else []
                if hints:
                    aux["parent_hint"] = hints[0]
            run._aux = aux or None
            run.save()
        self._activate(transform_record, run)
        return run

    def _track_offline(self, error: Exception, transform: str | Transform | None, project: str | None,
                       params: dict | None, path: str | None, initiated_by_run: Run | None, remember: bool = True) -> Run:
        """The registry is unavailable: run on with an in-memory run whose start and end are
        journaled (core/journal.py) for `lamin-integrations sync`. No report or environment.
        `remember`: processes started in the next seconds journal without waiting for it."""
        from .instance import current
        from .journal import Journal, track_start
        from .models import Run, Transform
        from .schema import now
        from .settings import mask_text
        from .uids import base62

        script = Path(path).expanduser().resolve() if path else _caller_script()
        described: dict[str, Any] = {"kind": "script"}
        if isinstance(transform, Transform):
            described.update(key=transform.key, kind=transform.kind, source_code=transform.source_code,
                             uid=transform.uid if transform.id is not None else None)
        elif script is not None and script.exists():
            reference, reference_type = git_reference(script)
            described.update(key=script_key(script), source_code=script.read_text(errors="replace"),
                             reference=reference, reference_type=reference_type, uid=transform)
        elif transform is not None:
            described.update(key=transform, uid=transform)
        else:
            raise error
        record = Transform(**{k: v for k, v in described.items() if k != "uid" and v is not None})
        parent = initiated_by_run or _current_run.get()
        parent_uid = parent.uid if parent is not None else os.environ.get(ENV_RUN_UID) or os.environ.get(ENV_LAMINDB_RUN_UID)
        run = Run(record, params=params, status="started", uid=base62(16))
        run.started_at = now()
        run.cli_args = mask_text(" ".join(sys.argv[1:]))[:4096] or None
        run.host, run.pid = socket.gethostname()[:255], os.getpid()
        git = git_state(script) if script is not None else None
        fields = {"params": params, "started_at": run.started_at.isoformat(), "cli_args": run.cli_args,
                  "host": run.host, "pid": run.pid, "git": git, "parent_uid": parent_uid,
                  "project": project if isinstance(project, str) else None}
        if parent is None and parent_uid:
            from . import plugins

            hints = plugins.fire("parent_hint_for_process") if plugins.has_impls("parent_hint_for_process") else []
            if hints:
                fields["parent_hint"] = hints[0]  # e.g. the Snakemake job of a script: directive
        journal = Journal.of(current())
        try:
            journal.append("track", run.uid, [track_start(described, fields)])
        except OSError as e:
            raise error from e  # nowhere to keep it: the caller must know
        reason = mask_text(f"{type(error).__name__}: {error}").splitlines()[0][:500]
        if remember:
            journal.mark_unavailable(reason)
        sys.stderr.write(f"lamin-integrations: the registry is unavailable ({reason}); Run('{run.uid}') is journaled "
                         f"in {journal.path} for `lamin-integrations sync`\n")
        blocked = _block_signals()
        try:
            self._activate(record, run, journal)
        finally:
            _unblock_signals(blocked)
        return run

    def _supersede(self) -> None:
        """A second `ln.track()` in one process: the first run ends (completed) and the new one
        starts where the first did, under the same parent, not as the first run's child."""
        if self._guard is not None:
            self._guard.end("completed", reason="superseded by a new ln.track()")
            self._guard = None
        _current_run.set(None)
        if self._parent_env:
            os.environ[ENV_RUN_UID] = self._parent_env
        else:
            os.environ.pop(ENV_RUN_UID, None)

    def _activate(self, transform_record: Transform, run: Run, journal: Any = None) -> None:
        """Make `run` the current run, exported to child processes and guarded until it ends."""
        if self._guard is not None:
            self._guard.end("completed", reason="superseded by a new ln.track()")
        self._transform, self._run = transform_record, run
        self.uid, self.version, self.description = transform_record.uid, transform_record.version, transform_record.description
        self._activated = (self.uid, self.version, self.description)
        _current_run.set(run)
        self._parent_env = os.environ.get(ENV_RUN_UID)
        os.environ[ENV_RUN_UID] = run.uid
        from .lifecycle import RunGuard
        from .settings import data_dir

        # Absolute: the report is found also after the script changed directory.
        self._guard = RunGuard(run, data_dir().absolute() / "cache" / "run_logs" / f"run_{run.uid}.txt", journal)
        self._guard.install()

    def _described_transform(self, key: str | None, kind: str | None, source_code: str | None, path: str | None) -> Transform:
        """The transform `track(key=, kind=, source_code=)` describes; what is not given comes
        from the script, as without them."""
        from .models import Transform

        script = Path(path).expanduser().resolve() if path else _caller_script()
        found = script is not None and script.exists()
        if source_code is None and found:
            source_code = script.read_text(errors="replace")  # type: ignore[union-attr]
        if key is None:
            if not found:
                raise ValidationError("cannot detect the script being run; pass key='my-analysis' or path='my_script.py'")
            key = script_key(script)  # type: ignore[arg-type]
        requested = {k: v for k, v in self._requested_fields().items() if k != "uid"}
        return Transform(key=key, kind=kind or "script", source_code=source_code, **requested)

    def _requested_fields(self) -> dict[str, Any]:
        """`ln.context.uid / version / description` set since the last run was activated."""
        named = zip(("uid", "version", "description"), (self.uid, self.version, self.description), self._activated,
                    strict=True)
        return {name: mine for name, mine, activated in named if mine is not None and mine != activated}

    def _resolve_transform(self, transform: str | Transform | None, path: str | None, parent: Run | None = None) -> Transform:
        from . import plugins
        from .models import Transform

        if isinstance(transform, Transform):
            return transform if transform.id is not None else transform.save()
        if transform is not None and not isinstance(transform, str):
            raise InvalidArgument(f"track() takes a transform uid or a Transform record, got {transform!r}")
        if transform is None and not path and parent is not None and plugins.has_impls("transform_for_process"):
            found = plugins.fire("transform_for_process", run=parent)
            if found:
                return found[0]  # type: ignore[no-any-return]
        script = Path(path).expanduser().resolve() if path else _caller_script()
        if script is None or not script.exists():
            if transform is not None:
                return self._transform_by_uid(transform, None, None)
            raise ValidationError("cannot detect the script being run; pass path='my_script.py' or a transform")
        try:
            source = script.read_text(errors="replace")
        except OSError as e:
            raise ValidationError(f"cannot read the script {script}: {e}") from None
        key = script_key(script)
        if transform is not None:
            return self._transform_by_uid(transform, key, source)
        reference, reference_type = git_reference(script)
        kwargs: dict[str, Any] = {}
        if reference:
            kwargs = {"reference": reference[:255], "reference_type": reference_type}
        return Transform(key=key, kind="script", source_code=source, **kwargs, **self._requested).save()

    def _transform_by_uid(self, uid: str, key: str | None, source: str | None) -> Transform:
        from .hashing import hash_string
        from .models import Transform

        if len(uid) not in (12, 16):
            raise ValidationError(f"a transform uid has 12 (family) or 16 (pinned version) characters, got {uid!r}")
        if len(uid) == 16:
            existing = Transform.filter(uid=uid).one_or_none()
            if existing is not None:
                if source is not None and existing.hash is not None and existing.hash != hash_string(source):
                    raise UpdateContext(
                        f"the source of {existing.key!r} changed since version {uid}; pass the 12-character "
                        f"family uid ln.track({uid[:12]!r}) to record a new version"
                    )
                return existing
            return Transform(key=key or uid, kind="script", source_code=source, uid=uid, **self._requested).save()
        family = Transform.filter(uid__startswith=uid).order_by("-id").first()
        if family is not None and source is not None:
            h = hash_string(source)
            same = Transform.filter(uid__startswith=uid, hash=h).first()
            if same is not None:
                return same
        elif family is not None:
            return family
        # Keep the family across renames: the new version takes the new key.
        return Transform(key=key or uid, kind="script", source_code=source, uid=uid, **self._requested).save()

    def finish(self, ignore_non_consecutive: bool | None = None) -> None:
        """Mark the tracked run completed, with its finish time and its log as the report."""
        self._end("completed")

    def _end(self, status: str, reason: str | None = None) -> None:
        run = self._run
        if run is None:
            raise TrackNotCalled("finish() needs a run: call ln.track() first")
        if self._guard is not None:
            self._guard.end(status, reason=reason)
            self._guard = None
        else:
            run.status = status  # type: ignore[assignment]
            run.save()
        if os.environ.get(ENV_RUN_UID) == run.uid:
            # Processes started after finish() are no longer children of this run.
            if self._parent_env:
                os.environ[ENV_RUN_UID] = self._parent_env
            else:
                os.environ.pop(ENV_RUN_UID, None)
        if self._project_of_run:
            self._project, self._project_of_run = None, False
        announce(f"finished Run('{run.uid}')" if status == "completed" else f"{status} Run('{run.uid}')")


def _block_signals() -> Any:
    if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "pthread_sigmask"):
        return None
    return signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})


def _unblock_signals(previous: Any) -> None:
    if previous is not None:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


def _environment_artifact() -> Any:
    """The shared requirements.txt artifact of this interpreter (None if it cannot be made)."""
    from .environment import requirements_file
    from .models import Artifact
    from .settings import data_dir

    try:
        artifact = Artifact(requirements_file(data_dir() / "cache"), description="requirements.txt", kind="__lamindb_run__")
        artifact.__dict__["_no_lineage"] = True
        return artifact.save()
    except Exception as e:  # the environment is a nice-to-have; the run is not
        logger.warning("could not record the Python environment: %s", e)
        return None


def _registry_recently_unavailable() -> str | None:
    """Why a database server registry was found unavailable moments ago by another process (a
    SQLite file is never skipped: it costs nothing to try, and this check must not import SQLAlchemy)."""
    from .settings import as_url, resolve

    module = sys.modules.get("lamin_integrations.core.instance")
    connected = getattr(module, "_current", None) if module is not None else None
    try:
        url = connected.url if connected is not None else as_url(resolve()[0])
    except Exception:  # a broken configuration: the full path says what is wrong
        return None
    if url.startswith("sqlite"):
        return None
    from .journal import Journal

    return Journal(url).recently_unavailable()


def _looks_like_uid(value: str) -> bool:
    from .uids import is_base62

    return len(value) == 12 and is_base62(value)


context = Context()
track = context.track
finish = context.finish
