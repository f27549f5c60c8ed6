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


def test_sweep_ends_cleaners_whose_controller_died_only(ray_session):
    import os

    import ray

    from llmops_ray.tune.cleanup import kill_stale_placement_group_cleaners, stale_placement_group_cleaners

    class PlacementGroupCleaner:
        """Stands in for Train V2's detached cleaner: the sweep knows it by its class name."""

        def pid(self):
            import os

            return os.getpid()

    @ray.remote(num_cpus=0)
    class Controller:
        def start_cleaner(self):
            # Detached, unnamed, created by this actor: what Train's controller does.
            self.cleaner = ray.remote(num_cpus=0)(PlacementGroupCleaner).options(lifetime="detached").remote()
            return ray.get(self.cleaner.pid.remote())

    def running(pid: int) -> bool:
        try:
            os.kill(pid, 0)
            return True
        except ProcessLookupError:
            return False

    alive, dying = Controller.remote(), Controller.remote()
    kept_pid = ray.get(alive.start_cleaner.remote())
    stale_pid = ray.get(dying.start_cleaner.remote())
    assert not stale_placement_group_cleaners()  # both controllers alive: nothing is stale
    ray.kill(dying)
    deadline = time.time() + 30
    while not stale_placement_group_cleaners() and time.time() < deadline:
        time.sleep(0.2)
    assert [pid for _, pid in stale_placement_group_cleaners()] == [stale_pid]
    assert kill_stale_placement_group_cleaners() == 1
    deadline = time.time() + 30
    while running(stale_pid) and time.time() < deadline:
        time.sleep(0.2)
    assert not running(stale_pid) and running(kept_pid)
    assert not stale_placement_group_cleaners()
    ray.kill(alive)  # its detached cleaner outlives it: now stale, and swept like the other
    deadline = time.time() + 30
    while not stale_placement_group_cleaners() and time.time() < deadline:
        time.sleep(0.2)
    assert kill_stale_placement_group_cleaners() == 1
