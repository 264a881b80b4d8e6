"""Lineage queries: everything upstream or downstream of a run or an artifact.

The graph has two kinds of nodes, runs and artifacts, and four kinds of edges, all pointing
the way data flows:

    artifact --used--> run          (run_input_artifact; and each artifact of a collection
                                     the run read: run_input_collection + collection_artifact)
    run --generated--> artifact     (artifact.run_id)
    run --recreated--> artifact     (run_recreated_artifact: same content saved again)
    run --initiated--> run          (run.initiated_by_run_id: a pipeline run and its steps)

A walk is one recursive CTE, whatever its length (never one query per hop). With a depth
bound the CTE carries the depth and stops there; without one it is a plain visited set
(`UNION` drops rows already produced), so old data that contains a cycle still terminates.
Loading the records found takes a fixed number of further queries.

Links that would make a run both the creator and a consumer of one artifact are refused
(`InputArtifacts`): that is the only cycle a single write can create.
"""

from __future__ import annotations

import functools
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import sqlalchemy as sa

from ..errors import IntegrityError, ValidationError
from . import schema
from .queryset import QuerySet, RelatedManager
from .record import ManyToMany, link

if TYPE_CHECKING:
    from .instance import Instance
    from .models import Run

Direction = Literal["upstream", "downstream"]
NodeKey = tuple[str, int]  # ("run", id) or ("artifact", id)
EDGE_KINDS = ("used", "generated", "recreated", "initiated")


@dataclass
class Edge:
    """One edge in data-flow direction: `source` came before `target`."""

    source: NodeKey
    target: NodeKey
    kind: str  # used | generated | recreated | initiated


@dataclass
class LineageData:
    """What a walk found: records by id, the edges between them, each node's distance."""

    root: NodeKey
    direction: str  # upstream | downstream | both | tree
    depth: int | None
    runs: dict[int, Any] = field(default_factory=dict)  # Run records
    artifacts: dict[int, Any] = field(default_factory=dict)  # Artifact records
    transforms: dict[int, Any] = field(default_factory=dict)  # Transform records
    edges: list[Edge] = field(default_factory=list)
    distance: dict[NodeKey, int] = field(default_factory=dict)

    def record(self, key: NodeKey) -> Any:
        return (self.runs if key[0] == "run" else self.artifacts).get(key[1])


# -- the walk -------------------------------------------------------------------------------

# One branch per edge kind: (kind of the node in `w`, kind of the next node, table x, join
# condition, the next node's id column, extra condition). Each branch is one index lookup.
_Branch = tuple[str, str, str, str, str, str]


def _collection_pairs() -> sa.Select:
    """(run_id, artifact_id) for each artifact of each collection a run read."""
    ric, ca = schema.run_input_collection, schema.collection_artifact
    return sa.select(ric.c.run_id, ca.c.artifact_id).join(ca, ca.c.collection_id == ric.c.collection_id)


@functools.cache
def _branches(direction: Direction, follow_initiated_by: bool) -> tuple[_Branch, ...]:
    """The walk's branches one way; compiled once, when a walk first needs them."""
    pairs = f"({_collection_pairs()})"  # the collection pairs as a table (plain SQL both dialects accept)
    if direction == "upstream":
        branches: list[_Branch] = [
            ("a", "r", "artifact", "x.id = w.id", "run_id", " AND x.run_id IS NOT NULL"),
            ("a", "r", "run_recreated_artifact", "x.artifact_id = w.id", "run_id", ""),
            ("r", "a", "run_input_artifact", "x.run_id = w.id", "artifact_id", ""),
            ("r", "a", pairs, "x.run_id = w.id", "artifact_id", ""),
        ]
        chain: _Branch = ("r", "r", "run", "x.id = w.id", "initiated_by_run_id", " AND x.initiated_by_run_id IS NOT NULL")
    else:
        branches = [
            ("a", "r", "run_input_artifact", "x.artifact_id = w.id", "run_id", ""),
            ("a", "r", pairs, "x.artifact_id = w.id", "run_id", ""),
            ("r", "a", "artifact", "x.run_id = w.id", "id", ""),
            ("r", "a", "run_recreated_artifact", "x.run_id = w.id", "artifact_id", ""),
        ]
        chain = ("r", "r", "run", "x.initiated_by_run_id = w.id", "id", "")
    return (*branches, chain) if follow_initiated_by else tuple(branches)


