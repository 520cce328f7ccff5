"""Which generator makes which (domain, kind), and a lazy sequence of synthetic samples for training."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import overload

import numpy as np

from training.data.samples import DetSample, RecSample
from training.data.synth import DOMAINS, KINDS
from training.data.synth.common import sample_seed
from training.data.synth.ids import id_line, id_page
from training.data.synth.plates import plate_line, plate_scene
from training.data.synth.receipts import document_page, receipt_line

GENERATORS: dict[tuple[str, str], Callable[[np.random.Generator], RecSample | DetSample]] = {
    ("plates", "lines"): plate_line,
    ("plates", "pages"): plate_scene,
    ("receipts", "lines"): receipt_line,
    ("receipts", "pages"): document_page,
    ("ids", "lines"): id_line,
    ("ids", "pages"): id_page,
}


def generate(domain: str, kind: str, seed: int, index: int) -> RecSample | DetSample:
    """Sample ``index`` of run ``seed``: the same (domain, kind, seed, index) always gives the same sample.

    ``lines`` gives a RecSample (a cropped line), ``pages`` a DetSample (scene/page with line quads).
    """
    try:
        fn = GENERATORS[(domain, kind)]
    except KeyError:
        raise ValueError(f"no generator for domain={domain!r} kind={kind!r}; domains {DOMAINS}, kinds {KINDS}") from None
    return fn(sample_seed(seed, index))


class SyntheticSamples(Sequence):
    """``n`` synthetic samples rendered on access (nothing stored): ``SyntheticSamples("plates", "lines", 1000)[i]``.

    Rendering is deterministic per index, so DataLoader workers and resumed runs see identical data.
    """

    def __init__(self, domain: str, kind: str, n: int, seed: int = 0, start: int = 0) -> None:
        if (domain, kind) not in GENERATORS:
            raise ValueError(f"no generator for domain={domain!r} kind={kind!r}")
        self.domain, self.kind, self.n, self.seed, self.start = domain, kind, int(n), int(seed), int(start)

    def __len__(self) -> int:
        return self.n

    @overload
    def __getitem__(self, i: int) -> RecSample | DetSample: ...
    @overload
    def __getitem__(self, i: slice) -> list[RecSample | DetSample]: ...

    def __getitem__(self, i):
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(self.n))]
        if i < 0:
            i += self.n
        if not 0 <= i < self.n:
            raise IndexError(i)
        return generate(self.domain, self.kind, self.seed, self.start + i)
