import array
from collections.abc import Iterable

def prepare_full_load(
    keys: list[bytes], hashes: array.array[int]
) -> tuple[array.array[int], list[bytes], array.array[int], dict[int, int], tuple[int, int]]: ...
def cut_cis_lines(
    lines: Iterable[str | bytes],
) -> tuple[list[bytes], array.array[int], list[tuple[int, str, str]]]: ...