def walk_sql(dialect: str, direction: Direction, bounded: bool, follow_initiated_by: bool = True) -> str:
    """The recursive CTE for one walk; parameters :kind, :id and (if bounded) :max_depth.

    SQLite (3.34+) accepts several recursive SELECTs joined by UNION; PostgreSQL allows one
    reference to the CTE, so there the branches sit in a LATERAL subquery.
    """
    branches = _branches(direction, follow_initiated_by)
    cols = "kind, id, depth" if bounded else "kind, id"
    bound = " AND w.depth < :max_depth" if bounded else ""
    next_depth = ", w.depth + 1" if bounded else ""
    seed = "SELECT CAST(:kind AS VARCHAR(1)), CAST(:id AS BIGINT)" + (", 0" if bounded else "")
    if dialect == "postgresql":
        inner = "\n        UNION ALL ".join(
            f"SELECT CAST('{dst}' AS VARCHAR(1)) AS kind, CAST(x.{col} AS BIGINT) AS id FROM {table} x "
            f"WHERE w.kind = '{src}' AND {cond}{extra}"
            for src, dst, table, cond, col, extra in branches
        )
        step = f"SELECT n.kind, n.id{next_depth} FROM walk w CROSS JOIN LATERAL (\n        {inner}\n    ) n WHERE true{bound}"
    else:
        step = "\n    UNION ".join(
            f"SELECT '{dst}', x.{col}{next_depth} FROM walk w JOIN {table} x ON {cond} WHERE w.kind = '{src}'{extra}{bound}"
            for src, dst, table, cond, col, extra in branches
        )
    select_out = "SELECT kind, id, min(depth) FROM walk GROUP BY kind, id" if bounded else "SELECT kind, id, NULL FROM walk"
    return f"WITH RECURSIVE walk({cols}) AS (\n    {seed}\n    UNION\n    {step}\n) {select_out}"


def _node(record: Any) -> NodeKey:
    from .models import Artifact, Run

    if isinstance(record, Run):
        kind = "run"
    elif isinstance(record, Artifact):
        kind = "artifact"
    else:
        raise ValidationError(f"lineage is defined for runs and artifacts, got {type(record).__name__}")
    if record.id is None:
        raise ValidationError(f"{kind} {record.uid} is not saved; lineage exists only for saved records")
    return kind, record.id


def walk(record: Any, direction: Direction, depth: int | None = None, *,
         follow_initiated_by: bool = True) -> dict[NodeKey, int | None]:
    """Every node reachable from `record` (itself included) in one query: node -> depth or None."""
    if direction not in ("upstream", "downstream"):
        raise ValidationError(f"direction is 'upstream' or 'downstream', got {direction!r}")
    if depth is not None and (not isinstance(depth, int) or isinstance(depth, bool) or depth < 0):
        raise ValidationError(f"depth is a non-negative integer or None, got {depth!r}")
    kind, id_ = _node(record)
    instance = record._db
    sql = walk_sql(instance.dialect, direction, depth is not None, follow_initiated_by)
    params: dict[str, Any] = {"kind": kind[0], "id": id_}
    if depth is not None:
        params["max_depth"] = depth
    with instance.read() as conn:
        rows = conn.execute(sa.text(sql), params).all()
    return {("run" if k == "r" else "artifact", int(i)): d for k, i, d in rows}


# -- loading what a walk found ----------------------------------------------------------------


def _in_ids(column: Any, ids: set[int] | list[int], dialect: str) -> Any:
    """`column IN ids` as one bound value (a JSON array / a PostgreSQL array), whatever the count.

    An expanded IN list of thousands of parameters costs more to compile than to run, and
    SQLite limits the number of parameters.
    """
    values = sorted(int(i) for i in ids)
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import ARRAY

        return column == sa.any_(sa.bindparam(None, values, type_=ARRAY(sa.BigInteger())))
    import json

    each = sa.func.json_each(sa.bindparam(None, json.dumps(values), type_=sa.String())).table_valued("value")
    return column.in_(sa.select(each.c.value))


def _dicts(result: Any) -> list[dict[str, Any]]:
    keys = list(result.keys())  # once, not per row as RowMapping does
    return [dict(zip(keys, row, strict=True)) for row in result]


def _collection_inputs(run_ids: set[int], dialect: str) -> sa.Select:
    return _collection_pairs().where(_in_ids(schema.run_input_collection.c.run_id, run_ids, dialect))


