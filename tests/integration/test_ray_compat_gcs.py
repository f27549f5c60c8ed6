"""The GCS readers and the Serve address of common/ray_compat.py against a real local Ray."""

from __future__ import annotations


def test_gcs_tables_list_a_live_actor_and_a_placement_group(ray_session):
    import ray
    from ray.core.generated import gcs_pb2
    from ray.util.placement_group import placement_group, remove_placement_group

    from llmops_ray.common.ray_compat import gcs_actor_rows, gcs_placement_group_rows, placement_group_by_id

    @ray.remote(num_cpus=0)
    class Probe:
        def ping(self):
            return "pong"

    probe = Probe.remote()
    assert ray.get(probe.ping.remote()) == "pong"
    pg = placement_group([{"CPU": 0.01}])
    ray.get(pg.ready())
    try:
        alive = [r for r in gcs_actor_rows() if r.actor_id.hex() == probe._actor_id.hex()]
        assert alive and alive[0].state == gcs_pb2.ActorTableData.ALIVE
        assert pg.id.hex() in {r.placement_group_id.hex() for r in gcs_placement_group_rows()}
        assert placement_group_by_id(pg.id.hex()).id == pg.id
    finally:
        remove_placement_group(pg)
        ray.kill(probe)


def test_serve_http_address_is_none_or_the_running_proxy(ray_session):
    from llmops_ray.common.ray_compat import serve_http_address

    address = serve_http_address()
    assert address is None or (isinstance(address[0], str) and address[1] > 0)
