"""The query API of the seeds: lookups, Q objects, query sets, get, errors, injection safety.

Every test runs on SQLite and on PostgreSQL (the `registry` fixture).
"""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
import sqlalchemy as sa

import lamin_integrations as ln
from lamin_integrations.errors import (
    FieldError,
    MultipleResultsFound,
    ObjectDoesNotExist,
    ValidationError,
)


@pytest.fixture
def lineage(registry):
    """Two pipelines, a chain of three runs, artifacts linked as outputs and inputs."""
    wf = ln.Transform(key="wf/Snakefile", kind="pipeline", version="1").save()
    step = ln.Transform(key="wf/Snakefile:align", kind="step").save()
    other = ln.Transform(key="other.py", kind="script").save()
    top = ln.Run(wf, name="top", params={"learning_rate": 0.01, "pre": {"norm": "cool"}, "tag": "x"}, status="started").save()
    child = ln.Run(step, name="align[A]", initiated_by_run=top, params={"learning_rate": 0.5, "tag": 7}).save()
    grandchild = ln.Run(step, name="align[B]", initiated_by_run=child, params={"learning_rate": "fast"}).save()
    lone = ln.Run(other, name="lone", status="completed").save()
    a = ln.Artifact(key="a.txt", run=child).save()
    b = ln.Artifact(key="b.csv", run=grandchild).save()
    grandchild.input_artifacts.add(a)
    return {"wf": wf, "step": step, "other": other, "top": top, "child": child, "grandchild": grandchild, "lone": lone, "a": a, "b": b}


def names(qs) -> set[str]:
    return {r.name for r in qs}


def test_exact_in_and_text_lookups(lineage):
    assert names(ln.Run.filter(name="top")) == {"top"}
    assert names(ln.Run.filter(name__in=["top", "lone", "nope"])) == {"top", "lone"}
    assert names(ln.Run.filter(name__startswith="align")) == {"align[A]", "align[B]"}
    assert names(ln.Run.filter(name__endswith="[B]")) == {"align[B]"}
    assert names(ln.Run.filter(name__contains="ALIGN")) == set(), "contains is case-sensitive"
    assert names(ln.Run.filter(name__icontains="ALIGN")) == {"align[A]", "align[B]"}
    assert names(ln.Run.filter(name__iexact="TOP")) == {"top"}


def test_comparisons_on_ints_and_datetimes(lineage):
    ids = sorted(r.id for r in ln.Run.filter())
    assert [r.id for r in ln.Run.filter(id__gt=ids[1]).order_by("id")] == ids[2:]
    assert ln.Run.filter(id__lte=ids[1]).count() == 2
    cutoff = lineage["child"].started_at
    assert ln.Run.filter(started_at__gte=cutoff).count() == 3
    assert ln.Run.filter(started_at__lt=cutoff).count() == 1
    assert ln.Run.filter(started_at__gt=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)).count() == 4
    assert ln.Run.filter(started_at__gt=cutoff.isoformat()).count() == 2


def test_isnull_on_columns_and_relations(lineage):
    assert names(ln.Run.filter(initiated_by_run__isnull=True)) == {"top", "lone"}
    assert names(ln.Run.filter(initiated_by_run__isnull=False)) == {"align[A]", "align[B]"}
    assert names(ln.Run.filter(description__isnull=False)) == set()
    assert names(ln.Run.filter(input_artifacts__isnull=False)) == {"align[B]"}
    assert names(ln.Run.filter(initiated_runs__isnull=True)) == {"align[B]", "lone"}


