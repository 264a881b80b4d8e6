"""lamindb's collections (`ln.Collection`) and the Run attributes of the seed that point at them.

A collection is artifacts saved together under a key: made by the current run, read by
later runs as one input, versioned by key, and the same collection when the same artifacts
are saved again (recreated, as artifacts are). Real registries on both databases.
"""

from __future__ import annotations

import pandas as pd
import pytest
import sqlalchemy as sa

import lamin_integrations as ln
from lamin_integrations.errors import FieldError, ValidationError


def frames(*columns: dict) -> list:
    return [ln.Artifact.from_dataframe(pd.DataFrame(c), key=f"part{i}.parquet").save() for i, c in enumerate(columns)]


def table_counts(registry) -> dict[str, int]:
    with registry.read() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar()
                for t in ("collection", "collection_artifact", "run_input_collection", "run_recreated_collection")}


def test_a_collection_is_made_by_the_run_and_read_by_the_next_one_as_one_input(registry):
    ln.track(transform=ln.Transform(key="make_parts.py", kind="script").save())
    maker = ln.context.run
    second, first = frames({"a": [3], "b": [4]}, {"a": [1, 2]})  # saved in this order
    collection = ln.Collection([first, second], key="training-set", description="two shards").save()
    ln.finish()

    ln.track(transform=ln.Transform(key="train.py", kind="script").save())
    reader = ln.context.run
    found = ln.Collection.get(key="training-set")
    assert [a.key for a in found.ordered_artifacts] == ["part1.parquet", "part0.parquet"]  # the order given
    outer = found.load()
    assert list(outer["a"]) == [1, 2, 3] and list(outer.columns) == ["a", "b"]
    assert list(found.load(join="inner", is_run_input=False).columns) == ["a"]
    paths = found.cache()
    assert [p.suffix for p in paths] == [".parquet", ".parquet"] and all(p.exists() for p in paths)
    ln.finish()

    assert collection.run == maker and found.run_id == maker.id
    assert maker.output_collections.to_list() == [found]
    assert reader.input_collections.to_list() == [found] and found.input_of_runs.to_list() == [reader]
    assert maker.input_collections.count() == 0
    assert first.collections.to_list() == [found]
    assert reader.input_artifacts.count() == 0  # the collection is the input, as in lamindb
    text = reader.describe(return_str=True)
    assert "input collection: training-set" in text
    assert "part0.parquet" in found.describe(return_str=True)


def test_a_collection_saved_again_under_its_key_is_a_new_version(registry):
    a, b, c = frames({"x": [1]}, {"x": [2]}, {"x": [3]})
    v1 = ln.Collection([a, b], key="shards").save()
    v2 = ln.Collection([a, b, c], key="shards").save()
    assert v2.uid[:16] == v1.uid[:16] and v2.uid != v1.uid
    assert v2.is_latest and not ln.Collection.get(uid=v1.uid).is_latest
    v3 = v2.append(frames({"x": [4]})[0]).save()
    assert [x.uid for x in v3.versions] == [v3.uid, v2.uid, v1.uid]
    assert not v2.is_latest  # in memory too, as after Artifact(revises=...)
    assert len(v3.load()) == 4
    other = ln.Collection([c], key="other").save()
    assert other.uid[:16] != v1.uid[:16] and other.data_artifact == c
    assert ln.Collection.filter(key="shards", is_latest=True).one() == v3


def test_the_same_artifacts_saved_again_by_another_run_are_recreated_not_duplicated(registry):
    a, b = frames({"x": [1]}, {"x": [2]})
    ln.track(transform=ln.Transform(key="first.py", kind="script").save())
    original = ln.Collection([a, b], key="pair").save()
    ln.finish()
    ln.track(transform=ln.Transform(key="second.py", kind="script").save())
    again = ln.Collection([b, a], key="pair").save()  # the same set, given in another order
    rerun = ln.context.run
    again.load()  # a run does not read what it recreated as an input
    ln.finish()
    assert again.id == original.id and ln.Collection.filter().count() == 1
    assert rerun.recreated_collections.to_list() == [original]
    assert rerun.output_collections.count() == 0 and rerun.input_collections.count() == 0


