"""What `faceindex serve` needs from the service besides the app: the ASGI server's options and the bind check."""

from __future__ import annotations

import ipaddress

from faceindex.service.config import ServiceConfig
from faceindex.service.keys import KeyStore


def is_loopback(host: str) -> bool:
    """True for localhost and loopback addresses; any other name or address counts as reachable from outside."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def uvicorn_options(config: ServiceConfig) -> dict:
    """Keyword arguments for `uvicorn.run` about proxies.

    uvicorn trusts `X-Forwarded-For` from 127.0.0.1 by default, so any local process (or a client behind
    a local tunnel) could pose as any address and escape per-address limits. The header is honoured only
    from the proxies configured in `trusted_proxies`; with none, it is ignored.
    """
    if not config.trusted_proxies:
        return {"proxy_headers": False, "forwarded_allow_ips": ""}
    return {"proxy_headers": True, "forwarded_allow_ips": ",".join(config.trusted_proxies)}


def bind_refusal(host: str, keys: KeyStore) -> str | None:
    """Why the service must not listen on `host`, or None when it may.

    Beyond loopback, an admin key whose secret someone holds must exist: the `initial-admin` key made at the
    first start does not count, as its secret was never shown (only a one-time link to the local console).
    """
    if is_loopback(host) or keys.count_active("admin", held_secrets_only=True) > 0:
        return None
    return (f"refusing to listen on {host}: a non-loopback address needs an admin key whose secret you hold "
            "(the initial-admin key made at the first start has none). Create one with "
            "`faceindex keys create --role admin --name NAME`.")