def test_related_paths_and_records_as_values(lineage):
    L = lineage
    assert names(ln.Run.filter(transform__key="wf/Snakefile:align")) == {"align[A]", "align[B]"}
    assert names(ln.Run.filter(transform=L["step"])) == {"align[A]", "align[B]"}
    assert names(ln.Run.filter(transform__in=[L["wf"], L["other"]])) == {"top", "lone"}
    assert names(ln.Run.filter(initiated_by_run__uid=L["top"].uid)) == {"align[A]"}
    assert names(ln.Run.filter(initiated_by_run__initiated_by_run=L["top"])) == {"align[B]"}
    assert {a.key for a in ln.Artifact.filter(run__transform__key="wf/Snakefile:align")} == {"a.txt", "b.csv"}
    assert {a.key for a in ln.Artifact.filter(transform=L["step"])} == {"a.txt", "b.csv"}
    assert {a.key for a in ln.Artifact.filter(input_of_runs=L["grandchild"])} == {"a.txt"}
    assert names(ln.Run.filter(input_artifacts__key="a.txt")) == {"align[B]"}
    assert names(ln.Run.filter(output_artifacts__key__endswith=".csv")) == {"align[B]"}
    assert names(ln.Run.filter(created_by__handle=L["top"].created_by.handle)) == names(ln.Run.filter())


def test_json_paths_with_mixed_types(lineage):
    assert names(ln.Run.filter(params__learning_rate__gt=0.001)) == {"top", "align[A]"}
    assert names(ln.Run.filter(params__learning_rate__gt=0.1)) == {"align[A]"}
    assert names(ln.Run.filter(params__learning_rate="fast")) == {"align[B]"}
    assert names(ln.Run.filter(params__pre__norm="cool")) == {"top"}
    assert names(ln.Run.filter(params__tag=7)) == {"align[A]"}
    assert names(ln.Run.filter(params__tag="x")) == {"top"}
    assert names(ln.Run.filter(params__tag__isnull=True)) == {"align[B]", "lone"}
    assert names(ln.Run.filter(params__learning_rate__in=[0.01, "fast"])) == {"top", "align[B]"}


def test_order_by_a_value_inside_params(lineage):
    ln.Run(lineage["other"], name="r9", params={"rank": 9}).save()
    ln.Run(lineage["other"], name="r10", params={"rank": 10}).save()
    ln.Run(lineage["other"], name="r2", params={"rank": 2}).save()
    ranked = ln.Run.filter(params__rank__isnull=False)
    assert [r.name for r in ranked.order_by("params__rank")] == ["r2", "r9", "r10"]  # by value, not as text
    assert [r.name for r in ranked.order_by("-params__rank")] == ["r10", "r9", "r2"]
    assert ln.Run.filter(params__learning_rate__gt=0).order_by("-params__learning_rate").first().name == "align[A]"


def test_json_key_presence_as_in_django(lineage):
    ln.Run(lineage["other"], name="nulled", params={"tag": None}).save()
    # a key is there whatever its value, JSON null included; it was read as params["has_key"] == "tag"
    assert names(ln.Run.filter(params__has_key="tag")) == {"top", "align[A]", "nulled"}
    assert names(ln.Run.filter(params__pre__has_key="norm")) == {"top"}
    assert names(ln.Run.filter(params__has_keys=["tag", "pre"])) == {"top"}
    assert names(ln.Run.filter(params__has_any_keys=["pre", "learning_rate"])) == {"top", "align[A]", "align[B]"}
    assert names(ln.Run.exclude(params__has_key="learning_rate")) == {"lone", "nulled"}
    with pytest.raises(ValidationError, match="a list of keys"):
        ln.Run.filter(params__has_keys="tag").count()


def test_q_objects_and_status(lineage):
    Q = ln.Q
    assert names(ln.Run.filter(Q(name="top") | Q(name="lone"))) == {"top", "lone"}
    assert names(ln.Run.filter(~Q(name__startswith="align"))) == {"top", "lone"}
    assert names(ln.Run.filter(Q(name__startswith="align") & ~Q(name__endswith="[A]"))) == {"align[B]"}
    assert names(ln.Run.filter(status="completed")) == {"lone"}
    assert names(ln.Run.filter(status__in=["started", "completed"])) == {"top", "lone"}
    assert names(ln.Run.filter(status="scheduled")) == {"align[A]", "align[B]"}
    r = lineage["child"]
    assert r.status == "scheduled"
    r.status = "errored"
    r.save()
    assert ln.Run.get(r.uid).status == "errored" and ln.Run.get(r.uid).finished_at is not None


