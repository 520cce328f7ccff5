"""Test doubles for profile inputs: text lines with axis-aligned boxes (any object with text/confidence/polygon)."""

from __future__ import annotations

from dataclasses import dataclass

from service.vision.ctc import CharEvidence


@dataclass(frozen=True)
class Line:
    text: str
    confidence: float
    polygon: list[tuple[float, float]]


def line(text: str, x0: float, y0: float, x1: float, y1: float, conf: float = 0.95) -> Line:
    return Line(text, conf, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)])


def column(texts: list[str], x0: float = 50, y0: float = 40, height: float = 20, gap: float = 8,
           width_per_char: float = 10) -> list[Line]:
    """Lines stacked top to bottom, left-aligned, as on a receipt."""
    out = []
    for i, t in enumerate(texts):
        y = y0 + i * (height + gap)
        out.append(line(t, x0, y, x0 + max(len(t), 1) * width_per_char, y + height))
    return out


@dataclass(frozen=True)
class EvidenceLine(Line):
    """A line as the pipeline returns it: with the recogniser's per-character evidence."""

    char_evidence: tuple[CharEvidence, ...] = ()


def evidence_line(text: str, x0: float, y0: float, x1: float, y1: float, conf: float = 0.95,
                  probs: dict[int, float] | None = None, alts: dict[int, list[tuple[str, float]]] | None = None,
                  centres: list[int] | None = None) -> EvidenceLine:
    """A line whose characters were read with probability 0.99 (``probs``: others by index), with ``alts`` as their
    CTC alternatives, one time step wide at ``centres`` (default every second step)."""
    probs, alts = probs or {}, alts or {}
    centres = centres or [2 * i for i in range(len(text))]
    chars = tuple(CharEvidence(((c, probs.get(i, 0.99)), *alts.get(i, [])), centres[i], centres[i])
                  for i, c in enumerate(text))
    return EvidenceLine(text, conf, [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], chars)
