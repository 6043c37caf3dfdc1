"""The console's reading pages (SPEC section 12): Today, windows and staff, devices, upstream.

Each page has a data module that reads the counters and small tables only (never the events of a
period: a page costs the same after ten years as after ten days) and returns typed objects, and
:mod:`.render` turns those objects into HTML fragments with Chinese labels and server-side SVG
charts (:mod:`.charts`; hall networks are offline, so no CDN and no script library).
"""