def load(instance: Instance, run_ids: set[int], artifact_ids: set[int], root: NodeKey, direction: str,
         depth: int | None) -> LineageData:
    """Records and the edges among them, in a fixed number of queries (trash left out)."""
    from .models import Artifact, Run, Transform

    data = LineageData(root=root, direction=direction, depth=depth)
    r, a, t = schema.run, schema.artifact, schema.transform
    inputs, recreated = schema.run_input_artifact, schema.run_recreated_artifact
    run_rows: Any = []
    artifact_rows: Any = []
    links: list[tuple[str, int, int]] = []
    dialect = instance.dialect
    with instance.read() as conn:
        if run_ids:
            run_rows = _dicts(conn.execute(sa.select(r).where(_in_ids(r.c.id, run_ids, dialect), r.c.branch_id != -1)))
            used = sa.union(sa.select(inputs.c.run_id, inputs.c.artifact_id).where(_in_ids(inputs.c.run_id, run_ids, dialect)),
                            _collection_inputs(run_ids, dialect))  # an artifact read alone and in a collection: one edge
            links += [("used", row[0], row[1]) for row in conn.execute(used)]
            links += [("recreated", row[0], row[1]) for row in conn.execute(
                sa.select(recreated.c.run_id, recreated.c.artifact_id).where(_in_ids(recreated.c.run_id, run_ids, dialect)))]
        if artifact_ids:
            artifact_rows = _dicts(conn.execute(sa.select(a).where(_in_ids(a.c.id, artifact_ids, dialect), a.c.branch_id != -1,
                                                                   a.c._storage_ongoing.is_(False))))
        transform_ids = {row["transform_id"] for row in run_rows}
        transform_rows = conn.execute(sa.select(t).where(_in_ids(t.c.id, transform_ids, dialect))).mappings().all() \
            if transform_ids else []
    data.transforms = {row["id"]: Transform._from_row(row, instance) for row in transform_rows}
    for row in run_rows:
        run = Run._from_row(row, instance)
        run.__dict__.setdefault("_related", {})["transform"] = data.transforms.get(run.transform_id)
        data.runs[row["id"]] = run
    data.artifacts = {row["id"]: Artifact._from_row(row, instance) for row in artifact_rows}
    runs, arts = data.runs, data.artifacts
    for art in arts.values():
        if art.run_id in runs:
            data.edges.append(Edge(("run", art.run_id), ("artifact", art.id), "generated"))  # type: ignore[arg-type]
    for kind, run_id, artifact_id in sorted(links):
        if run_id in runs and artifact_id in arts:
            edge = (("artifact", artifact_id), ("run", run_id)) if kind == "used" else (("run", run_id), ("artifact", artifact_id))
            data.edges.append(Edge(edge[0], edge[1], kind))
    for run in runs.values():
        if run.initiated_by_run_id in runs:
            data.edges.append(Edge(("run", run.initiated_by_run_id), ("run", run.id), "initiated"))  # type: ignore[arg-type]
    return data


def _distances(data: LineageData, directions: tuple[str, ...]) -> dict[NodeKey, int]:
    """Shortest number of edges from the root, walking the loaded edges the way the query did."""
    forward: dict[NodeKey, list[NodeKey]] = {}
    backward: dict[NodeKey, list[NodeKey]] = {}
    for e in data.edges:
        forward.setdefault(e.source, []).append(e.target)
        backward.setdefault(e.target, []).append(e.source)
    distance = {data.root: 0}
    for direction in directions:
        nxt = forward if direction == "downstream" else backward
        seen = {data.root: 0}
        queue = deque([data.root])
        while queue:
            node = queue.popleft()
            for other in nxt.get(node, ()):
                if other not in seen:
                    seen[other] = seen[node] + 1
                    queue.append(other)
        for node, d in seen.items():
            distance[node] = min(d, distance.get(node, d))
    return distance


def lineage(record: Any, direction: str = "upstream", depth: int | None = None, *,
            follow_initiated_by: bool = True) -> LineageData:
    """Runs and artifacts upstream, downstream or both ways of `record`, with their edges.

    `depth` counts edges (an artifact's creating run is 1 away, that run's inputs 2);
    None walks to the end. `follow_initiated_by` also walks from a run to the run that
    initiated it (upstream) or the runs it initiated (downstream).
    """
    directions: tuple[Direction, ...]
    if direction == "both":
        directions = ("upstream", "downstream")
    elif direction in ("upstream", "downstream"):
        directions = (direction,)  # type: ignore[assignment]
    else:
        raise ValidationError(f"direction is 'upstream', 'downstream' or 'both', got {direction!r}")
    root = _node(record)
    found: set[NodeKey] = set()
    for d in directions:
        found |= set(walk(record, d, depth, follow_initiated_by=follow_initiated_by))
    data = load(record._db, {i for k, i in found if k == "run"}, {i for k, i in found if k == "artifact"},
                root, direction, depth)
    if len(directions) == 2:
        # Edges between the two halves that the walks never followed (a consumer of the root's
        # producer's other output, say) would mix unrelated branches into the picture.
        up = set(walk(record, "upstream", depth, follow_initiated_by=follow_initiated_by))
        down = set(walk(record, "downstream", depth, follow_initiated_by=follow_initiated_by))
        data.edges = [e for e in data.edges if (e.source in up and e.target in up) or (e.source in down and e.target in down)]
    data.distance = _distances(data, directions)
    return data


def upstream(record: Any, depth: int | None = None, *, follow_initiated_by: bool = True) -> LineageData:
    """The runs and artifacts `record` came from."""
    return lineage(record, "upstream", depth, follow_initiated_by=follow_initiated_by)


