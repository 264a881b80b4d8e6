"""Hostile input: arbitrary traces, weblog bodies, lookups, values, keys and CLI arguments.

Property-based (hypothesis, derandomized so CI sees the same examples every run): whatever
comes in gives a result or one of the project's own errors (`LaminIntegrationsError`), never
an unhandled exception, and a rejected input writes nothing. Plain SQL injection through
`filter` / `search` values is pinned down in tests/test_query.py; this module adds the
command line, arbitrary lookups, and keys / paths that try to leave the storage root.
"""

from __future__ import annotations

import datetime as dt
import http.client
import json
import os
import string
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner
from conftest import running_weblog
from hypothesis import HealthCheck, assume, event, given, settings
from hypothesis import strategies as st

import lamin_integrations as ln
from lamin_integrations.cli import cli
from lamin_integrations.core.pipeline import artifact_key, record_outputs
from lamin_integrations.core.storage import check_key
from lamin_integrations.errors import InvalidKey, LaminIntegrationsError, ValidationError
from lamin_integrations.nextflow.trace import KNOWN_FIELDS, STATUSES, TraceError, parse_lines

# One profile for the module: same examples on every run, no example database, no deadline
# (PostgreSQL round-trips vary), and the registry fixture is shared by a test's examples on
# purpose (each example counts rows before and after itself).
HOSTILE = settings(derandomize=True, database=None, deadline=None, max_examples=60,
                   suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])

SPECIAL = ["'", '"', ";", "%", "_", "\\", "\x00", "--", "x'); DROP TABLE run; --", "' OR '1'='1", "..", "/",
           "\udcff", "é", "🧬", " ", "\t", "\n", "9" * 400, "-", "", "0", "-1", "1e999", "NaN", "2147483647"]
# Any code point, lone surrogates (file names that are not UTF-8) and NUL included.
any_char = st.characters(exclude_categories=())
hostile_text = st.one_of(st.text(any_char, max_size=20), st.sampled_from(SPECIAL),
                         st.tuples(st.sampled_from(SPECIAL), st.text(any_char, max_size=5)).map("".join))
json_scalars = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**80), max_value=2**80),
                         st.floats(allow_nan=True, allow_infinity=True), hostile_text)
json_values = st.recursive(json_scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                                 st.dictionaries(hostile_text, inner, max_size=3)),
                           max_leaves=8)


def counts(registry) -> dict[str, int]:
    """Rows per table, read with plain SQL (trashed and in-flight rows included)."""
    registry.storage  # noqa: B018  (the default storage row is created on first use, not by the input)
    with registry.read() as conn:
        return {t: conn.execute(sa.text(f'SELECT count(*) FROM "{t}"')).scalar()
                for t in ("transform", "run", "artifact", "project", "storage", "run_input_artifact")}


# -- the Nextflow trace parser ------------------------------------------------------------------

TRACE_VALUES = st.one_of(
    st.sampled_from(["-", "", "1", "0", "12.5%", "1004.8 MB", "6 QB", "1h 3m 7s", "5.8s", "123ms", "3d",
                     "2024-03-04 21:06:07.625", "2024-03-04T21:06:07Z", "1709586367625", "ab/123456", "zz/1",
                     *sorted(STATUSES), "2147483647", "9" * 400, "9" * 400 + " EB", "9" * 400 + "d",
                     "9" * 30, "-" + "9" * 30, "1." + "9" * 400, "/work/e1/fc2d06" + "0" * 24]),
    hostile_text.filter(lambda s: "\n" not in s and "\r" not in s))
TRACE_COLUMNS = st.lists(st.one_of(st.sampled_from(sorted(KNOWN_FIELDS)), st.sampled_from(["foo", "x:num", "%cpu:perc", "task_id:str", "y:bogus"])),
                         min_size=1, max_size=8)


