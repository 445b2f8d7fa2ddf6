"""One local Ray cluster (2 CPUs) for every distributed test: starting Ray takes ~5 s."""

import pytest

ray = pytest.importorskip("ray", reason="the distributed extra (ray) is not installed")


@pytest.fixture(scope="session")
def cluster():
    import logging

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, logging_level=logging.ERROR, log_to_driver=False)
    yield ray
    ray.shutdown()
