"""Data shipped with the collector: the default mission inventory (inventory.yaml) and the
script that generates it (make_default_inventory.py)."""
