"""The registry's records: the declared data model, and the SQL store that holds them.

`schema` reads the data model, `base` is the protocol every registry implements (this store
and the HTTP client alike), `sql` the SQLAlchemy store, `queries` the look-ups every layer
shares, `cache` a read-through cache for one command, `values` the field coercions.
"""