def test_query_sets_chain(lineage):
    qs = ln.Run.filter(name__startswith="align")
    assert qs.exclude(name="align[A]").one().name == "align[B]"
    assert [r.name for r in ln.Run.filter().order_by("-name")] == ["top", "lone", "align[B]", "align[A]"]
    assert ln.Run.filter().order_by("name").first().name == "align[A]"
    assert ln.Run.filter().order_by("name").last().name == "top"
    assert qs.count() == 2 and len(qs) == 2 and bool(qs)
    assert not ln.Run.filter(name="nope").exists()
    assert ln.Run.filter(name="nope").one_or_none() is None
    assert sorted(qs.to_list("name")) == ["align[A]", "align[B]"]
    assert ln.Run.filter().order_by("name").to_list("status") == ["scheduled", "scheduled", "completed", "started"]
    assert [r.name for r in ln.Run.filter().order_by("name")[1:3]] == ["align[B]", "lone"]
    with pytest.raises(MultipleResultsFound):
        qs.one()
    with pytest.raises(ObjectDoesNotExist):
        ln.Run.filter(name="nope").one()


def test_to_dataframe_include_and_limit(lineage):
    df = ln.Run.filter().to_dataframe(include=["created_by__handle", "transform__key", "input_artifacts__key"])
    assert isinstance(df, pd.DataFrame) and len(df) == 4
    assert {"uid", "status", "name", "transform_id"} <= set(df.columns)
    row = df[df["name"] == "align[B]"].iloc[0]
    assert row["transform__key"] == "wf/Snakefile:align"
    assert row["input_artifacts__key"] == ["a.txt"], "to-many includes are lists"
    assert df[df["name"] == "top"].iloc[0]["input_artifacts__key"] == []
    assert len(ln.Run.to_dataframe(limit=2)) == 2
    assert ln.Run.to_dataframe().index.name == "id"


def test_soft_delete_and_restore(lineage):
    lone = lineage["lone"]
    lone.delete()
    assert ln.Run.filter(name="lone").count() == 0
    assert ln.Run.filter(branch_id=-1).one().uid == lone.uid
    assert ln.Run.get(lone.uid).branch_id == -1, "lookups by uid see the trash"
    lone.restore()
    assert ln.Run.filter(name="lone").count() == 1
    lone.delete(permanent=True)
    assert ln.Run.filter(uid=lone.uid).count() == 0
    assert ln.Run.filter(name__startswith="align").delete() == 2
    assert ln.Run.filter().count() == 1


def test_get_by_id_uid_prefix_and_lookups(lineage):
    top = lineage["top"]
    assert ln.Run.get(top.id) == top
    assert ln.Run.get(top.uid) == top
    assert ln.Run.get(top.uid[:8]) == top
    assert ln.Run.get(name="top") == top
    with pytest.raises(ObjectDoesNotExist, match="name='nope'"):
        ln.Run.get(name="nope")
    with pytest.raises(MultipleResultsFound, match="more than one Run"):
        ln.Run.get(name__startswith="align")
    with pytest.raises(ObjectDoesNotExist, match="zzzzzzzz"):
        ln.Run.get("zzzzzzzz")
    # Django's per-model exceptions, as lamindb users catch them
    with pytest.raises(ln.Run.DoesNotExist):
        ln.Run.get(name="nope")
    with pytest.raises(ln.Run.MultipleObjectsReturned):
        ln.Run.filter(name__startswith="align").one()
    with pytest.raises(ObjectDoesNotExist) as caught:
        ln.Transform.get(key="nope")
    assert not isinstance(caught.value, ln.Run.DoesNotExist)


