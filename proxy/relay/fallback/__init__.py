"""The aiohttp relay: every request the fast path hands over."""
