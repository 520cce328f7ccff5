"""Every code block of README.md runs as pasted, or names the test that covers it.

- ```console blocks: each `$ command` runs in bash from the repository root against a live `make run`-style server
  (the same uvicorn command and default settings; only `localhost:8000` becomes the test server's address), and every
  concrete `"key":value` pair shown under it must be in the real JSON answer (values written `…` are elided).
- ```python blocks run as a script from the repository root; a ```text block right after lists lines their output
  must contain.
- any other block must be preceded by `<!-- readme-test: tests/FILE.py::test_name -->`, and that test must exist.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from api_support import uvicorn_server

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
PAIR = re.compile(r'"([^"]+)":\s*("(?:[^"\\]|\\.)*"|-?\d+(?:\.\d+)?|null|true|false)')


@dataclass(frozen=True)
class Block:
    lang: str
    code: str
    line: int
    covered_by: str | None  # "tests/x.py::test_y" from a preceding readme-test comment


def readme_blocks(text: str) -> list[Block]:
    blocks, marker = [], None
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        found = re.fullmatch(r"<!--\s*readme-test:\s*(\S+)\s*-->", line.strip())
        if found:
            marker = found.group(1)
        elif line.startswith("```"):
            lang, start, body = line[3:].strip(), i + 1, []
            i += 1
            while not lines[i].startswith("```"):
                body.append(lines[i])
                i += 1
            blocks.append(Block(lang, "\n".join(body), start, marker))
            marker = None
        elif line.strip():
            marker = None if not line.startswith("<!--") else marker
        i += 1
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def console_steps(code: str) -> list[tuple[str, str]]:
    """(command, shown output) pairs of a console block; `\\` continues a command."""
    steps: list[tuple[str, list[str]]] = []
    continuing = False
    for line in code.splitlines():
        if continuing:
            steps[-1] = (steps[-1][0] + "\n" + line, steps[-1][1])
        elif line.startswith("$ "):
            steps.append((line[2:], []))
        elif steps:
            steps[-1][1].append(line)
        continuing = line.endswith("\\") and bool(steps) and not steps[-1][1]
    return [(cmd, "\n".join(out)) for cmd, out in steps]


def shown_pairs(shown: str) -> list[tuple[str, object]]:
    """The concrete key/value pairs of a shown (possibly elided) JSON answer."""
    return [(k, json.loads(v)) for k, v in PAIR.findall(shown)]


def actual_pairs(node: object, out: set[tuple[str, str]] | None = None) -> set[tuple[str, str]]:
    out = set() if out is None else out
    if isinstance(node, dict):
        for k, v in node.items():
            if not isinstance(v, (dict, list)):
                out.add((k, json.dumps(v, ensure_ascii=False)))
            actual_pairs(v, out)
    elif isinstance(node, list):
        for v in node:
            actual_pairs(v, out)
    return out


def test_blocks_are_found() -> None:
    langs = [b.lang for b in BLOCKS]
    assert "console" in langs and "python" in langs, langs


def test_every_other_block_names_an_existing_test() -> None:
    for block in BLOCKS:
        if block.lang in ("console", "python", "text"):
            continue
        assert block.covered_by, f"README.md:{block.line}: ```{block.lang} block with no readme-test comment"
        path, _, name = block.covered_by.partition("::")
        assert re.search(rf"^def {re.escape(name)}\(", (REPO / path).read_text(), re.MULTILINE), block.covered_by


# ---------------------------------------------------------------- `make run` / `make test`
FAKE_PYTHON = """#!/bin/sh
# Stands in for an interpreter: answers the Makefile's version probe, makes a "venv" holding a copy of itself.
case "$1" in
  -c) echo "{version}" ;;
  -m) if [ "$2" = venv ]; then mkdir -p "$3/bin" && cp "$0" "$3/bin/python"; fi ;;