def test_values_list_and_values(lineage):
    top, child = lineage["top"], lineage["child"]
    runs = ln.Run.filter(name__in=["top", "align[A]"]).order_by("id")
    assert runs.values_list("id", flat=True) == [top.id, child.id]
    assert runs.values_list("name", "status", "transform") == [("top", "started", lineage["wf"].id),
                                                              ("align[A]", "scheduled", lineage["step"].id)]
    assert runs.values("name", "initiated_by_run")[1] == {"name": "align[A]", "initiated_by_run": top.id}
    assert names(ln.Run.filter(id__in=ln.Run.filter(transform=lineage["step"]).values_list("id", flat=True))) == {"align[A]", "align[B]"}
    with pytest.raises(ValidationError, match="exactly one field"):
        runs.values_list("id", "name", flat=True)
    with pytest.raises(FieldError, match="no field 'nope'"):
        runs.values_list("nope")


def test_unknown_fields_list_the_valid_ones(lineage):
    with pytest.raises(FieldError, match="Valid fields:.*started_at"):
        ln.Run.filter(startedat="x")
    with pytest.raises(FieldError, match="Valid fields"):
        ln.Run.filter(transform__nonexistent="x")
    with pytest.raises(FieldError, match="Valid fields"):
        ln.Run.filter().order_by("-bogus")
    with pytest.raises(FieldError, match="Valid fields"):
        ln.Run.to_dataframe(include="created_by__bogus")
    with pytest.raises(FieldError):
        ln.Run.filter(name__bogusop="x")


def test_wrong_value_types_fail_before_sql(lineage, registry):
    statements = []

    def record(conn, cursor, statement, *args):
        statements.append(statement)

    sa.event.listen(registry.engine, "before_cursor_execute", record)
    try:
        for kwargs in ({"id": "abc"}, {"started_at__gt": 5}, {"status": "nonsense"}, {"name__in": "top"},
                       {"initiated_by_run": "x"}, {"transform": lineage["a"]}, {"name__isnull": "yes"},
                       {"params__lr__gt": [1]}, {"name": "a\x00b"}):
            with pytest.raises(ValidationError):
                ln.Run.filter(**kwargs).count()
    finally:
        sa.event.remove(registry.engine, "before_cursor_execute", record)
    assert statements == []


@pytest.mark.parametrize("hostile", ["x'); DROP TABLE run; --", "100%", "a_b", "quote\"s", "'", ";", "é" * 3000])
def test_values_are_bound_parameters(registry, hostile):
    ln.Project(name="100% done").save()
    ln.Project(name="a-b").save()
    p = ln.Project(name=hostile[:150]).save()
    assert ln.Project.get(name=hostile[:150]) == p
    assert ln.Project.filter(name__contains="%").count() == (2 if "%" in hostile else 1)
    assert ln.Project.filter(name__contains="_").count() == (1 if "_" in hostile else 0)
    assert ln.Run.filter(name=hostile).count() == 0  # the run table still exists
    assert ln.Project.search(hostile[:150]).first() == p


def test_search_ranks_exact_first_and_lookup(registry):
    for name in ["label 2b", "Label2", "my Label2 extra", "other"]:
        ln.Project(name=name).save()
    results = [p.name for p in ln.Project.search("label2")]
    assert results == ["Label2", "my Label2 extra"], "exact match first, then contains; no non-matches"
    lookup = ln.Project.lookup()
    assert lookup.label2.name == "Label2"
    assert lookup.dict()["other"].name == "other"
    assert ln.Project.lookup(return_field="uid").other == ln.Project.get(name="other").uid


def test_transform_get_or_create_and_versions(registry):
    t1 = ln.Transform(key="k", version="1", kind="pipeline").save()
    again = ln.Transform(key="k", version="1", kind="pipeline").save()
    assert again.id == t1.id and ln.Transform.filter(key="k").count() == 1
    t2 = ln.Transform(key="k", version="2").save()
    t1.refresh_from_db()
    assert t2.uid[:12] == t1.uid[:12] and t1.uid.endswith("0000") and t2.uid.endswith("0001")
    assert t2.is_latest and not t1.is_latest
    assert ln.Transform.get(key="k") == t2
    assert [t.version for t in t2.versions] == ["2", "1"]
    old = ln.Transform(name="Cell Ranger", version="7.2.0", type="pipeline").save()
    assert ln.Transform.filter(name="Cell Ranger", version="7.2.0").one() == old
    assert old.key == "Cell Ranger" and old.kind == "pipeline"


