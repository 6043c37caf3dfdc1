"""The hall hub: store, ingest, stats, provisioning, broker, HTTP API and CLI."""
