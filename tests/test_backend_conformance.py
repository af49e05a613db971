"""Backend conformance: :class:`embstore.testing.store_suite.StoreTests` on every backend.

Each subclass only says how to make a fresh path: local Zarr, in-memory
Zarr through fsspec (``memory://``), HDF5, and Zarr on S3 (a moto server on
the loopback address; skipped when moto or s3fs is missing).
"""

from __future__ import annotations

import logging
import socket
import uuid

import pytest

from embstore.testing.store_suite import StoreTests


class TestLocalZarr(StoreTests):
    @pytest.fixture
    def path(self, tmp_path):
        return str(tmp_path / "run.zarr")


class TestMemoryZarr(StoreTests):
    @pytest.fixture
    def path(self):
        return f"memory://conformance/{uuid.uuid4().hex}/run.zarr"


class TestHDF5(StoreTests):
    @pytest.fixture
    def path(self, tmp_path):
        return str(tmp_path / "run.h5")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint():
    """An S3 API server (moto) on the loopback address with one bucket."""
    pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    import s3fs

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with pytest.MonkeyPatch.context() as mp:
        for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            mp.setenv(k, "testing")
        mp.setenv("AWS_DEFAULT_REGION", "us-east-1")
        server = moto_server.ThreadedMotoServer(
            ip_address="127.0.0.1", port=_free_port(), verbose=False
        )
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        try:
            s3fs.S3FileSystem(key="testing", secret="testing", endpoint_url=endpoint).mkdir(
                "conformance"
            )
            yield endpoint
        finally:
            server.stop()


class TestS3Zarr(StoreTests):
    @pytest.fixture
    def path(self, s3_endpoint):
        return f"s3://conformance/{uuid.uuid4().hex}/run.zarr"

    @pytest.fixture
    def storage_options(self, s3_endpoint):
        return {"key": "testing", "secret": "testing", "endpoint_url": s3_endpoint}
