"""Offline IndoxRouter look-alike: lets the project run with no key and no network, and lets
tests talk real HTTP over loopback (with latency, random failures and scripted faults).

    from indox_jupyter.local import LocalServer, Fault
    with LocalServer(latency=0.1) as srv:
        srv.script(Fault(status=503, headers={"Retry-After": "1"}))
        ...  # point a client at srv.url with any API key
"""

from __future__ import annotations

from .faults import Fault
from .server import LocalServer, serve, shared_server

__all__ = ["Fault", "LocalServer", "serve", "shared_server"]
