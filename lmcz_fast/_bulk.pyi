import array

def prepare_full_load(
    keys: list[bytes], hashes: array.array[int]
) -> tuple[array.array[int], list[bytes], array.array[int], dict[int, int], tuple[int, int]]: ...
