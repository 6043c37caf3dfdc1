"""Upstream sync to the regional 好差评 system: outbox, adapters, signing, sender, totals."""
