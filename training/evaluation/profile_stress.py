"""Stress sets for the plate and id profiles: generated plates and MRZs read with OCR-like noise.

    python -m training.evaluation.profile_stress --n 2000                      # this checkout's profiles
    python -m training.evaluation.profile_stress --n 2000 --profiles-from ../main   # another checkout's (before)

Plates come from training/data/synth/plates.py (the synthetic mix: US, EU, BR) and from every fixed layout the
plate profile knows; MRZs from the ICAO builders via training/data/synth/ids.py persons (TD1, TD2, TD3). Each is
turned into the text lines a recogniser would return, with per-character evidence (CTC alternatives and time-step
spans) as service.vision.ctc.CharEvidence:
- clean: every character right; some (10 %) with a look-alike the recogniser found close (a doubted right read);
- noisy: 1-2 of O/0, I/1, 8/B, Z/2, S/5 swaps (the true character a close second for 'unsure' misreads, far
  behind for 'confident' ones), for MRZs also filler runs merged by CTC (read short) or read one too long, and a
  stray leading glyph.
Rates reported: clean reads the profile changed (must be 0 for known layouts), noisy reads it got right, changes it
made that are wrong, and for MRZs `valid: true` with wrong content (must be 0 where the recogniser's evidence holds
the truth; a confident misread no reader could see is reported apart).
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import re
import string
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from service.profiles.mrz import build_td2
from service.profiles.plate_layouts import PLATE_FORMATS, US_FORMATS, plate_key
from service.vision.ctc import CharEvidence
from training.data.synth.common import choice
from training.data.synth.ids import random_person
from training.data.synth.plates import random_plate_text
from training.evaluation.metrics import edit_distance

__all__ = ["LOOK_ALIKES", "SimLine", "mrz_sample", "plate_sample", "run_stress", "simulate_read"]

# The confusions (O/0, I/1, 8/B) and two more the check digits see. Not G/6: G (16) and 6 differ by 10, so
# the 7-3-1 mod-10 check digit cannot see that swap at all (nor A/0, B/1, K/0, ...): an ICAO limit, not a profile's.
LOOK_ALIKES = {"O": "0", "0": "O", "I": "1", "1": "I", "8": "B", "B": "8", "Z": "2", "2": "Z", "S": "5", "5": "S"}
_PITCH = 4  # time steps per character cell on the simulated line image
_FIRST = 2  # cell of the first character (room for a stray glyph before it)


@dataclass(frozen=True)
class SimLine:
    """A text line as the pipeline returns it (service.pipeline.TextLine's fields the profiles read)."""

    text: str
    confidence: float
    polygon: list[tuple[float, float]]
    char_confidences: tuple[float, ...] = ()
    char_evidence: tuple[CharEvidence, ...] = ()


@dataclass
class Read:
    """Characters read, each with its evidence, built cell by cell."""

    chars: list[str] = field(default_factory=list)
    evidence: list[CharEvidence] = field(default_factory=list)

    def add(self, c: str, alternatives: Sequence[tuple[str, float]], start: int, end: int) -> None:
        self.chars.append(c)
        self.evidence.append(CharEvidence(tuple(alternatives), start, end))

    def line(self, box: tuple[float, float, float, float], with_evidence: bool = True) -> SimLine:
        x0, y0, x1, y1 = box
        probs = tuple(e.alternatives[0][1] for e in self.evidence)
        return SimLine("".join(self.chars), float(np.mean(probs)) if probs else 0.0,
                       [(x0, y0), (x1, y0), (x1, y1), (x0, y1)], probs,
                       tuple(self.evidence) if with_evidence else ())


def _right(rng: np.random.Generator, c: str) -> list[tuple[str, float]]:
    """A right read: confident, or (1 in 10) with a look-alike the recogniser found close."""
    p = float(rng.uniform(0.9, 0.999))
    if c in LOOK_ALIKES and rng.random() < 0.1:
        return [(c, p), (LOOK_ALIKES[c], p * float(rng.uniform(0.1, 0.9)))]
    return [(c, p)]


def _misread(rng: np.random.Generator, c: str, confident: bool) -> tuple[str, list[tuple[str, float]]]:
    """A look-alike read for `c`, the truth a close second (unsure) or far behind (confident)."""
    p = float(rng.uniform(0.5, 0.95))
    ratio = float(rng.uniform(0.001, 0.08)) if confident else float(rng.uniform(0.12, 0.9))
    return LOOK_ALIKES[c], [(LOOK_ALIKES[c], p), (c, p * ratio)]


def simulate_read(rng: np.random.Generator, truth: str, swaps: int, confident: float = 0.3,
                  merge_fillers: int = 0, double_fillers: int = 0, stray: bool = False) -> tuple[Read, Counter]:
    """`truth` as a recogniser reads it: `swaps` look-alike misreads (each 'confident' with that probability),
    `merge_fillers` '<' runs CTC merged into one character, `double_fillers` runs read one '<' too long, a stray
    leading glyph. Returns the read and what was done."""
    done: Counter = Counter()
    alike = [i for i, c in enumerate(truth) if c in LOOK_ALIKES]
    swap_at = set(rng.choice(alike, size=min(swaps, len(alike)), replace=False).tolist()) if alike else set()
    runs = [(m.start(), m.end()) for m in re.finditer(r"<{2,}", truth)]
    order = [runs[i] for i in rng.permutation(len(runs))]
    merged = set(order[:merge_fillers])
    doubled = set(order[merge_fillers:merge_fillers + double_fillers])
    read = Read()
    if stray:
        g = choice(rng, ("1", "I", "K", "4", "L"))
        cell = _FIRST - int(rng.integers(1, 3))  # next to the text, or one empty cell before it
        read.add(g, [(g, float(rng.uniform(0.2, 0.9)))], cell * _PITCH + 1, cell * _PITCH + 2)
        done["stray"] += 1
    i = 0
    while i < len(truth):
        run = next(((a, b) for a, b in merged | doubled if a == i), None)
        if run is not None:
            a, b = run
            if run in merged:
                read.add("<", [("<", float(rng.uniform(0.9, 0.999)))], (_FIRST + a) * _PITCH + 1,
                         (_FIRST + b - 1) * _PITCH + 2)
                done["merged_fillers"] += 1
            else:
                n = b - a + 1
                for k in range(n):  # n characters over the run's b - a cells
                    step = (_FIRST + a) * _PITCH + int(k * (b - a) * _PITCH / n) + 1
                    read.add("<", [("<", float(rng.uniform(0.9, 0.999)))], step, step)
                done["doubled_fillers"] += 1
            i = b
            continue
        c = truth[i]
        if i in swap_at:
            confident_here = rng.random() < confident
            shown, alts = _misread(rng, c, confident_here)
            done["confident_swaps" if confident_here else "unsure_swaps"] += 1
        else:
            shown, alts = c, _right(rng, c)
        read.add(shown, alts, (_FIRST + i) * _PITCH + 1, (_FIRST + i) * _PITCH + 2)
        i += 1
    return read, done


# ---------------------------------------------------------------------------------------------------- plates

def _fill(rng: np.random.Generator, layout: str, letters: str = string.ascii_uppercase) -> str:
    return "".join(choice(rng, letters) if c == "L" else choice(rng, string.digits) if c == "D"
                   else choice(rng, letters + string.digits) if c == "A" else c for c in layout)


def plate_sample(rng: np.random.Generator) -> tuple[str, str]:
    """(printed plate, kind): half from the synthetic mix, half one of the profile's fixed or US layouts."""
    if rng.random() < 0.5:
        plate = random_plate_text(rng)
        return plate.printed, f"synth-{plate.country}"
    fmt = choice(rng, PLATE_FORMATS + US_FORMATS)
    letters = "".join(sorted(fmt.letters)) if fmt.letters else string.ascii_uppercase
    return _fill(rng, fmt.layout, letters), f"{fmt.country} {fmt.layout}"


def _plate_lines(read: Read, with_evidence: bool) -> list[SimLine]:
    return [read.line((380, 300, 620, 360), with_evidence)]


# ---------------------------------------------------------------------------------------------------- MRZ

def mrz_sample(rng: np.random.Generator, kind: str) -> list[str]:
    """Valid MRZ lines of a generated person: TD3 (passport), TD2 or TD1 (identity card)."""
    person = random_person(rng, "P" if kind == "TD3" else "I")
    if kind == "TD3":
        return list(person.td3())
    if kind == "TD1":
        return list(person.td1())
    return list(build_td2(person.doc_type, person.country, person.surname, person.given_names, person.number,
                          person.nationality, person.birth, person.sex, person.expiry, person.personal_number))


def _mrz_page(reads: list[Read], with_evidence: bool) -> list[SimLine]:
    head = Read()
    for k, c in enumerate("PASSPORT"):
        head.add(c, [(c, 0.99)], 2 * k, 2 * k)
    lines = [head.line((400, 40, 700, 80), with_evidence)]
    return lines + [r.line((40, 700 + 45 * i, 1160, 738 + 45 * i), with_evidence) for i, r in enumerate(reads)]


# ---------------------------------------------------------------------------------------------------- driver

def load_profiles(root: Path | None) -> Callable[[str], Any]:
    """`get_profile` of this checkout, or of the checkout at `root` (loaded under another package name)."""
    if root is None:
        from service.profiles import get_profile
        return get_profile
    pkg = root / "service"
    name = "stress_service_under_test"
    spec = importlib.util.spec_from_file_location(name, pkg / "__init__.py", submodule_search_locations=[str(pkg)])
    assert spec is not None and spec.loader is not None
    module: ModuleType = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return importlib.import_module(f"{name}.profiles").get_profile


def _rate(hits: int, n: int) -> str:
    return f"{hits}/{n} ({100 * hits / n:.2f} %)" if n else "0/0"


def run_stress(n: int, seed: int, get_profile: Callable[[str], Any], with_evidence: bool = True
               ) -> dict[str, dict[str, tuple[int, int]]]:
    """Counts (hits, total) per set and rate name."""
    rng = np.random.default_rng(seed)
    plate, ident = get_profile("plate"), get_profile("id")
    out: dict[str, dict[str, tuple[int, int]]] = {}

    def count(group: str, name: str, hit: bool) -> None:
        h, t = out.setdefault(group, {}).get(name, (0, 0))
        out[group][name] = (h + int(hit), t + 1)

    for _ in range(n):
        printed, kind = plate_sample(rng)
        truth = plate_key(printed)
        known = not kind.startswith("synth-US") or any(f.accepts(truth) for f in US_FORMATS)
        group = "plates, known layouts" if known else "plates, US vanity (no known layout)"
        clean, _ = simulate_read(rng, printed, 0)
        got = plate.extract_fields(_plate_lines(clean, with_evidence), (1000, 600))["plate"]
        count(group, "clean read changed", got != truth)
        swaps = int(rng.integers(1, 3))
        noisy, done = simulate_read(rng, printed, swaps, stray=rng.random() < 0.15)
        read_key = plate_key("".join(noisy.chars))
        got = plate.extract_fields(_plate_lines(noisy, with_evidence), (1000, 600))["plate"]
        count(group, "noisy read right after the profile", got == truth)
        count(group, "noisy read right as read", read_key == truth)
        count(group, "changed, and wrong", got != read_key and got != truth)
        count(group, "changed, and further from the truth (edit distance)",
              edit_distance(got or "", truth) > edit_distance(read_key, truth))
    for kind in ("TD1", "TD2", "TD3"):
        for _ in range(n // 3):
            truth_lines = mrz_sample(rng, kind)
            group = f"MRZ {kind}"
            reads = [simulate_read(rng, x, 0)[0] for x in truth_lines]
            f = ident.extract_fields(_mrz_page(reads, with_evidence), (1200, 850))
            count(group, "clean: lines changed", f["mrz_lines"] != truth_lines)
            count(group, "clean: valid", bool(f["valid"]))
            count(group, "clean: valid but wrong", bool(f["valid"]) and f["mrz_lines"] != truth_lines)
            noisy_reads, confident = [], False
            for x in truth_lines:
                r, done = simulate_read(rng, x, int(rng.integers(0, 2)), merge_fillers=int(rng.integers(0, 3)),
                                        double_fillers=int(rng.random() < 0.2), stray=rng.random() < 0.05)
                noisy_reads.append(r)
                confident |= done["confident_swaps"] > 0
            f = ident.extract_fields(_mrz_page(noisy_reads, with_evidence), (1200, 850))
            right = f["mrz_lines"] == truth_lines
            sub = "noisy, a confident misread" if confident else "noisy, truth among close alternatives"
            count(group, f"{sub}: type right", f["mrz_type"] == kind)
            count(group, f"{sub}: lines exact", right)
            count(group, f"{sub}: valid", bool(f["valid"]))
            count(group, f"{sub}: valid but wrong", bool(f["valid"]) and not right)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m training.evaluation.profile_stress", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=2000, help="plates, and MRZs (split over TD1/TD2/TD3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--profiles-from", type=Path, help="a checkout whose service/profiles to test instead")
    ap.add_argument("--text-only", action="store_true", help="lines without per-character evidence")
    args = ap.parse_args(list(argv) if argv is not None else None)
    counts = run_stress(args.n, args.seed, load_profiles(args.profiles_from), not args.text_only)
    who = args.profiles_from or "this checkout"
    print(f"profiles: {who}; n={args.n}, seed={args.seed}, evidence={'no' if args.text_only else 'yes'}\n")
    print("| set | rate | value |\n|---|---|---:|")
    for group, rates in counts.items():
        for name, (h, t) in rates.items():
            print(f"| {group} | {name} | {_rate(h, t)} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
