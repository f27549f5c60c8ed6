"""Free the worker placement groups (and end the cleaner actors) of trials Ray Tune stopped early.

When ASHA stops a trial, Tune ends the trial actor; the Ray Train controller that actor
owns dies with it, before it can remove its workers' placement group. Train V2's
detached ``PlacementGroupCleaner`` should then remove it, but it asks the State API,
which needs the dashboard (off in our local clusters; and with several local Ray
instances on one machine it cannot even pick the address). The orphaned group keeps
its 0.99 CPU reserved, so on 2 CPUs the next trials wait forever.

An orphan is recognised exactly from the GCS tables: a placement group that is still
``CREATED``, not detached, created by an actor, and whose creator actor is dead (by the
group's own flag or by the actor table, see ``is_orphan``). Tune's own trial groups are
created by the driver and are never touched.

The cleaner itself never exits then either: without the State API it logs "Failed to query
Ray Train Controller actor state" every second, forever, in a process of its own (~0.7% of
a core and ~200 MB each; a 4 x 32-trial ASHA benchmark had left 101 of them). A cleaner
whose controller (the actor that created it) is dead has nothing left to do: the sweep
ends it too, found in the GCS actor table by its creator's worker id.
"""

from __future__ import annotations

import time

from ray.tune import Callback

from llmops_ray.common.ray_compat import gcs_actor_rows, gcs_placement_group_rows, placement_group_by_id


def is_orphan(info, dead_actor_ids: set[bytes]) -> bool:
    """Whether a ``PlacementGroupTableData`` row is a live group whose creating actor died.

    The group's own ``creator_actor_dead`` flag is not enough: in a 4-seed ASHA benchmark two
    worker groups of dead Train controllers stayed ``CREATED`` with the flag still false (and
    0.99 CPU each held, so every later trial timed out waiting for its workers), while the
    actor table had both controllers ``DEAD``. Either source marks the creator dead.
    """
    from ray.core.generated import gcs_pb2

    creator = info.creator_actor_id
    # A driver's creator id is the nil id (all 0xff), which GCS marks "dead" from the start:
    # driver-made groups (Tune's trial groups) are never orphans.
    by_actor = creator.strip(b"\xff").strip(b"\x00") != b""
    return (
        info.state == gcs_pb2.PlacementGroupTableData.CREATED
        and not info.is_detached
        and by_actor
        and (info.creator_actor_dead or creator in dead_actor_ids)
    )


def orphaned_placement_groups() -> list[str]:
    """Hex ids of live placement groups whose creating actor has died."""
    from ray.core.generated import gcs_pb2

    rows = gcs_placement_group_rows()
    # DEAD is final (an actor being restarted is RESTARTING).
    dead = {a.actor_id for a in gcs_actor_rows() if a.state == gcs_pb2.ActorTableData.DEAD}
    return [info.placement_group_id.hex() for info in rows if is_orphan(info, dead)]


def _live_cleaners():
    """(live ``PlacementGroupCleaner`` actors' table rows, worker ids of dead actors)."""
    from ray.core.generated import gcs_pb2

    alive, dead = gcs_pb2.ActorTableData.ALIVE, gcs_pb2.ActorTableData.DEAD
    actors = gcs_actor_rows()
    dead_workers = {a.address.worker_id for a in actors if a.state == dead and a.address.worker_id}
    return [a for a in actors if a.state == alive and a.class_name.endswith("PlacementGroupCleaner")], dead_workers


def stale_placement_group_cleaners() -> list[tuple[str, int]]:
    """``(node id hex, pid)`` of live Train V2 ``PlacementGroupCleaner`` actors whose creating
    controller is dead."""
    cleaners, dead_workers = _live_cleaners()
    # An actor's worker id is its process's; the cleaner's owner is the controller's worker.
    return [(a.address.node_id.hex(), a.pid) for a in cleaners if a.pid and a.owner_address.worker_id in dead_workers]


def _terminate(pid: int) -> None:
    import os
    import signal

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass


def kill_stale_placement_group_cleaners() -> int:
    """Terminate every stale cleaner's process; returns how many.

    The cleaner is detached and unnamed, so no handle to it can be had (``ray.kill`` needs
    one): its process is signalled instead, here when it runs on this node (Train puts it on
    the head node, where the Tune driver runs), else by a zero-CPU task pinned to its node.
    """
    import ray
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = ray.get_runtime_context().get_node_id()
    remote, killed = [], 0
    for node_id, pid in stale_placement_group_cleaners():
        if node_id == here:
            _terminate(pid)
        else:
            strategy = NodeAffinitySchedulingStrategy(node_id, soft=False)
            remote.append(ray.remote(num_cpus=0)(_terminate).options(scheduling_strategy=strategy).remote(pid))
        killed += 1
    if remote:
        ray.wait(remote, num_returns=len(remote), timeout=30)
    return killed


def remove_orphaned_placement_groups() -> int:
    """Remove every orphaned placement group; returns how many were removed."""
    from ray.util.placement_group import remove_placement_group

    removed = 0
    for hex_id in orphaned_placement_groups():
        try:
            remove_placement_group(placement_group_by_id(hex_id))
            removed += 1
        except Exception:  # noqa: BLE001 - already removed meanwhile
            pass
    return removed


def sweep() -> int:
    """Remove orphaned placement groups and end stale cleaners; returns the groups removed."""
    removed = remove_orphaned_placement_groups()
    kill_stale_placement_group_cleaners()
    return removed


class OrphanPlacementGroupSweeper(Callback):
    """Tune callback: sweep after every finished/stopped/errored trial and every few seconds."""

    def __init__(self, every_s: float = 5.0):
        self.every_s = every_s
        self._last = 0.0
        self.removed = 0

    def _sweep(self) -> None:
        self._last = time.monotonic()
        self.removed += sweep()

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._sweep()

    def on_trial_error(self, iteration, trials, trial, **info):
        self._sweep()

    def on_step_end(self, iteration, trials, **info):
        if time.monotonic() - self._last >= self.every_s:
            self._sweep()


def sweep_after_search(wait_s: float = 10.0) -> int:
    """After ``Tuner.fit``: the last stopped trial's controller may still be dying; sweep for a
    while (until 3 s pass with nothing removed and no cleaner left, at most ``wait_s``)."""
    removed, quiet_since = 0, time.monotonic()
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        n = sweep()
        removed += n
        if n or _live_cleaners()[0]:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since >= 3.0:
            break
        time.sleep(0.5)
    return removed
