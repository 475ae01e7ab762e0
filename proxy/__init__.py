"""The data path and the HTTP surface: sessions, authorization, route table, HTTP and
WebSocket relays, the aiohttp app and the CLI."""

__version__ = "0.1.0"