def downstream(record: Any, depth: int | None = None, *, follow_initiated_by: bool = True) -> LineageData:
    """The runs and artifacts that came from `record`."""
    return lineage(record, "downstream", depth, follow_initiated_by=follow_initiated_by)


def run_tree(run: Run) -> LineageData:
    """A pipeline run as a whole: the run, every run below it, and their inputs and outputs.

    This is what a report or an export describes. Runs below come from one recursive query
    (the `initiated_by_run` subtree); their artifacts from the link tables.
    """
    from .models import _subtree

    root = _node(run)
    instance = run._db
    tree = _subtree(run.id)
    a = schema.artifact
    with instance.read() as conn:
        run_ids = {run.id, *conn.execute(sa.select(tree.c.id)).scalars()}
        artifact_ids = set(conn.execute(sa.select(a.c.id).where(_in_ids(a.c.run_id, run_ids, instance.dialect))).scalars())  # type: ignore[arg-type]
        for table in (schema.run_input_artifact, schema.run_recreated_artifact):
            artifact_ids |= set(conn.execute(sa.select(table.c.artifact_id)
                                             .where(_in_ids(table.c.run_id, run_ids, instance.dialect))).scalars())  # type: ignore[arg-type]
        artifact_ids |= {row[1] for row in conn.execute(_collection_inputs(run_ids, instance.dialect))}  # type: ignore[arg-type]
    data = load(instance, run_ids, artifact_ids, root, "tree", None)  # type: ignore[arg-type]
    data.distance = _distances(data, ("downstream",))
    return data


# -- refusing cycles --------------------------------------------------------------------------


def check_no_cycle(conn: sa.Connection, pairs: list[tuple[int, int]]) -> None:
    """Refuse (run, artifact) input links where the run created or recreated the artifact."""
    if not pairs:
        return
    a, rec = schema.artifact, schema.run_recreated_artifact
    run_ids = sorted({p[0] for p in pairs})
    artifact_ids = sorted({p[1] for p in pairs})
    wanted = set(pairs)
    bad = [(row[0], row[1]) for row in conn.execute(
        sa.select(a.c.run_id, a.c.id).where(a.c.id.in_(artifact_ids), a.c.run_id.in_(run_ids))) if (row[0], row[1]) in wanted]
    bad += [(row[0], row[1]) for row in conn.execute(
        sa.select(rec.c.run_id, rec.c.artifact_id).where(rec.c.run_id.in_(run_ids), rec.c.artifact_id.in_(artifact_ids)))
        if (row[0], row[1]) in wanted]
    if bad:
        run_id, artifact_id = bad[0]
        r = schema.run
        run_uid = conn.execute(sa.select(r.c.uid).where(r.c.id == run_id)).scalar()
        artifact_uid = conn.execute(sa.select(a.c.uid).where(a.c.id == artifact_id)).scalar()
        raise IntegrityError(
            f"artifact {artifact_uid} was created (or recreated) by run {run_uid}, so it cannot also be an input "
            "of that run: lineage would contain a cycle. Link it as an input of the run that reads it instead"
        )


class InputArtifacts(ManyToMany):
    """`run.input_artifacts` / `artifact.input_of_runs`: `add` and `set` refuse cycles.

    The check and the insert share one transaction, so a concurrent writer cannot slip a
    creating run in between.
    """

    def __get__(self, obj: Any, owner: type) -> Any:
        if obj is None:
            return self
        return _InputManager(self, obj)


class _InputManager(RelatedManager):
    def _pairs(self, ids: list[int]) -> list[tuple[int, int]]:
        mine: int = self._owner.id  # type: ignore[assignment]
        return [(mine, i) for i in ids] if self._relation.self_column == "run_id" else [(i, mine) for i in ids]

    def _write(self, ids: list[int], replace: bool) -> None:
        rel, table, pairs = self._relation, self._relation.table, self._pairs(ids)

        def write(conn: sa.Connection) -> None:
            check_no_cycle(conn, pairs)
            if replace:
                conn.execute(sa.delete(table).where(table.c[rel.self_column] == self._owner.id,
                                                    table.c[rel.other_column].not_in(ids)))
            link(conn, table, [{"run_id": r, "artifact_id": a} for r, a in pairs])

        self.instance.write(write)
        self._owner._after_link(rel.name, ids)

    def add(self, *records: Any) -> None:
        self._write(self._ids(records), replace=False)

    def set(self, records: Any) -> None:
        self._write(self._ids(tuple(records) if not isinstance(records, QuerySet) else (records,)), replace=True)


__all__ = ["EDGE_KINDS", "Edge", "InputArtifacts", "LineageData", "check_no_cycle", "downstream", "lineage",
           "run_tree", "upstream", "walk", "walk_sql"]
