"""The orphaned-placement-group sweep removes exactly the groups whose creating actor died."""

from __future__ import annotations

import time


def test_sweep_removes_groups_of_dead_actors_only(ray_session):
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group

    from llmops_ray.tune.cleanup import orphaned_placement_groups, remove_orphaned_placement_groups

    @ray.remote(num_cpus=0)
    class Creator:
        def make(self):
            pg = placement_group([{"CPU": 0.05}])
            ray.get(pg.ready(), timeout=60)
            return pg.id.hex()

    driver_pg = placement_group([{"CPU": 0.05}])  # made by the driver: never an orphan
    ray.get(driver_pg.ready(), timeout=60)
    alive, dying = Creator.remote(), Creator.remote()
    alive_pg = ray.get(alive.make.remote())
    orphan_pg = ray.get(dying.make.remote())
    ray.kill(dying)
    deadline = time.time() + 30
    while orphan_pg not in orphaned_placement_groups() and time.time() < deadline:
        time.sleep(0.2)
    orphans = orphaned_placement_groups()
    assert orphan_pg in orphans
    assert alive_pg not in orphans and driver_pg.id.hex() not in orphans
    assert remove_orphaned_placement_groups() >= 1
    assert orphan_pg not in orphaned_placement_groups()
    table = ray.util.placement_group_table()
    assert table[orphan_pg]["state"] == "REMOVED"
    assert table[alive_pg]["state"] == "CREATED" and table[driver_pg.id.hex()]["state"] == "CREATED"
    remove_placement_group(driver_pg)
    ray.kill(alive)
