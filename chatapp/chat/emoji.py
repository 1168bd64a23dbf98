"""Is a string exactly one emoji? For reactions: any single emoji, nothing else.

An emoji is one of the sequences Unicode's emoji spec (UTS #51) defines: a
pictograph with an optional presentation selector and skin tone, several of
those joined by ZERO WIDTH JOINER (families, professions), a flag (two
regional indicators), a keycap (`1️⃣`), or a tag sequence (the flags of
England or Scotland). The pictograph ranges are those of the
Extended_Pictographic property, a little wider in the old symbol blocks:
accepting a dingbat that is not strictly an emoji is harmless, refusing
tomorrow's emoji is not (so whole unassigned blocks are in).
"""

from __future__ import annotations

MAX_CODE_POINTS = 24  # the longest family sequences are about 11

_PICTOGRAPHS = (
    (0x00A9, 0x00A9),
    (0x00AE, 0x00AE),
    (0x203C, 0x203C),
    (0x2049, 0x2049),
    (0x2122, 0x2122),
    (0x2139, 0x2139),
    (0x2194, 0x21AA),
    (0x231A, 0x23FF),
    (0x24C2, 0x24C2),
    (0x25AA, 0x25FE),
    (0x2600, 0x27BF),
    (0x2934, 0x2935),
    (0x2B05, 0x2B55),
    (0x3030, 0x3030),
    (0x303D, 0x303D),
    (0x3297, 0x3299),
    (0x1F000, 0x1F1E5),  # below the regional indicators
    (0x1F200, 0x1FAFF),
    (0x1FC00, 0x1FFFD),
)
_ZWJ = 0x200D
_TEXT_STYLE, _EMOJI_STYLE = 0xFE0E, 0xFE0F
_KEYCAP = 0x20E3
_SKIN_TONES = range(0x1F3FB, 0x1F400)
_REGIONAL = range(0x1F1E6, 0x1F200)
_TAGS = range(0xE0020, 0xE007F)
_CANCEL_TAG = 0xE007F
_KEYCAP_BASES = frozenset(map(ord, "0123456789#*"))


def _pictograph(cp: int) -> bool:
    return any(low <= cp <= high for low, high in _PICTOGRAPHS) and cp not in _SKIN_TONES


def is_single_emoji(text: str) -> bool:
    points = [ord(c) for c in text]
    if not points or len(points) > MAX_CODE_POINTS:
        return False
    if len(points) == 2 and all(p in _REGIONAL for p in points):
        return True  # a flag
    if points[0] in _KEYCAP_BASES:  # a keycap: digit, optional U+FE0F, U+20E3
        return points[1:] in ([_KEYCAP], [_EMOJI_STYLE, _KEYCAP])
    if len(points) > 2 and points[-1] == _CANCEL_TAG and all(p in _TAGS for p in points[1:-1]):
        return _pictograph(points[0])  # a tag sequence (a subdivision flag)
    return _zwj_sequence(points)


def _zwj_sequence(points: list[int]) -> bool:
    """Pictographs, each with an optional style and skin tone, joined by ZWJ."""
    i, n = 0, len(points)
    while True:
        if i >= n or not _pictograph(points[i]):
            return False
        i += 1
        if i < n and points[i] in (_TEXT_STYLE, _EMOJI_STYLE):
            i += 1
        if i < n and points[i] in _SKIN_TONES:
            i += 1
        if i < n and points[i] == _EMOJI_STYLE:
            i += 1
        if i == n:
            return True
        if points[i] != _ZWJ:
            return False
        i += 1
