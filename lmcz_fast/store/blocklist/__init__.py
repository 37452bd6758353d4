"""`Blocklist`: the blocked marking codes of one store, in one LMDB environment, by job: public.py (`Blocklist`,
the hot path's Python half and the public calls over the store's parts) and creation.py (a new store on disk: its
first transaction, a build moved into place)."""

from .public import Blocklist

__all__ = ["Blocklist"]
