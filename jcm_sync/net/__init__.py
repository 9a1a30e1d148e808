"""Network adapters: the aiohttp server and client, and RFC 9421 request authentication."""