@pytest.mark.parametrize("make, error", [
    (lambda saved, unsaved: ln.Collection([], key="k"), "needs artifacts"),
    (lambda saved, unsaved: ln.Collection(None), "needs artifacts"),
    (lambda saved, unsaved: ln.Collection([saved, unsaved], key="k"), "save"),
    (lambda saved, unsaved: ln.Collection(["data.csv"], key="k"), "takes saved Artifacts"),
    (lambda saved, unsaved: ln.Collection([saved, saved], key="k"), "same artifact twice"),
    (lambda saved, unsaved: ln.Collection([saved], key="k", revises=saved), "revises expects a saved Collection"),
    (lambda saved, unsaved: ln.Collection([saved], key="k", meta=saved), "unexpected arguments meta"),
])
def test_a_collection_of_what_cannot_be_collected_is_refused_and_nothing_is_written(registry, tmp_path, make, error):
    saved = frames({"x": [1]})[0]
    path = tmp_path / "unsaved.txt"
    path.write_text("not saved")
    unsaved = ln.Artifact(path, key="unsaved.txt")
    before = table_counts(registry)
    with pytest.raises((ValidationError, FieldError), match=error):
        make(saved, unsaved).save()
    assert table_counts(registry) == before


def test_load_refuses_an_unknown_join(registry):
    collection = ln.Collection(frames({"x": [1]}, {"x": [2]}), key="k").save()
    with pytest.raises(ValidationError, match="'outer' or 'inner'"):
        collection.load(join="left")


def test_every_run_attribute_of_the_seed_is_there(registry):
    """The relational fields in shared/seeds/lamindb.Run.txt that runs of this registry can have."""
    other = ln.Record(name="sample 2").save()  # made before the run
    ln.track(transform=ln.Transform(key="attrs.py", kind="script").save())
    run = ln.context.run
    record = ln.Record(name="sample 1").save()
    run.input_records.add(other)
    ln.finish()
    assert run.output_records.to_list() == [record]
    assert run.input_records.to_list() == [other] and other.input_of_runs.to_list() == [run]
    assert record.run == run and other.run is None
    assert (run.branch.name, run.created_on.name, run.space.name) == ("main", "main", "all")
    for name in ("output_collections", "input_collections", "recreated_collections"):
        assert getattr(run, name).count() == 0
    run.delete()
    assert ln.Run.filter(id=run.id, branch_id=-1).one().branch.name == "trash"


def test_lineage_goes_through_a_collection_from_what_a_run_made_to_the_artifacts_it_read(registry, tmp_path):
    """A run that read a collection used each of its artifacts: upstream of its output reaches
    the runs that made them, and downstream of one of them reaches the output."""
    ln.track(transform=ln.Transform(key="make_parts.py", kind="script").save())
    maker = ln.context.run
    part, other = frames({"x": [1]}, {"x": [2]})
    ln.Collection([part, other], key="parts").save()
    ln.finish()
    ln.track(transform=ln.Transform(key="merge.py", kind="script").save())
    merger = ln.context.run
    merged = ln.Collection.get(key="parts").load()
    out = tmp_path / "merged.csv"
    merged.to_csv(out)
    result = ln.Artifact(out, key="merged.csv").save()
    part.load()  # read alone too: still one edge
    ln.finish()

    up = ln.lineage.upstream(result)
    assert {r.uid for r in up} >= {result.uid, merger.uid, part.uid, other.uid, maker.uid}
    edges = [(a.uid, b.uid, k) for a, b, k in up.edges]
    assert edges.count((part.uid, merger.uid, "used")) == 1 and (other.uid, merger.uid, "used") in edges
    assert result.uid in {r.uid for r in ln.lineage.downstream(other)}
    assert other.uid in {r.uid for r in ln.lineage.run_graph(merger)}  # the run as a whole, as reports show it