esac
"""


def fake_python(folder: Path, version: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"python{version}"
    path.write_text(FAKE_PYTHON.format(version=version))
    path.chmod(0o755)
    return path


def make(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "--no-print-directory", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=60)


def test_make_targets_do_what_the_readme_says(tmp_path: Path) -> None:
    if not shutil.which("make"):
        pytest.skip("make not installed")
    run = make("-n", "run", f"VENV={tmp_path}/v")
    assert run.returncode == 0, run.stderr
    assert "pip install -q -c constraints.txt -e '.[serve]'" in run.stdout
    assert f"{tmp_path}/v/bin/uvicorn service.api.app:create_app --factory --host 0.0.0.0 --port 8000" in run.stdout
    test = make("-n", "test", f"VENV={tmp_path}/v")
    assert "-c constraints.txt -e '.[serve,train,dev]'" in test.stdout and "-m pytest -q" in test.stdout
    assert "chromium" in test.stdout, "make test installs the browser the /docs test drives"

    # A .venv made by another Python is rebuilt; one made by the same Python is kept.
    venv = tmp_path / "venv"
    other = fake_python(tmp_path / "py312", "3.12")
    subprocess.run([other, "-m", "venv", str(venv)], check=True)
    py311 = fake_python(tmp_path / "py311", "3.11")
    stamp = f"{venv}/.made-with-python-3.11"
    first = make(f"VENV={venv}", f"PYTHON={py311}", stamp)
    assert first.returncode == 0, first.stderr
    assert "was made by another Python: rebuilding it" in first.stdout
    assert (venv / "bin" / "python").read_text() == py311.read_text() and Path(stamp).is_file()
    (venv / ".made-with-python-3.11").unlink()
    again = make(f"VENV={venv}", f"PYTHON={py311}", stamp)
    assert "reusing it (Python 3.11)" in again.stdout

    unsupported = make("-n", "run", f"PYTHON={fake_python(tmp_path / 'py310', '3.10')}")
    assert unsupported.returncode != 0 and "OCRNet needs 3.11 3.12 3.13" in unsupported.stderr
    broken = make("-n", "run", "PYTHON=/nonexistent/python3")
    assert broken.returncode != 0 and "does not run" in broken.stderr


# ---------------------------------------------------------------- live server for the console blocks
@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[str]:
    """What `make run` starts (its uvicorn command, default settings: every bundle in models/), on a free port.

    Only the request deadline is longer: a shared, overloaded test box must not turn a README check into a 504.
    """
    env = {k: v for k, v in os.environ.items() if not k.startswith("OCRNET_")}
    env["OCRNET_REQUEST_TIMEOUT_S"] = "300"
    log_path = tmp_path_factory.mktemp("readme") / "uvicorn.log"
    with uvicorn_server(["service.api.app:create_app", "--factory"], env, REPO, "/readyz", 300, log_path) as base:
        yield base


CONSOLE = [b for b in BLOCKS if b.lang == "console"]


@pytest.mark.parametrize("block", CONSOLE, ids=[f"README.md:{b.line}" for b in CONSOLE])
def test_console_block_runs_as_pasted(block: Block, server: str) -> None:
    if not shutil.which("curl"):
        pytest.skip("curl not installed")
    steps = console_steps(block.code)
    assert steps, "a console block with no $ command"
    for command, shown in steps:
        proc = subprocess.run(["bash", "-c", command.replace("http://localhost:8000", server)], cwd=REPO,
                              capture_output=True, text=True, timeout=330)
        assert proc.returncode == 0, f"{command}\n{proc.stderr}"
        got = actual_pairs(json.loads(proc.stdout))
        expected = [(k, v) for k, v in shown_pairs(shown) if "…" not in str(v)]
        assert expected, f"{command}: the README shows no concrete value to check"
        missing = [(k, v) for k, v in expected if (k, json.dumps(v, ensure_ascii=False)) not in got]
        assert not missing, f"{command}: shown in README.md but not answered: {missing}\n{proc.stdout[:600]}"


PYTHON = [(b, BLOCKS[i + 1] if i + 1 < len(BLOCKS) and BLOCKS[i + 1].lang == "text" else None)
          for i, b in enumerate(BLOCKS) if b.lang == "python"]


@pytest.mark.parametrize(("block", "output"), PYTHON, ids=[f"README.md:{b.line}" for b, _ in PYTHON])
def test_python_block_runs_as_pasted(block: Block, output: Block | None) -> None:
    proc = subprocess.run([sys.executable, "-c", block.code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    if output is not None:
        printed = proc.stdout.splitlines()
        missing = [line for line in output.code.splitlines() if line.strip() and line not in printed]
        assert not missing, f"shown in README.md but not printed: {missing}\nprinted: {printed}"
