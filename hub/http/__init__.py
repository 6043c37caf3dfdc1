"""The hub's HTTP API (SPEC section 5), served by the hub daemon with uvicorn."""
