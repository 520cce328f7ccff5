"""Word corrections from a bundle's lexicon, made only where the recogniser itself offered the word.

A read word that is not in the lexicon (the words of the bundle's training transcripts, each seen at least twice)
becomes one that is when at most ``max_changes`` of its characters turn into their own CTC alternatives, each with
at least ``close_ratio`` of the read character's probability, and exactly one such word is cheapest (the summed log
probability ratios). Words of under ``min_length`` characters, and words already in the lexicon, never change. So
``RECSIVED`` (E a close second to S) becomes ``RECEIVED``, while a name the lexicon lacks, read with confidence,
stays as read. The 0.1 ratio is the plate profile's (``CLOSE_RATIO``): a change needs the recogniser to have
given the alternative real weight, not just the lexicon to prefer it.
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

from service.vision.ctc import CharEvidence, Decoded

__all__ = ["Lexicon"]


@dataclass(frozen=True)
class Lexicon:
    words: frozenset[str]  # upper-case
    close_ratio: float = 0.1
    max_changes: int = 2
    min_length: int = 3

    @classmethod
    def from_words(cls, words: Iterable[str], **kw) -> Lexicon:
        return cls(frozenset(w.upper() for w in words), **kw)

    @classmethod
    def load(cls, path: str | Path) -> Lexicon:
        """``{"words": [...], "close_ratio": 0.1, ...}`` as ``ocrnet lexicon`` writes it."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        settings = {k: data[k] for k in ("close_ratio", "max_changes", "min_length") if k in data}
        return cls.from_words(data["words"], **settings)

    def __contains__(self, word: str) -> bool:
        return word.upper() in self.words

    def correct(self, decoded: Decoded) -> Decoded:
        """``decoded`` with its unknown words corrected where the evidence allows; the same object when nothing
        changes (or when it carries no per-character evidence). A changed character's alternatives are reordered
        so the one now in the text comes first, and the confidences follow it."""
        text, chars = decoded.text, decoded.chars
        if len(chars) != len(text):
            return decoded
        changed: dict[int, int] = {}  # text position -> index of the alternative now read
        for word in re.finditer(r"\S+", text):
            if len(word.group()) >= self.min_length and word.group() not in self:
                changed.update(self._best_rewrite(word.start(), word.group(), chars))
        if not changed:
            return decoded
        new_chars = list(chars)
        for k, a in changed.items():
            alts = list(chars[k].alternatives)
            alts.insert(0, alts.pop(a))
            new_chars[k] = CharEvidence(tuple(alts), chars[k].start, chars[k].end)
        upper = {k for k in changed if text[k].isupper()}
        new_text = "".join(c.char.upper() if k in upper else c.char if k in changed else text[k]
                           for k, c in enumerate(new_chars))
        confidences = tuple(c.probability if k in changed else p
                            for k, (c, p) in enumerate(zip(new_chars, decoded.char_confidences)))
        return replace(decoded, text=new_text, chars=tuple(new_chars), char_confidences=confidences,
                       confidence=sum(confidences) / len(confidences))

    def _best_rewrite(self, start: int, word: str, chars: tuple[CharEvidence, ...]) -> dict[int, int]:
        """{text position: alternative index} of the one cheapest rewrite into a lexicon word, or {}."""
        options = []  # (position, [(alternative index, cost)])
        for k in range(start, start + len(word)):
            ev = chars[k]
            read_p = ev.probability
            close = [(a, math.log(max(read_p, 1e-9) / max(p, 1e-9)))
                     for a, (c, p) in enumerate(ev.alternatives) if a > 0 and len(c) == 1 and not c.isspace()
                     and c.upper() != word[k - start].upper() and p >= self.close_ratio * read_p]
            if close:
                options.append((k, close))
        found: dict[str, tuple[float, dict[int, int]]] = {}
        for n in range(1, self.max_changes + 1):
            for combo in itertools.combinations(options, n):
                for picks in itertools.product(*(alts for _, alts in combo)):
                    letters = list(word)
                    for (k, _), (a, _) in zip(combo, picks):
                        letters[k - start] = chars[k].alternatives[a][0]
                    candidate = "".join(letters).upper()
                    cost = sum(c for _, c in picks)
                    if candidate in self.words and (candidate not in found or cost < found[candidate][0]):
                        found[candidate] = (cost, {k: a for (k, _), (a, _) in zip(combo, picks)})
        ranked = sorted(found.values(), key=lambda item: item[0])
        if not ranked or (len(ranked) > 1 and math.isclose(ranked[0][0], ranked[1][0])):
            return {}
        return ranked[0][1]
