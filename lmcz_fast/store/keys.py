"""How rows are keyed: packed GTINs, varint block ids, the GTIN index array, cutting a list of codes to keys."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from .._codes import CodeError
from .._probe import keys_and_hashes


def gtin_problem(gtin: str) -> str | None:
    """Why `gtin` is not a valid GTIN-14, or None. The check digit is GS1's mod-10 with weights 3,1,3..."""
    if len(gtin) != 14 or not gtin.isascii() or not gtin.isdigit():
        return "a GTIN is 14 digits"
    total = sum(int(d) * (3 if i % 2 == 0 else 1) for i, d in enumerate(gtin[:13]))
    if (10 - total % 10) % 10 != int(gtin[13]):
        return "the GTIN's check digit is wrong"
    return None


def pack_gtin(gtin: str) -> bytes:
    problem = gtin_problem(gtin)
    if problem is not None:
        reason = "bad_gtin_check_digit" if "check digit" in problem else "bad_gtin"
        raise CodeError(reason, None, f"{problem}: {gtin!r}")
    return int(gtin).to_bytes(6, "big")


def encode_block_id(block_id: int) -> bytes:
    """Block ids are varints, and id 0 (a load's default block) is the empty value, to keep 900k rows small."""
    if block_id == 0:
        return b""
    out = bytearray()
    while True:
        byte = block_id & 0x7F
        block_id >>= 7
        if block_id:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def decode_block_id(value: bytes | memoryview) -> int:
    result = 0
    shift = 0
    for byte in bytes(value):
        result |= (byte & 0x7F) << shift
        shift += 7
    return result


def gtin_index(packed_gtins: Iterable[bytes]) -> bytes:
    """The blocked GTINs as a sorted little-endian uint64 array, probed in place by the compiled side."""
    return b"".join(int.from_bytes(key, "big").to_bytes(8, "little") for key in packed_gtins)


def cut_all(raws: Iterable[str | bytes], what: str) -> tuple[list[bytes], Any]:
    items = list(raws)
    keys, hashes, errors = keys_and_hashes(items)
    if errors:
        index, reason, message = errors[0]
        raise CodeError(reason, None, f"{what}[{index}] {items[index]!r}: {message} ({len(errors)} bad in all)")
    return keys, hashes
