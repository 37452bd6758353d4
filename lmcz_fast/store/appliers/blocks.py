"""The block details applier."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import lmdb

from ..environment import DB_BLOCKS
from ..keys import decode_block_id, encode_block_id
from .plan import Plan


class Blocks:
    """Block details (`blocks`: id -> JSON authority, reason, since, source)."""

    def __init__(self, dbs: dict[bytes, Any]) -> None:
        self._db = dbs[DB_BLOCKS]

    def replace(self, txn: lmdb.Transaction, blocks: Mapping[int, dict[str, str]]) -> None:
        txn.drop(self._db, delete=False)
        for block_id, details in blocks.items():
            txn.put(block_id.to_bytes(4, "big"), json.dumps(details).encode(), db=self._db)

    def add(self, txn: lmdb.Transaction, plan: Plan, own_block: bool) -> bytes:
        """Store the change's block details under new ids, re-pointing the plan's values at them; returns the value
        of the change's own `block` (b"" without one)."""
        if plan.block is None and not plan.new_blocks:
            return b""
        next_id = self._next_id(txn)
        remap: dict[int, int] = {}
        for old_id, details in plan.new_blocks.items():
            remap[old_id] = next_id
            txn.put(next_id.to_bytes(4, "big"), json.dumps(details).encode(), db=self._db)
            next_id += 1
        block_value = b""
        if plan.block is not None and own_block:
            txn.put(next_id.to_bytes(4, "big"), json.dumps(dict(plan.block)).encode(), db=self._db)
            block_value = encode_block_id(next_id)
        plan.add_values = [encode_block_id(remap.get(decode_block_id(v), 0)) if v else block_value
                           for v in plan.add_values]
        plan.gtins = [(key, encode_block_id(remap.get(decode_block_id(v), 0)) if v else block_value)
                      if v is not None else (key, v) for key, v in plan.gtins]
        return block_value

    def _next_id(self, txn: lmdb.Transaction) -> int:
        with txn.cursor(db=self._db) as cursor:
            if cursor.last():
                return int.from_bytes(cursor.key(), "big") + 1
        return 1
