"""The proxy's lean hot path: a raw asyncio protocol in front of aiohttp that relays the
happy path of ``<prefix>/proxy/`` itself and hands every other request to aiohttp.
See front.py for how a connection moves between the two."""

from .listener import FastPath

__all__ = ["FastPath"]