def test_runs_are_annotated_with_artifacts_records_and_notes_as_in_lamindb(registry, tmp_path):
    """`run.artifacts` / `linked_artifacts` / `linked_in_records` / `ablocks`, the seed's last Run fields."""
    plot, table = frames({"x": [1]}, {"x": [2]})  # made before the run: deleting it keeps them
    ln.track(transform=ln.Transform(key="notes.py", kind="script").save())
    run = ln.context.run
    run.artifacts.add(plot)
    run.linked_artifacts.add(table)
    sample = ln.Record(name="sample 1").save()
    sample.linked_runs.add(run)
    first = ln.RunBlock(run=run, content="# Notes\nfirst try", kind="readme").save()
    second = ln.RunBlock(run=run, content="# Notes\nsecond try", kind="readme").save()
    comment = ln.RunBlock(run=run, content="looks good", kind="comment").save()
    ln.finish()
    assert run.artifacts.to_list() == [plot] and plot.runs.to_list() == [run]
    assert run.linked_artifacts.to_list() == [table] and table.linked_by_runs.to_list() == [run]
    assert run.linked_in_records.to_list() == [sample]
    assert second.uid[:16] == first.uid[:16] and second.is_latest
    assert not ln.RunBlock.get(first.id).is_latest and comment.uid[:16] != first.uid[:16]
    assert [b.content for b in run.ablocks.filter(kind="readme", is_latest=True)] == ["# Notes\nsecond try"]
    for bad, error in [(dict(run=run, content="x", kind="issue"), "readme' or 'comment"),
                       (dict(content="x"), "needs a saved run"), (dict(run=run, content=None), "markdown content")]:
        with pytest.raises(ValidationError, match=error):
            ln.RunBlock(**bad)
    run.delete(permanent=True)  # the notes and annotations go with the run, the artifacts stay
    assert ln.RunBlock.filter().count() == 0 and plot.runs.count() == 0 and ln.Artifact.filter(id=plot.id).count() == 1


def test_labels_of_any_registry_are_added_through_one_manager_and_features_describe_themselves(registry):
    """lamindb's `artifact.labels.add(...)` (ULabels, Records, Projects; with `feature=` the names
    become that feature's values) and `artifact.features.describe()`."""
    artifact = frames({"x": [1]})[0]
    ulabel, record, project = ln.ULabel(name="exp1").save(), ln.Record(name="donor A").save(), ln.Project(name="atlas").save()
    donor = ln.Feature(name="donor", dtype=ln.Record).save()
    artifact.labels.add(ulabel)
    artifact.labels.add([record], feature=donor)
    artifact.labels.add(project)
    assert artifact.ulabels.to_list() == [ulabel] and artifact.records.to_list() == [record]
    assert artifact.projects.to_list() == [project]
    assert artifact.features.get_values() == {"donor": "donor A"} and artifact.labels.get(donor) == [record]
    assert ln.Artifact.filter(donor="donor A").one() == artifact
    text = artifact.features.describe(return_str=True)
    assert text.splitlines()[1:] == ['  donor: "donor A"']
    other = ln.ULabel(name="exp2").save()
    with pytest.raises(ValidationError, match="saved ULabel, Record or Project"):
        artifact.labels.add([other, ln.ULabel(name="unsaved")])
    with pytest.raises(ValidationError, match="saved Feature"):
        artifact.labels.add(other, feature="donor")
    assert artifact.ulabels.to_list() == [ulabel]  # a refused call links none of its labels
    run = ln.Run(ln.Transform(key="label.py", kind="script").save()).save()
    run.labels.add(ulabel)
    assert run.ulabels.to_list() == [ulabel]