@st.composite
def trace_texts(draw) -> list[str]:
    """A header of trace fields and rows of plausible or hostile values, or arbitrary lines."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.lists(st.text(any_char, max_size=40), max_size=4))
    sep = draw(st.sampled_from(["\t", ",", ";", "|"]))
    columns = draw(TRACE_COLUMNS)
    lines = [sep.join(columns) + "\n"]
    for _ in range(draw(st.integers(0, 4))):
        n = len(columns) + draw(st.sampled_from([0, 0, 0, 0, -1, 1]))
        lines.append(sep.join(draw(TRACE_VALUES) for _ in range(max(n, 0))) + draw(st.sampled_from(["\n", "\r\n", ""])))
    return lines


@HOSTILE
@given(lines=trace_texts(), partial=st.booleans(), tz=st.sampled_from([None, dt.UTC]))
def test_the_trace_parser_gives_a_trace_or_a_trace_error(lines, partial, tz):
    try:
        trace = parse_lines(lines, path="t.txt", tz=tz, partial_tail=partial)
    except TraceError as e:
        assert str(e).startswith("t.txt"), e  # the message names the file (and the line)
        return
    for task in trace.tasks:
        json.dumps(task.fields, default=str, allow_nan=False)  # finite numbers, text, datetimes


@HOSTILE
@given(name=st.sampled_from(sorted(KNOWN_FIELDS)), value=st.one_of(TRACE_VALUES, json_scalars), tz=st.sampled_from([None, dt.UTC]))
def test_any_value_in_any_trace_field_is_normalised_or_a_value_error(name, value, tz):
    """Regression (were bugs): numbers beyond a float (`'9' * 400` as memory, duration, cpus, %cpu, task_id or an
    epoch) raised OverflowError or gave `inf` instead of the TraceError naming the line."""
    from lamin_integrations.nextflow.trace import normalise

    try:
        fields = normalise({name: value}, tz)
    except ValueError as e:
        assert str(e).startswith(f"field {name}:"), e
        return
    json.dumps(fields, default=str, allow_nan=False)


@HOSTILE
@given(lines=trace_texts())
def test_ingesting_an_arbitrary_trace_records_it_or_nothing(registry, tmp_path_factory, lines):
    from lamin_integrations.nextflow import ingest_trace

    path = tmp_path_factory.mktemp("trace") / "execution_trace.txt"
    path.write_text("".join(lines), encoding="utf-8", errors="surrogateescape")
    before = counts(registry)
    try:
        run = ingest_trace(path, run_name="hostile", timezone_name="UTC", discover_files=False, record_files=False)
    except LaminIntegrationsError:
        assert counts(registry) == before
        event("rejected")
        return
    event("recorded")
    assert run.id is not None and ln.Run.get(run.id).name == "hostile"


# -- the weblog receiver ---------------------------------------------------------------------

EVENT_NAMES = ["started", "process_submitted", "process_started", "process_completed", "error", "completed", "bogus"]


@st.composite
def weblog_bodies(draw) -> bytes:
    """Arbitrary bytes, arbitrary JSON, or events shaped like Nextflow's with hostile values."""
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=200))
    if kind == 1:
        return json.dumps(draw(json_values)).encode("utf-8", "surrogatepass")
    sane = kind >= 4  # a third of the events carry only plausible values, so recording is exercised too
    names = st.text(string.ascii_letters + "_", min_size=1, max_size=12)
    event: dict = {"event": draw(st.sampled_from(EVENT_NAMES[:-1] if sane else EVENT_NAMES)),
                   "runName": draw(names if sane else st.one_of(hostile_text, json_scalars)),
                   "runId": draw(st.uuids().map(str) if sane else json_scalars),
                   "utcTime": draw(st.one_of(json_scalars, st.just("2024-03-04T21:06:07Z")))}
    if draw(st.booleans()) or event["event"].startswith("process_"):
        fields = draw(st.lists(st.sampled_from(sorted(KNOWN_FIELDS - {"task_id"})), max_size=6, unique=True))
        values = st.sampled_from(["-", "1", "12.5", "2024-03-04 21:06:07.625", "COMPLETED", "ab/123456", "x"]) if sane \
            else st.one_of(json_scalars, TRACE_VALUES)
        event["trace"] = {"task_id": draw(st.integers(1, 5) if sane else st.one_of(json_scalars, TRACE_VALUES)),
                          **{f: draw(values) for f in fields}}
    if draw(st.booleans()):
        workflow = draw(st.dictionaries(st.sampled_from(["repository", "projectName", "revision", "start", "complete",
                                                         "launchDir", "workDir", "commandLine", "success", "errorMessage",
                                                         "stats", "manifest", "nextflow", "exitStatus"]), json_values, max_size=6))
        event["metadata"] = draw(st.one_of(st.just({"workflow": workflow, "parameters": draw(json_values)}), json_values))
    return json.dumps(event).encode("utf-8", "surrogatepass")


