"""Moving bytes to and from workspaces: the fast path, the aiohttp fallback, the header rules."""
