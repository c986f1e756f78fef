"""One real local super cluster shared by every e2e test of the session."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import pytest

from tispace import binaries, localcluster
from tispace.kube.client import Client


@pytest.fixture(scope="session")
def super_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[localcluster.SuperCluster]:
    binaries.ensure()
    cluster = localcluster.SuperCluster(tmp_path_factory.mktemp("super"))
    cluster.up()
    yield cluster
    cluster.down()


@pytest.fixture(scope="session")
async def super_client(super_cluster: localcluster.SuperCluster) -> AsyncIterator[Client]:
    client = Client.from_kubeconfig(super_cluster.kubeconfig, name="super")
    yield client
    await client.close()