@pytest.fixture
def weblog(registry):
    with running_weblog(max_body=16 * 1024) as srv:
        yield srv


def post(srv, body: bytes, path: str = "/?token=s3cret") -> tuple[int, dict]:
    conn = http.client.HTTPConnection(*srv.server_address[:2], timeout=30)
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


@HOSTILE
@given(body=weblog_bodies())
def test_the_weblog_receiver_answers_any_body_with_a_record_or_a_4xx_that_writes_nothing(registry, weblog, body):
    before = counts(registry)
    status, reply = post(weblog, body)
    event(f"HTTP {status}")
    assert status in (200, 400, 422), (status, reply)  # never 500: what a client sends is never our crash
    if status != 200:
        assert counts(registry) == before, reply
        assert reply["status"] == "error" and reply["message"]


@HOSTILE
@given(body=weblog_bodies(), path=st.sampled_from(["/", "/?token=", "/?token=wrong", "/?token=s3cre", "/s3cretx",
                                                    "/?token=s3cret%00", "/?tok=s3cret"]))
def test_the_weblog_receiver_without_the_token_writes_nothing(registry, weblog, body, path):
    before = counts(registry)
    assert post(weblog, body, path)[0] == 401
    assert counts(registry) == before


def test_the_weblog_receiver_rejects_an_oversized_body_without_reading_it(registry, weblog):
    """The limit applies before authentication work and before the body is read."""
    good = json.dumps({"event": "started", "runName": "big", "metadata": {"parameters": {"x": "y" * 20_000}}}).encode()
    assert post(weblog, good)[0] == 413
    conn = http.client.HTTPConnection(*weblog.server_address[:2], timeout=30)
    conn.putrequest("POST", "/?token=s3cret")
    conn.putheader("Content-Length", str(10**12))  # announced, never sent
    conn.endheaders()
    assert conn.getresponse().status == 413
    conn.close()
    assert ln.Run.filter().count() == 0


# -- the query-lookup parser -------------------------------------------------------------------

RUN_NAMES = ["id", "uid", "name", "status", "params", "started_at", "transform", "initiated_by_run", "input_artifacts",
             "output_artifacts", "key", "reference", "_aux", "is_locked", "projects", "created_by", "features", "run"]
OPS = ["exact", "iexact", "in", "contains", "icontains", "startswith", "endswith", "gt", "gte", "lt", "lte", "isnull", "range"]
FIELDS = ["id", "uid", "name", "status", "params__a", "params__s", "params__deep__k", "started_at", "transform__key",
          "initiated_by_run__name", "input_artifacts__key", "key", "hash", "size", "suffix", "version", "kind", "reference",
          "is_latest", "run__name", "runs__name", "transform", "run", "description"]
plausible_lookups = st.tuples(st.sampled_from(FIELDS), st.sampled_from(["", *OPS])).map(lambda t: "__".join(filter(None, t)))
lookup_names = st.one_of(plausible_lookups, plausible_lookups,
                         st.lists(st.one_of(st.sampled_from(RUN_NAMES), st.sampled_from(OPS), hostile_text),
                                  min_size=1, max_size=4).map("__".join))
plausible_values = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.sampled_from(["a", "x", "t", "1", "completed", "%", "_"]),
                             st.lists(st.one_of(st.integers(-3, 3), st.sampled_from(["a", "x", "1"])), max_size=3),
                             st.just(dt.datetime(2024, 1, 1, tzinfo=dt.UTC)))
