"""Lineage you can look at and hand on: queries, graph views, the HTML run report, exports.

    import lamin_integrations as ln
    ln.lineage.upstream(artifact)            # the runs and artifacts it came from
    ln.lineage.downstream(run, depth=2)      # what came from it, two edges deep
    artifact.view_lineage()                  # both ways; a tree in a terminal, a picture in Jupyter

The queries live in `lamin_integrations.core.lineage` (one recursive SQL query per walk);
this package turns their results into graphs, pages and export files. Nothing heavy is
imported until a function is called.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .graph import LineageGraph

__all__ = ["downstream", "graph_of", "run_graph", "upstream"]


def upstream(record: Any, depth: int | None = None, *, follow_initiated_by: bool = True) -> LineageGraph:
    """The runs and artifacts `record` (a Run or an Artifact) came from, `depth` edges deep at most.

    The result iterates over the records (nearest first), has `.runs`, `.artifacts` and
    `.to_dataframe()`, and renders as text, JSON, DOT, Mermaid or SVG.
    """
    return graph_of(record, "upstream", depth, follow_initiated_by=follow_initiated_by)


def downstream(record: Any, depth: int | None = None, *, follow_initiated_by: bool = True) -> LineageGraph:
    """The runs and artifacts that came from `record` (a Run or an Artifact)."""
    return graph_of(record, "downstream", depth, follow_initiated_by=follow_initiated_by)


def graph_of(record: Any, direction: str = "both", depth: int | None = None, *,
             follow_initiated_by: bool = True) -> LineageGraph:
    """The lineage graph of `record` upstream, downstream or both ways."""
    from ..core.lineage import lineage
    from .graph import LineageGraph

    return LineageGraph(lineage(record, direction, depth, follow_initiated_by=follow_initiated_by))


def run_graph(run: Any) -> LineageGraph:
    """A pipeline run as a whole: the run, every run below it, their inputs and outputs."""
    from ..core.lineage import run_tree
    from .graph import LineageGraph

    return LineageGraph(run_tree(run))
