"""Thin routers of the serving layer, one module per resource."""