lookup_values = st.one_of(plausible_values, plausible_values, json_values, st.datetimes(timezones=st.sampled_from([dt.UTC, dt.timezone(dt.timedelta(hours=14)),
                                                                                dt.timezone(dt.timedelta(hours=-12))])),
                          st.dates(), st.binary(max_size=5), st.tuples(json_scalars, json_scalars), st.sets(st.integers(), max_size=3),
                          st.just(object()), st.integers(min_value=-(2**70), max_value=2**70))


@pytest.fixture
def some_runs(registry):
    t = ln.Transform(key="t").save()
    ln.Run(t, name="a", params={"a": 1, "s": "x", "n": None, "deep": {"k": [1]}}).save()
    ln.Run(t, name="b'; --", params={"a": "1"}).save()


@HOSTILE
@given(name=lookup_names, value=lookup_values, model=st.sampled_from(["Run", "Artifact", "Transform"]))
def test_any_lookup_with_any_value_gives_a_count_or_a_clear_error(registry, some_runs, name, value, model):
    qs = getattr(ln, model)
    try:
        n = qs.filter(**{name: value}).count()
        n_excluded = qs.exclude(**{name: value}).count()
    except LaminIntegrationsError:
        event("rejected")
        return
    event("counted")
    assert 0 <= n <= qs.filter().count() and n + n_excluded <= qs.filter().count()


@HOSTILE
@given(value=json_scalars, op=st.sampled_from([None, *OPS]), path=st.lists(hostile_text, min_size=1, max_size=2))
def test_json_path_lookups_with_any_key_and_value(registry, some_runs, value, op, path):
    name = "__".join(["params", *path] + ([op] if op else []))
    try:
        assert ln.Run.filter(**{name: value}).count() in (0, 1, 2)
    except LaminIntegrationsError:
        pass


@HOSTILE
@given(value=st.one_of(hostile_text, st.integers(min_value=-(2**70), max_value=2**70)))
def test_get_and_search_with_any_value(registry, some_runs, value):
    for call in (lambda: ln.Run.get(value), lambda: ln.Run.search(value).count(), lambda: ln.Project.lookup().dict()):
        try:
            call()
        except LaminIntegrationsError:
            pass


@HOSTILE
@given(value=st.one_of(hostile_text, st.integers(min_value=-(2**70), max_value=2**70), st.floats(),
                       st.datetimes(timezones=st.just(dt.timezone(dt.timedelta(hours=14))))),
       field=st.sampled_from(["name", "description", "reference", "started_at", "params", "cli_args"]))
def test_saving_any_field_value_saves_it_or_writes_nothing(registry, some_runs, value, field):
    t = ln.Transform.get(key="t")
    before = counts(registry)
    try:
        run = ln.Run(t, **{field: value}).save()
    except LaminIntegrationsError:
        assert counts(registry) == before
        return
    assert getattr(ln.Run.get(run.id), field) is not None


# -- artifact keys and the storage root --------------------------------------------------------

key_texts = st.one_of(hostile_text, st.lists(st.sampled_from(["a", "..", ".", "", ".lamindb", "~", "C:", "b.txt", "\\", "s3:", "%2e%2e"]),
                                             min_size=1, max_size=4).map("/".join))


def files_outside(base: Path, storage: Path) -> set[str]:
    return {str(p) for p in base.rglob("*") if storage not in (p, *p.parents)}


@HOSTILE
@given(key=key_texts)
def test_any_key_is_stored_inside_the_storage_root_or_rejected(registry, tmp_path_factory, key):
    source = tmp_path_factory.mktemp("src") / "data.txt"
    source.write_text(f"content for {key!r}", encoding="utf-8", errors="surrogateescape")
    storage = Path(registry.storage_root)
    base = storage.parent
    outside = files_outside(base, storage)
    before = counts(registry)
    try:
        artifact = ln.Artifact(str(source), key=key).save()
    except InvalidKey:
        assert counts(registry) == before
        assert files_outside(base, storage) == outside
        return
    assert check_key(artifact.key) == key
    assert storage.resolve() in Path(artifact.path).resolve().parents
    assert files_outside(base, storage) == outside


@HOSTILE
@given(parts=st.lists(st.one_of(hostile_text.filter(lambda s: "\x00" not in s), st.sampled_from(["..", ".", "", "~", ".lamindb"])),
                      min_size=1, max_size=4))
