"""The web layer: pages, the socket handler, their guards, and the operational endpoints."""
