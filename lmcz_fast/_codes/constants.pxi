# Included by lmcz_fast/_codes.pyx (one compilation unit with it and its other .pxi files): limits, the core's error
# codes and their reasons, kinds, repairs.

cdef enum:
    RAW_MAX = 2048       # bytes looked at, at all: longer input is refused before any other work
    SCAN_MAX = 512       # characters of a normalised, trimmed scan
    SERIAL_MAX = 20
    TAIL_MAX = 12
    GS = 0x1D
    PH_NONE = 0x7FFF     # ph_from meaning: every GS placeholder made of code characters stays text
    PH_MAX = 16          # more such placeholders than this in one scan: refused (no code has that many GS)

# Negative return codes of the core; REASONS[-code - 1] is the CodeError.reason string.
cdef enum:
    E_EMPTY = -1
    E_TOO_LONG = -2
    E_INVALID_UTF8 = -3
    E_BAD_CHARACTER = -4
    E_TRUNCATED = -5
    E_BAD_GTIN_CHECK_DIGIT = -6
    E_MISSING_SERIAL = -7
    E_SERIAL_TOO_LONG = -8
    E_AMBIGUOUS_SERIAL = -9
    E_UNKNOWN_AI = -10
    E_BAD_TAIL = -11
    E_DUPLICATE_AI = -12
    E_UNKNOWN_FORMAT = -13
    E_MIXED_LAYOUT = -14

READINGS = READINGS_MAX     # the most readings of one scan (`readings_of`); a scan with more is refused

REASONS = (
    "empty",
    "too_long",
    "invalid_utf8",
    "bad_character",
    "truncated",
    "bad_gtin_check_digit",
    "missing_serial",
    "serial_too_long",
    "ambiguous_serial",
    "unknown_ai",
    "bad_tail",
    "duplicate_ai",
    "unknown_format",
    "mixed_layout",
)

_MESSAGES = {
    "empty": "the scan is empty",
    "too_long": "the scan is longer than any marking code",
    "invalid_utf8": "the scan is not valid text (malformed UTF-8 or an unpaired surrogate)",
    "bad_character": "a character that no marking code contains",
    "truncated": "the scan ends before the code is complete",
    "bad_gtin_check_digit": "the GTIN's check digit is wrong",
    "missing_serial": "no serial (AI 21) right after the GTIN",
    "serial_too_long": "the serial is longer than 20 characters and no GS ends it",
    "ambiguous_serial": "the GS after the serial is missing and the serial's length cannot be told",
    "unknown_ai": "an application identifier this parser does not know",
    "bad_tail": "a malformed value after the serial",
    "duplicate_ai": "an application identifier appears twice",
    "unknown_format": "neither a GS1 element string nor a tobacco pack code",
    "mixed_layout": "Latin and Cyrillic letters mixed: the keyboard layout cannot be undone",
}

cdef enum:
    K_GS1 = 1
    K_TOBACCO_PACK = 2
    K_TOBACCO_CIS = 3

KINDS = ("gs1", "tobacco_pack", "tobacco_pack_cis")

cdef enum:
    R_SYMBOLOGY = 1
    R_FNC1 = 2
    R_NEWLINE = 4
    R_WHITESPACE = 8
    R_TRAILING_GS = 16
    R_ESCAPED_GS = 32
    R_CYRILLIC = 64
    R_LOST_GS = 128
    R_BASE64 = 256
    R_TAIL_CUT = 512        # readings_of(tail_cut=True): the scan ends inside a tail AI after a GS; that AI is dropped
    R_PH_SEEN = 1 << 30     # not a repair: a parse loop read an ambiguous GS placeholder as code characters

REPAIRS = (
    "symbology_prefix",
    "leading_fnc1",
    "trailing_newline",
    "whitespace",
    "trailing_gs",
    "escaped_gs",
    "cyrillic_layout",
    "lost_gs",
    "base64",
    "tail_cut",
)