def test_pipeline_keys_of_any_path_are_valid_keys_or_the_file_is_skipped(registry, tmp_path_factory, parts):
    """artifact_key() maps any path to a key; record_outputs() registers it or logs and skips it."""
    workdir = tmp_path_factory.mktemp("work")
    text = os.path.join(str(workdir), *parts)
    # `..` and absolute parts may lead anywhere; hashing the whole disk is not this test's point
    # (a folder holding the storage root has its own test below).
    assume(os.path.normpath(text).startswith(str(workdir) + os.sep))
    key = artifact_key(text, workdir)
    assert isinstance(key, str)
    run = ln.Run(ln.Transform(key="pipeline-keys").save()).save()
    try:
        os.makedirs(os.path.dirname(text), exist_ok=True)
        with open(text, "w") as f:
            f.write("x")
    except (OSError, UnicodeError, ValueError):
        pass  # not a path this file system can hold: record_outputs must skip it all the same
    before = counts(registry)["artifact"]
    saved = record_outputs(run, [text], workdir=workdir)
    assert len(saved) <= 1 and counts(registry)["artifact"] - before <= len(saved)  # same content and key: recreated
    for artifact in saved:
        check_key(artifact.key)


def test_a_key_cannot_be_moved_out_of_the_storage_root_after_saving(registry, tmp_path):
    """Regression (was a bug): assigning `artifact.key` (or `update(key=...)`) skipped the key checks, so an artifact
    registered in place got `key="../outside/secret.txt"` and its `path` pointed outside the storage root."""
    storage = Path(registry.storage_root)
    (storage / "data").mkdir(parents=True, exist_ok=True)
    (storage / "data" / "in.txt").write_text("in")
    artifact = ln.Artifact(str(storage / "data" / "in.txt")).save()
    assert artifact.key == "data/in.txt"
    for bad in ("../outside/secret.txt", "/etc/passwd", "a/../../b", "x\udcff"):
        artifact.key = bad
        with pytest.raises(InvalidKey):
            artifact.save()
        with pytest.raises(InvalidKey):
            ln.Artifact.filter(id=artifact.id).update(key=bad)
        artifact.key = "data/in.txt"
    assert ln.Artifact.get(artifact.id).key == "data/in.txt"
    assert ln.Artifact(str(storage / "data" / "in.txt")).save().id == artifact.id  # re-registering in place still works


def test_symlinks_in_a_saved_folder_never_point_out_of_storage(registry, tmp_path):
    """A folder copied into storage holds bytes, not links: nothing under the root leads outside it.

    Regression (was a bug): a link to a folder (or a link loop) was followed by the copy but not
    by the hash, so the stored folder held files the artifact's hash and n_files did not cover,
    and a loop was copied until the path grew too long.
    """
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    (folder / "link_to_file").symlink_to(outside / "secret.txt")
    (folder / "link_to_dir").symlink_to(outside)
    (folder / "loop").symlink_to(folder)
    artifact = ln.Artifact(str(folder), key="folder").save()
    storage = Path(registry.storage_root).resolve()
    stored = Path(artifact.path)
    files = sorted(p.relative_to(stored).as_posix() for p in stored.rglob("*"))
    assert files == ["a.txt", "link_to_file"] and artifact.n_files == 2
    for p in storage.rglob("*"):
        assert not p.is_symlink(), p
        assert storage in p.resolve().parents
    assert (stored / "link_to_file").read_text() == "secret"  # a linked file counts as its content


def test_a_folder_holding_the_storage_root_is_refused_not_copied_into_itself(registry, tmp_path):
    """Regression (was a bug): saving a folder that contains the storage root copied the growing copy into itself
    until the path was too long (shutil.Error), and the pipeline adapters raised instead of skipping it."""
    storage = Path(registry.storage_root)
    (storage.parent / "note.txt").write_text("n")
    before = counts(registry)
    with pytest.raises(ValidationError, match="contains the storage root"):
        ln.Artifact(str(storage.parent), key="everything").save()
    run = ln.Run(ln.Transform(key="t").save()).save()
    assert record_outputs(run, [str(storage.parent)], workdir=tmp_path) == []
    assert counts(registry)["artifact"] == before["artifact"]
    assert not list((storage / ".lamindb").glob("*")) if (storage / ".lamindb").exists() else True


