"""What lamindb's own examples do and expect, beyond the seeds: a label made again by name is
the same label, features are keyed by name or by the Feature itself, `update_values` keeps the
other features, versions list the newest first, a table file given to `from_dataframe` is a
DataFrame dataset, and `initiated_by_run` takes a uid. Real registries on both databases.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

import lamin_integrations as ln
from lamin_integrations.errors import ValidationError


@pytest.mark.parametrize("registry_class", [ln.ULabel, ln.Project])
def test_a_label_made_again_by_name_is_the_saved_one(registry, registry_class):
    # lamindb: "returning ulabel with same name"; a script run twice must not fork its labels
    first = registry_class(name="train").save()
    again = registry_class(name="train", description="the training split").save()
    assert again.id == first.id and registry_class.filter(name="train").count() == 1
    assert registry_class.get(name="train").description == "the training split"  # the new field is saved
    assert registry_class(name="test").save().id != first.id


def test_records_of_one_name_are_one_within_a_type(registry):
    sample = ln.Record(name="Sample", is_type=True).save()
    typed = ln.Record(name="s1", type=sample).save()
    assert ln.Record(name="s1", type=sample).save().id == typed.id
    assert ln.Record(name="s1").save().id == typed.id  # no type given: any record of that name, as lamindb
    untyped = ln.Record(name="s1", type=None).save()  # type=None asks for a record without a type
    assert untyped.id != typed.id and ln.Record(name="s1", type=None).save().id == untyped.id
    assert ln.Record().save().id not in (typed.id, untyped.id)  # nameless records are each their own


def test_a_label_trashed_is_not_given_back(registry):
    old = ln.ULabel(name="train").save()
    old.delete()
    assert ln.ULabel(name="train").save().id != old.id


def test_features_keyed_by_the_feature_itself_and_updated_one_at_a_time(registry, tmp_path):
    temperature = ln.Feature(name="temperature", dtype=float).save()
    site = ln.Feature(name="site", dtype=str).save()
    data = tmp_path / "x.txt"
    data.write_text("x")
    artifact = ln.Artifact(str(data), key="x.txt").save()
    artifact.features.set_values({temperature: 27.5, "site": "lab-a"})
    assert artifact.features.get_values() == {"temperature": 27.5, "site": "lab-a"}
    assert artifact.features[temperature] == 27.5
    artifact.features.update_values({temperature: 30.5})  # the other feature stays
    assert artifact.features.get_values() == {"temperature": 30.5, "site": "lab-a"}
    artifact.features.update_values({site: None})  # None removes the feature's values
    assert artifact.features.get_values() == {"temperature": 30.5}
    with pytest.raises(ValidationError, match="cannot take str .warm."):  # checked before anything changes
        artifact.features.update_values({temperature: "warm"})
    assert artifact.features.get_values() == {"temperature": 30.5}
    with pytest.raises(ValidationError, match="unknown feature.*'temprature'"):  # a typo, even when removing
        artifact.features.update_values({"temprature": None, temperature: 1.0})
    assert artifact.features.get_values() == {"temperature": 30.5}
    unsaved = ln.Feature(name="pressure", dtype=float)
    with pytest.raises(ValidationError, match="save the feature 'pressure'"):
        artifact.features.add_values({unsaved: 1.0})
    ln.track(transform=ln.Transform(key="annotate.py", kind="script").save(), features={temperature: 21.0})
    assert ln.context.run.features.get_values() == {"temperature": 21.0}
    ln.finish()


def test_versions_are_listed_newest_first(registry, tmp_path):
    data = tmp_path / "counts.tsv"
    saved = []
    for content in ("1", "2", "3"):
        data.write_text(content)
        saved.append(ln.Artifact(str(data), key="counts.tsv").save())
    assert saved[0].versions.first() == saved[2]  # lamindb orders by -created_at: first() is the latest
    assert [a.uid for a in saved[1].versions] == [a.uid for a in reversed(saved)]


def test_a_table_file_given_to_from_dataframe_is_a_dataframe_dataset(registry, tmp_path):
    path = tmp_path / "table.parquet"
    pd.DataFrame({"a": [1, 2]}).to_parquet(path)
    artifact = ln.Artifact.from_dataframe(str(path), key="tables/table.parquet").save()
    assert (artifact.otype, artifact.kind) == ("DataFrame", "dataset")
    assert ln.Artifact.filter(otype="DataFrame").one() == artifact
    assert list(artifact.load()["a"]) == [1, 2]


def test_initiated_by_run_takes_the_parent_uid(registry):
    parent = ln.Run(ln.Transform(key="pipeline", kind="pipeline").save()).save()
    child = ln.track(transform=ln.Transform(key="step.py", kind="script").save(), initiated_by_run=parent.uid)
    assert child.initiated_by_run == parent
    ln.finish()
    with pytest.raises(ValidationError, match="no run with uid 'nosuchrun0000000'"):
        ln.track(transform=ln.Transform(key="step.py", kind="script").save(), initiated_by_run="nosuchrun0000000")


def test_a_storage_location_is_mounted_and_switched_to_as_in_lamindb(registry, tmp_path):
    shared = tmp_path / "shared"
    mounted = ln.Storage(root=f"{shared}/", host="server-123").save()  # type and an absolute root follow from it
    assert (mounted.root, mounted.type, mounted.region) == (str(shared.resolve()), "local", "server-123")
    assert ln.Storage(root="s3://our-bucket/our-folder").type == "s3"
    with pytest.raises(ValidationError, match="needs a root"):
        ln.Storage()
    ln.settings.storage = str(shared)  # new artifacts of this process go there; the registry stays
    data = tmp_path / "a.txt"
    data.write_text("a")
    artifact = ln.Artifact(str(data), key="a.txt").save()
    assert artifact.storage == mounted and shared.resolve() in Path(artifact.path).resolve().parents
    assert ln.settings.storage == str(shared) and ln.Artifact.get(key="a.txt") == artifact


def test_track_takes_a_transform_described_by_key_kind_and_source_and_an_entrypoint_and_plan(registry, caplog):
    """lamindb's track(key=, kind=, source_code=, entrypoint=, plan=): code without a script file
    (an agent, a function); its permission arguments are taken and have no effect here."""
    import pandas as pd

    plan = ln.Artifact.from_dataframe(pd.DataFrame({"step": ["curate"]}), key="plans/curate.parquet").save()
    with caplog.at_level("WARNING", logger="lamin_integrations"):
        run = ln.track(key="agents/curate", kind="function", source_code="def curate(): ...", entrypoint="curate",
                       plan="plans/curate.parquet", pypackages=False, space="lab", stream_tracking=True)
    assert (run.transform.key, run.transform.kind, run.transform.source_code) == ("agents/curate", "function", "def curate(): ...")
    assert run.entrypoint == "curate" and run.plan == plan
    assert any("space= and branch=" in r.getMessage() for r in caplog.records)
    ln.finish()
    assert ln.Run.get(run.uid).plan_id == plan.id and ln.Run.get(run.uid).status == "completed"
    again = ln.track(key="agents/curate", kind="function", source_code="def curate(): ...")
    assert again.transform == run.transform  # the same code: the same transform
    ln.finish()
    with pytest.raises(TypeError, match="unexpected keyword argument 'colour'"):
        ln.track(colour="red")
    with pytest.raises(ValidationError, match="not both"):
        ln.track(run.transform, key="other")
    runs, transforms = ln.Run.filter().count(), ln.Transform.filter().count()
    with pytest.raises(ValidationError, match="no artifact has the key or uid 'plans/missing.md'"):
        ln.track(key="agents/other", plan="plans/missing.md")
    for bad, message in (({"params": "not a dict"}, "params must be a dict"), ({"features": {"nofeature": 1}}, "unknown feature"),
                         ({"initiated_by_run": "nope"}, "no run with uid")):
        with pytest.raises(ValidationError, match=message):
            ln.track(key="agents/other", **bad)
    assert (ln.Run.filter().count(), ln.Transform.filter().count()) == (runs, transforms)  # checked first
    ln.context.version = "2"  # as for a script: the version of the transform this run makes
    assert ln.track(key="agents/versioned").transform.version == "2"
    ln.finish()