def test_root_run_and_descendants(lineage):
    L = lineage
    assert L["grandchild"].root_run == L["top"] and L["top"].root_run == L["top"]
    assert set(L["top"].descendants) == {L["child"], L["grandchild"]}
    assert set(L["child"].descendants) == {L["grandchild"]}
    assert set(ln.Run.filter(root_run=L["top"])) == {L["top"], L["child"], L["grandchild"]}


def test_features(lineage):
    run = lineage["top"]
    ln.Feature(name="experiment", dtype="str").save()
    ln.Feature(name="temperature", dtype=float).save()
    run.features.set_values({"experiment": "My experiment 1", "temperature": 21.5})
    lineage["child"].features.add_values({"experiment": "My experiment 2"})
    assert run.features.get_values() == {"experiment": "My experiment 1", "temperature": 21.5}
    assert ln.Run.filter(experiment="My experiment 1").one() == run
    assert ln.Run.filter(temperature__gt=20).one() == run
    assert ln.Run.filter(experiment__startswith="My").count() == 2
    with pytest.raises(ValidationError, match="unknown feature"):
        run.features.set_values({"nope": 1})
    with pytest.raises(ValidationError, match="temperature"):
        run.features.add_values({"temperature": "warm"})
    with pytest.raises(ValidationError, match="dtype"):
        ln.Feature(name="temperature", dtype="str").save()
    df = ln.Run.filter(name="top").to_dataframe(features=True)
    assert df.iloc[0]["experiment"] == "My experiment 1"


def test_feature_predicates_as_in_lamindb(lineage):
    top, child, grandchild = lineage["top"], lineage["child"], lineage["grandchild"]
    temperature = ln.Feature(name="temperature", dtype=float).save()
    for run, value in ((top, 18.0), (child, 22.5), (grandchild, 30.0)):
        run.features.add_values({"temperature": value})
    assert names(ln.Run.filter(temperature > 21)) == {"align[A]", "align[B]"}
    assert names(ln.Run.filter(temperature <= 22.5, temperature >= 22.5)) == {"align[A]"}
    assert names(ln.Run.filter(temperature == 18.0)) == {"top"}
    assert names(ln.Run.filter((temperature < 20) | (temperature > 25))) == {"top", "align[B]"}
    assert names(ln.Run.filter(temperature.is_null())) == {"lone"}
    assert names(ln.Run.filter(temperature != None)) == {"top", "align[A]", "align[B]"}  # noqa: E711
    assert names(ln.Run.filter(temperature__isnull=True)) == {"lone"}
    with pytest.raises(TypeError, match="pass it to .filter"):
        bool(temperature > 21)
    # compared with records, a feature is still a record
    assert temperature == ln.Feature.get(name="temperature") and {temperature: 1}[temperature] == 1
    assert temperature != ln.Feature(name="pressure", dtype=float).save()
    # dtypes as Python types and registries, as lamindb takes them
    assert ln.Feature(name="tags", dtype=list[str]).save().dtype == "list[str]"
    label = ln.Feature(name="label", dtype=ln.Record).save()
    assert label.dtype == "cat[Record]"
    child.features.add_values({"label": ln.Record(name="E1").save(), "tags": ["a", "b"]})
    assert child.features.get_values()["label"] == "E1"
    assert names(ln.Run.filter(label="E1")) == {"align[A]"}


def test_track_annotates_the_run_with_features(registry, tmp_path):
    ln.Feature(name="experiment", dtype=str).save()
    (tmp_path / "analysis.py").write_text("print('analysis')\n")
    with pytest.raises(ValidationError, match="unknown feature"):
        ln.track(path=str(tmp_path / "analysis.py"), features={"nope": 1})
    assert ln.Run.filter().count() == 0  # checked before any run starts
    run = ln.track(path=str(tmp_path / "analysis.py"), features={"experiment": "E9"})
    try:
        assert run.features.get_values() == {"experiment": "E9"}
        assert ln.Run.filter(experiment="E9").one() == run
    finally:
        ln.finish()