def test_a_folder_with_a_dangling_link_is_saved_without_it(registry, tmp_path):
    """Regression (was a bug): a dangling symlink in a folder raised a raw FileNotFoundError from hashing."""
    folder = tmp_path / "folder"
    folder.mkdir()
    (folder / "a.txt").write_text("a")
    (folder / "gone").symlink_to(tmp_path / "missing")
    artifact = ln.Artifact(str(folder), key="folder").save()
    assert artifact.n_files == 1
    assert sorted(p.name for p in Path(artifact.path).iterdir()) == ["a.txt"]


def test_relative_links_in_a_folder_are_stored_as_hashed(registry, tmp_path, monkeypatch):
    """Regression (was a bug): copytree's dangling-link check resolves a relative link from the
    working folder, so `ok -> a.txt` was left out of the stored copy though the hash counted it."""
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.txt").write_text("a")
    (folder / "ok").symlink_to("a.txt")
    (folder / "sub" / "up").symlink_to("../a.txt")
    (folder / "gone").symlink_to("missing.txt")
    monkeypatch.chdir(tmp_path)  # not the folder: its links do not resolve from here
    artifact = ln.Artifact(str(folder), key="folder").save()
    stored = Path(artifact.path)
    assert sorted(p.relative_to(stored).as_posix() for p in stored.rglob("*") if p.is_file()) == ["a.txt", "ok", "sub/up"]
    assert artifact.n_files == 3 and (stored / "sub" / "up").read_text() == "a"


def test_a_file_named_in_bytes_that_are_not_utf8_is_saved_or_refused_clearly(registry, tmp_path):
    """Regression (was a bug): a file name that is not UTF-8 (os.fsdecode gives lone surrogates) crashed the stat
    cache and the database driver with UnicodeEncodeError instead of being stored or refused."""
    weird = tmp_path / os.fsdecode(b"sample-\xff.txt")
    weird.write_text("w")
    artifact = ln.Artifact(str(weird)).save()  # no key: copied by uid
    assert Path(artifact.path).read_text() == "w"
    with pytest.raises(InvalidKey, match="Unicode"):
        ln.Artifact(str(weird), key=weird.name)
    run = ln.Run(ln.Transform(key="t").save()).save()
    assert record_outputs(run, [str(weird)], workdir=tmp_path) == []  # logged and skipped, like a missing file


# -- command-line arguments are values, not SQL --------------------------------------------------

CLI_HOSTILE = ["x'; DROP TABLE run; --", "' OR '1'='1", "%", "_", "a%_b", '"', "\\", ";", "é" * 200, "x" * 20_000]


@pytest.fixture
def cli_registry(registry):
    t = ln.Transform(key="wf/Snakefile", kind="pipeline").save()
    top = ln.Run(t, name="top", reference="abc", reference_type="snakemake_id").save()
    return top


def invoke(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=True)


@pytest.mark.parametrize("value", CLI_HOSTILE)
def test_cli_arguments_are_bound_parameters(registry, cli_registry, value):
    before = counts(registry)
    for option in ("--transform", "--status", "--reference-type"):
        result = invoke("runs", option, value, "--json")
        assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
        if result.exit_code == 0:
            assert json.loads(result.output) == []  # matched nothing: % and _ are not wildcards
        else:
            assert "Error:" in result.output and "Traceback" not in result.output
    for command in (["show", value], ["lineage", value], ["report", value, "-o", os.devnull],
                    ["export", value, "--format", "openlineage", "-o", os.devnull]):
        result = invoke(*command)
        assert result.exit_code == 1 and isinstance(result.exception, SystemExit), (command, result.output)
        assert "Error:" in result.output
    assert counts(registry) == before
    with registry.read() as conn:
        assert sa.inspect(conn).has_table("run")


