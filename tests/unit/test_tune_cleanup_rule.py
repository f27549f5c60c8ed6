"""Which GCS placement-group rows the sweep treats as orphans (rows built by hand, no Ray)."""

from __future__ import annotations

import pytest
from ray.core.generated import gcs_pb2

from llmops_ray.tune.cleanup import is_orphan

PG = gcs_pb2.PlacementGroupTableData
CONTROLLER = bytes(range(1, 17))  # an actor id (16 bytes): the Train controller that made the group
DRIVER = b"\xff" * 16  # the nil actor id: a group the driver (Tune) created


def row(creator: bytes = CONTROLLER, state=PG.CREATED, flag: bool = False, detached: bool = False):
    return PG(placement_group_id=b"\x01" * 18, creator_actor_id=creator, state=state,
              creator_actor_dead=flag, is_detached=detached)


def test_flag_alone_marks_an_orphan():
    assert is_orphan(row(flag=True), dead_actor_ids=set())


def test_actor_table_marks_an_orphan_when_the_flag_was_never_set():
    # What the benchmark hit: controller DEAD in the actor table, the group's flag still false.
    assert is_orphan(row(flag=False), dead_actor_ids={CONTROLLER})


def test_live_creator_is_no_orphan():
    assert not is_orphan(row(flag=False), dead_actor_ids={b"\x02" * 16})


@pytest.mark.parametrize("kwargs", [
    {"creator": DRIVER, "flag": True},  # Tune's trial groups: "dead" creator from the start
    {"creator": b"", "flag": True},
    {"detached": True, "flag": True},
    {"state": PG.PENDING, "flag": True},
    {"state": PG.REMOVED, "flag": True},
])
def test_never_touched(kwargs):
    dead = {kwargs.get("creator", CONTROLLER)}
    assert not is_orphan(row(**kwargs), dead_actor_ids=dead)
