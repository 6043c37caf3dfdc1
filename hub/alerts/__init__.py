"""Alerts: rules evaluated by the hub daemon, a lifecycle in the store, webhook notifications."""