@pytest.mark.parametrize("value", ["%", "_", "top%", "t_p", "a%_b"])
def test_cli_uid_prefixes_with_like_wildcards_match_literally(registry, cli_registry, value):
    result = invoke("show", value)
    assert result.exit_code == 1 and "no record" in result.output


def test_nextflow_ingest_stores_hostile_cli_values_verbatim(registry, tmp_path):
    trace = tmp_path / "execution_trace.txt"
    trace.write_text("task_id\thash\tname\tstatus\n1\tab/123456\tA (1)\tCOMPLETED\n")
    name = "x'; DROP TABLE run; -- %_"
    result = invoke("nextflow", "ingest", str(trace), "--run-name", name, "--pipeline", "p'; --", "--revision", "%",
                    "--session-id", "_", "--no-discover", "--no-files", "--json")
    assert result.exit_code == 0, result.output
    run = ln.Run.get(json.loads(result.output)["uid"])
    assert run.name == name and run.reference == name and run.transform.key == "p'; --" and run.transform.version == "%"
    for bad in ("a\x00b", "\udcff"):
        before = counts(registry)
        result = invoke("nextflow", "ingest", str(trace), "--run-name", bad, "--no-discover", "--no-files")
        assert result.exit_code == 1 and "Error:" in result.output and isinstance(result.exception, SystemExit)
        assert counts(registry) == before
    long = "x" * 200  # the name is cut to the field's length, the reference keeps it whole
    result = invoke("nextflow", "ingest", str(trace), "--run-name", long, "--no-discover", "--no-files", "--json")
    assert result.exit_code == 0, result.output
    assert ln.Run.get(json.loads(result.output)["uid"]).reference == long


def test_keys_and_names_from_the_command_line_cannot_be_a_path_out_of_storage(registry, tmp_path):
    """`--pipeline ../../x` is a transform key (a name), never a location: nothing is written outside storage."""
    trace = tmp_path / "t" / "execution_trace.txt"
    trace.parent.mkdir()
    trace.write_text("task_id\thash\tname\tstatus\n1\tab/123456\tA (1)\tCOMPLETED\n")
    before = sorted(str(p) for p in tmp_path.rglob("*"))
    result = invoke("nextflow", "ingest", str(trace), "--run-name", "../../../etc/x", "--pipeline", "../../../etc/passwd",
                    "--no-discover", "--no-files")
    assert result.exit_code == 0, result.output
    storage = Path(registry.storage_root)
    assert [p for p in sorted(str(p) for p in tmp_path.rglob("*")) if p not in before and not p.startswith(str(storage))] == []




def test_nul_and_surrogates_in_queries_are_validation_errors(registry):
    """Regression (were bugs): a lone surrogate (`os.fsdecode` of a non-UTF-8 name) in a value, JSON key or search
    string, and an integer outside 64 bits, raised UnicodeEncodeError / OverflowError / a raw DataError from the
    driver instead of a ValidationError; a timestamp that leaves the datetime range in UTC raised OverflowError."""
    t = ln.Transform(key="t").save()
    for call in (lambda: ln.Run.filter(name="a\udcff").count(), lambda: ln.Run.filter(params__a="\udcff").count(),
                 lambda: ln.Run.filter(**{"params__\udcff": 1}).count(), lambda: ln.Run.search("\udcff").count(),
                 lambda: ln.Run.get("\udcff"), lambda: ln.Run(t, name="\udcff").save(),
                 lambda: ln.Run(t, params={"a": "\udcff"}).save(), lambda: ln.Run(t, params={"\udcff": 1}).save(),
                 lambda: ln.Run.filter(id=2**63).count(), lambda: ln.Run.filter(id__in=[1, -(2**63) - 1]).count(),
                 lambda: ln.Run.get(2**70), lambda: ln.Run.filter(params__a=2**64).count(),
                 lambda: ln.Run.filter(started_at__gt="0001-01-01T00:00:00+14:00").count(),
                 lambda: ln.Run(t, started_at=dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=1)))).save()):
        with pytest.raises(ValidationError):
            call()
    assert ln.Run.filter().count() == 0
    assert ln.Run.filter(id=2**63 - 1).count() == 0 and ln.Run.filter(params__a=-(2**63)).count() == 0
