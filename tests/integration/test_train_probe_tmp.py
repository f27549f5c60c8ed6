def test_probe(ray_session):
    import os
    print(os.environ.get("RAY_AUTH_MODE"), ray_session.cluster_resources())
