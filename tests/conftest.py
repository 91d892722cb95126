# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]

# Keep the suite reproducible and light on a 2-core CI machine.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """A test that reaches the network is a bug: refuse any non-local
    socket."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (
                host.startswith('127.') or host in ('localhost', '::1')
                or host.startswith('/')):
            raise RuntimeError(f'test tried to reach the network: {address}')
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, 'connect', guarded)


@pytest.fixture
def served(tmp_path, monkeypatch):
    """An http server on 127.0.0.1 serving ``tmp_path / 'served'``; URL
    downloads are cached in ``tmp_path / 'hub'``."""
    import functools
    import threading
    from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

    class Quiet(SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    root = tmp_path / 'served'
    root.mkdir()
    monkeypatch.setattr(torch.hub, 'get_dir', lambda: str(tmp_path / 'hub'))
    server = ThreadingHTTPServer(
        ('127.0.0.1', 0), functools.partial(Quiet, directory=str(root)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield root, f'http://127.0.0.1:{server.server_address[1]}'
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope='session')
def demo_data(tmp_path_factory):
    """Each tiny demo dataset (4 train / 2 val images of 128x128), generated
    once per test session by the real generators."""
    root = tmp_path_factory.mktemp('demo_data')
    for task in ('det', 'seg'):
        generator = (REPO / 'tools' / 'dataset_converters' /
                     f'make_demo_{"coco" if task == "det" else "ade"}.py')
        subprocess.run([sys.executable, str(generator), '--out',
                        str(root / task), '--num-train', '4', '--num-val', '2',
                        '--size', '128'], check=True, capture_output=True)
    return root