def test_many_to_many_manager(lineage):
    run, a, b = lineage["top"], lineage["a"], lineage["b"]
    run.input_artifacts.add(a, b)
    run.input_artifacts.add(a)  # idempotent
    assert set(run.input_artifacts) == {a, b}
    run.input_artifacts.remove(b)
    assert list(run.input_artifacts) == [a]
    run.input_artifacts.set([b])
    assert list(run.input_artifacts) == [b]
    run.input_artifacts.clear()
    assert run.input_artifacts.count() == 0
    p = ln.Project(name="proj").save()
    p.runs.add(run)
    assert list(run.projects) == [p]


def test_bulk_update_and_delete_honour_slices(lineage):
    qs = ln.Run.filter().order_by("id")
    assert qs[:1].update(description="first") == 1
    assert ln.Run.filter(description="first").one() == lineage["top"]
    assert qs[1:3].delete() == 2
    assert ln.Run.filter().count() == 2


def test_reparenting_moves_the_subtree_and_refuses_cycles(lineage):
    L = lineage
    other_top = ln.Run(L["other"], name="other-top").save()
    child = L["child"]
    child.initiated_by_run = other_top
    child.save()
    assert ln.Run.get(L["grandchild"].uid).root_run == other_top, "descendants follow their parent"
    assert set(ln.Run.filter(root_run=other_top)) == {other_top, child, L["grandchild"]}
    with pytest.raises(ValidationError, match="cannot be initiated"):
        other_top.initiated_by_run = L["grandchild"]
        other_top.save()
    assert ln.Run.get(other_top.uid).initiated_by_run is None


def test_in_place_changes_to_loaded_json_are_saved(lineage):
    run = ln.Run.get(lineage["top"].uid)
    run.params["learning_rate"] = 0.2
    run.params["pre"]["norm"] = "warm"
    run.save()
    again = ln.Run.get(run.uid)
    assert again.params["learning_rate"] == 0.2 and again.params["pre"]["norm"] == "warm"
    untouched = ln.Run.get(lineage["child"].uid)
    untouched.name = "renamed"
    untouched.save()
    assert ln.Run.get(untouched.uid).params == {"learning_rate": 0.5, "tag": 7}, "unread JSON is left alone"


def test_a_query_set_as_a_relation_value(lineage):
    steps = ln.Transform.filter(kind="step")
    assert names(ln.Run.filter(transform__in=steps)) == {"align[A]", "align[B]"}
    assert {a.key for a in ln.Artifact.filter(run__in=ln.Run.filter(name="align[B]"))} == {"b.csv"}
    assert names(ln.Run.filter(input_artifacts__in=ln.Artifact.filter(key="a.txt"))) == {"align[B]"}
    with pytest.raises(ValidationError, match="expects Transform records"):
        ln.Run.filter(transform__in=ln.Project.filter()).count()


def test_labels_annotate_runs_and_artifacts(lineage):
    top, a = lineage["top"], lineage["a"]
    # lamindb's ULabel (older tutorials) and Record (its successor) both annotate runs and artifacts
    experiment = ln.ULabel(name="experiment_1").save()
    assert len(experiment.uid) == 8
    a.ulabels.add(experiment)
    top.ulabels.add(experiment)
    assert list(a.ulabels) == [experiment] and list(experiment.artifacts) == [a] and list(experiment.runs) == [top]
    assert ln.Artifact.filter(ulabels__name="experiment_1").one() == a
    assert names(ln.Run.filter(ulabels=experiment)) == {"top"}
    sample = ln.Record(name="sample_1").save()
    lineage["child"].records.add(sample)
    a.records.add(sample)
    assert names(ln.Run.filter(records__name="sample_1")) == {"align[A]"} and list(sample.artifacts) == [a]
    assert ln.Artifact.filter(records=sample, ulabels=experiment).one() == a
    df = ln.Artifact.filter(key="a.txt").to_dataframe(include="ulabels__name")
    assert list(df["ulabels__name"].iloc[0]) == ["experiment_1"]
    labels = ln.ULabel.from_values(["experiment_1", "experiment_2"])
    assert labels[0] == experiment and labels[1].id is None
    assert list(ln.ULabel.from_values(["experiment_1", "experiment_2"], create=False)) == [experiment]  # lamindb's default
    assert len(ln.ULabel.from_values(["experiment_3"], create=True).save()) == 1
    with pytest.raises(ValidationError, match="needs a name"):
        ln.ULabel()
    experiment.delete(permanent=True)
    assert a.ulabels.count() == 0 and ln.Artifact.filter(ulabels__name="experiment_1").count() == 0


