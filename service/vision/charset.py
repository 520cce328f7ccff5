"""CTC class table from ``charset.json``: index 0 is the blank, class ``i + 1`` is ``characters[i]``."""
from __future__ import annotations

import json
from pathlib import Path


def load_charset(path: str | Path) -> list[str]:
    """Return the class table (blank first, as ``""``) the recogniser's softmax indexes into."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))
    if data.get("blank_index", 0) != 0:
        raise ValueError(f"{path}: only blank_index 0 is supported, got {data['blank_index']}")
    characters = data["characters"]
    if not isinstance(characters, list) or not all(isinstance(c, str) for c in characters):
        raise ValueError(f"{path}: 'characters' must be a list of strings")
    return [""] + characters
