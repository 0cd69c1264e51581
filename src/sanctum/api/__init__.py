"""The HTTP API: FastAPI routers per area, one dependency module, one error shape."""