def test_features_annotate_artifacts_too(lineage, tmp_path):
    a, b = lineage["a"], lineage["b"]
    temperature = ln.Feature(name="temperature", dtype=float).save()
    ln.Feature(name="scientist", dtype=str).save()
    a.features.set_values({"temperature": 37.5, "scientist": ["Ada", "Bo"]})
    b.features.add_values({"temperature": 20.0})
    assert a.features.get_values() == {"scientist": ["Ada", "Bo"], "temperature": 37.5}
    assert ln.Artifact.filter(temperature__gt=30).one() == a and ln.Artifact.filter(temperature < 30).one() == b
    assert ln.Artifact.filter(scientist="Bo").one() == a
    df = ln.Artifact.filter(key__in=["a.txt", "b.csv"]).order_by("id").to_dataframe(features=["temperature"])
    assert list(df["temperature"]) == [37.5, 20.0]
    lineage["top"].features.add_values({"temperature": 37.5})  # the same value, shared: each registry has its own links
    assert ln.Artifact.filter(temperature=37.5).one() == a and ln.Run.filter(temperature=37.5).one() == lineage["top"]
    a.features.remove_values("scientist")
    assert a.features.get_values() == {"temperature": 37.5}
    # as lamindb's Artifact(..., features={...}): checked before anything is saved, linked when saved
    (tmp_path / "c.txt").write_text("c")
    with pytest.raises(ValidationError, match="temperature"):
        ln.Artifact(str(tmp_path / "c.txt"), key="c.txt", features={"temperature": "warm"}).save()
    assert ln.Artifact.filter(key="c.txt").count() == 0
    c = ln.Artifact(str(tmp_path / "c.txt"), key="c.txt", features={"temperature": 4.5}).save()
    assert c.features["temperature"] == 4.5 and temperature in [temperature]
    c.ulabels.add(ln.ULabel(name="benchmark").save())
    text = c.describe(return_str=True)
    assert "temperature: 4.5" in text and "ulabels: benchmark" in text


def test_date_parts_of_timestamps_as_in_django(lineage):
    top, lone = lineage["top"], lineage["lone"]
    ln.Run.filter(id=top.id).update(started_at=dt.datetime(2024, 3, 4, 23, 30, tzinfo=dt.UTC))
    ln.Run.filter(id=lone.id).update(started_at=dt.datetime(2025, 1, 2, 0, 15, tzinfo=dt.timezone(dt.timedelta(hours=2))))
    assert names(ln.Run.filter(started_at__date=dt.date(2024, 3, 4))) == {"top"}
    assert names(ln.Run.filter(started_at__date="2025-01-01")) == {"lone"}  # 00:15 at +02:00 is the day before in UTC
    assert names(ln.Run.filter(started_at__year=2024)) == {"top"}
    assert names(ln.Run.filter(started_at__year__lt=2025, started_at__month=3, started_at__hour=23)) == {"top"}
    assert names(ln.Run.filter(started_at__year__in=[2024, 2025])) == {"top", "lone"}
    with pytest.raises(ValidationError, match="whole number"):
        ln.Run.filter(started_at__year="2024").count()
    with pytest.raises(ValidationError, match="a date such as"):
        ln.Run.filter(started_at__date="March").count()
