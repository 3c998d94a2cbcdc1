"""Human fault tolerance: a buggy version of a view in production, and the way back.

Marz's point: people will deploy bugs, so the raw data must be immutable and every view
recomputable from it. The lab's bug is a copy-paste slip that types checks cannot catch:
the ``min`` measure of a view declared as ``max`` (:func:`buggy`). :func:`deploy_buggy`
puts it into production through the view registry (``views.registry.deploy``): the API
answers with it at once, the next batch cycle builds a version with it, a speed consumer
restarted after it rebuilds its windows with it. :func:`fix` takes it back out.

Recovery then goes two ways: **recompute** (Lambda: the next batch cycle rebuilds the view
from the master dataset and the restarted speed layer rebuilds its windows) and **replay**
(Kappa: ``lab replay`` runs the streaming code from offset 0 into a new output and switches
serving to it). :func:`raw_fingerprint` shows the raw data is untouched throughout: every
master file and every Kafka partition's earliest offset is the same before and after.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from lambdalab.errors import DefinitionError
from lambdalab.hdfs import webhdfs
from lambdalab.paths import HdfsPaths
from lambdalab.settings import Settings
from views.definition import Measure, ViewDef
from views.registry import coded_views, deploy, undeploy


def buggy(view: ViewDef) -> ViewDef:
    """``view`` with the bug: its first ``min`` measure computed as ``max``.

    Raises:
        DefinitionError: the view has no ``min`` measure to break.
    """
    measures = list(view.measures)
    for i, m in enumerate(measures):
        if m.kind == "min":
            measures[i] = Measure(m.name, "max", m.field)
            return replace(view, measures=tuple(measures))
    msg = f"view {view.name} has no min measure: the lab's bug needs one"
    raise DefinitionError(msg)


def deploy_buggy(name: str) -> ViewDef:
    """Put the buggy version of the coded view ``name`` into production; return it."""
    bad = buggy(coded_views()[name])
    deploy(bad)
    return bad


def fix(name: str) -> bool:
    """Take the buggy version out: the coded definition serves again."""
    return undeploy(name)


def raw_fingerprint(settings: Settings, stream: str) -> dict[str, Any]:
    """What must never change: each master file's size and checksum, each partition's start.

    Compare two of these with :func:`untouched`: files may be added, never changed or gone.
    """
    from lambdalab.topics import kafka_consumer, partitions

    client = webhdfs(settings)
    root = HdfsPaths(settings).master(stream)
    files: dict[str, Any] = {}
    for path, _dirs, names in client.walk(root):
        for name in names:
            full = f"{path}/{name}"
            if "/_" in full[len(root) :]:  # claims and manifests are bookkeeping
                continue
            checksum = client.checksum(full)
            files[full] = (client.status(full)["length"], checksum["bytes"])
    consumer = kafka_consumer(settings)
    try:
        parts = partitions(consumer, settings.topic_for(stream))
        begin = {tp.partition: o for tp, o in consumer.beginning_offsets(parts).items()}
    finally:
        consumer.close()
    return {"files": files, "log_start": begin}


def untouched(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """What changed in the raw data between two :func:`raw_fingerprint` (empty: nothing)."""
    problems = [
        f"{path}: {'gone' if path not in after['files'] else 'changed'}"
        for path, seen in before["files"].items()
        if after["files"].get(path) != seen
    ]
    problems += [
        f"partition {p}: log start moved {o} -> {after['log_start'].get(p)}"
        for p, o in before["log_start"].items()
        if after["log_start"].get(p) != o
    ]
    return problems
