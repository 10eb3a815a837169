"""The transport: the client's configuration, the one aiohttp session (auth, proxies, retries), the
rate limiter, the server's clock, downloads to disk, the postback receiver; and `api`, single
calls of the API on top of them. Nothing here knows about jobs in flight or output folders."""
