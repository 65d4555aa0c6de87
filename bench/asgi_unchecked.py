"""Benchmark only: the gateway with permission checks off, for ``bench.gateway``'s on/off ratio.

    uvicorn bench.asgi_unchecked:app

``enforce_permissions=False`` is an argument of ``create_app``, never a setting or an
environment variable, so only this module (which no deployment serves) can turn checks off.
"""

from linkgate.app import create_app

app = create_app(enforce_permissions=False)
