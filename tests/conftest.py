# Copyright (c) mmrepvit contributors. Licensed under the Apache License 2.0.
import os
import socket

import pytest
import torch

# Keep the suite reproducible and light on a 2-core CI machine.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """A test that reaches the network is a bug: refuse any non-local socket."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        host = address[0] if isinstance(address, tuple) else address
        if isinstance(host, str) and not (
                host.startswith('127.') or host in ('localhost', '::1')
                or host.startswith('/')):
            raise RuntimeError(f'test tried to reach the network: {address}')
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, 'connect', guarded)
