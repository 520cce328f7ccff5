"""The `ocrnet` command line explains itself: --version, help with defaults on every option, --help without the
heavy imports, a named extra when an optional dependency is missing, clear errors when data is missing."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from service import __version__
from training.cli import SUBCOMMANDS
from training.finetune.cli_args import build_parser, prepare_config

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "onnx", "onnxruntime", "onnxscript")  # seconds to import; rapidfuzz is not

# Runs every subcommand's --help in a fresh interpreter, records each parser and which heavy modules got imported.
INSPECT_HELP = r'''
import argparse, contextlib, io, json, sys
from training.cli import HelpFormatter, main
seen = []
real = argparse.ArgumentParser.parse_known_args
def spy(self, args=None, namespace=None):
    if self.prog != "ocrnet":
        seen.append(self)
    return real(self, args, namespace)
argparse.ArgumentParser.parse_known_args = spy
cmd = sys.argv[1]
with contextlib.redirect_stdout(io.StringIO()) as out:
    try:
        main([cmd, "--help"])
    except SystemExit as e:
        code = e.code
parser = seen[-1]
print(json.dumps({
    "code": code, "help": out.getvalue(), "formatter": issubclass(parser.formatter_class, HelpFormatter),
    "options": [[a.option_strings, a.help] for a in parser._actions if a.option_strings and a.dest != "help"],
    "heavy": sorted(m for m in HEAVY if m in sys.modules),
}))
'''.replace("HEAVY", repr(HEAVY))


def run_cli(*args: str, pre: str = "") -> subprocess.CompletedProcess:
    code = f"{pre}\nimport sys\nfrom training.cli import main\nsys.exit(main({list(args)!r}))"
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)


def test_version_is_the_package_version() -> None:
    proc = run_cli("--version")
    assert proc.returncode == 0 and proc.stdout.strip() == f"ocrnet {__version__}"


@pytest.mark.parametrize("command", sorted(SUBCOMMANDS))
def test_help_lists_every_option_with_text_and_imports_nothing_heavy(command: str) -> None:
    proc = subprocess.run([sys.executable, "-c", INSPECT_HELP, command], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    report = json.loads(proc.stdout)
    assert report["code"] == 0 and report["help"].startswith(f"usage: ocrnet {command}")
    assert report["formatter"], "defaults shown through training.cli.HelpFormatter"
    undocumented = [opts for opts, text in report["options"] if not text]
    assert report["options"] and not undocumented, undocumented
    assert report["heavy"] == [], f"--help imported {report['heavy']}"


def test_missing_optional_dependency_names_the_extra() -> None:
    proc = run_cli("evaluate", "--data", "examples", pre="import sys; sys.modules['rapidfuzz'] = None")
    assert proc.returncode == 3, proc.stderr
    assert "'rapidfuzz'" in proc.stderr and "pip install -e '.[train]'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_evaluate_without_data_fails_with_a_pointer(tmp_path: Path) -> None:
    proc = run_cli("evaluate", "--data", str(tmp_path))
    assert proc.returncode == 2
    assert "no labelled data" in proc.stderr and "docs/labels.md" in proc.stderr and proc.stdout == ""


def test_finetune_with_missing_data_stops_before_torch_loads(tmp_path: Path) -> None:
    proc = run_cli("finetune", "--config", "training/configs/plates_rec.yaml",
                   "--set", f"data.val.0.path={tmp_path / 'absent'}",
                   pre="import atexit, sys\natexit.register(lambda: print('torch' in sys.modules, file=sys.stderr))")
    assert proc.returncode == 1
    assert "data.val[0]: labels_jsonl" in proc.stderr and "--val-synthetic" in proc.stderr
    assert proc.stderr.strip().endswith("False"), "torch was imported before the data check"


def test_finetune_overrides_make_a_config_run_without_real_data(tmp_path: Path) -> None:
    args = build_parser().parse_args(["--config", str(REPO / "training/configs/plates_rec.yaml"),
                                      "--val-synthetic", "40", "--set", "data.train.0.n=64", "--max-steps", "2",
                                      "--output-dir", str(tmp_path)])
    cfg = prepare_config(args)
    assert [(s.kind, s.domain, s.n) for s in cfg.data.val] == [("synthetic", "plates", 40)]
    assert cfg.data.val[0].seed not in {s.seed for s in cfg.data.train}
    assert cfg.data.train[0].n == 64 and cfg.max_steps == 2 and Path(cfg.output_dir) == tmp_path


def test_finetune_data_check_covers_every_source_of_the_config(tmp_path: Path) -> None:
    from training.finetune.cli_args import missing_sources

    args = build_parser().parse_args(["--config", str(REPO / "training/configs/plates_rec.yaml"),
                                      "--set", f"transfer.mixing.source=[{{kind: tsv, path: {tmp_path / 'gone.tsv'}}}]",
                                      "--set", f"data.val=[{{kind: labels_jsonl, path: {tmp_path}}}]"])
    with pytest.raises(SystemExit, match=r"transfer\.mixing\.source\[0\]: tsv"):
        prepare_config(args)
    args.overrides = args.overrides[1:]
    args.val_synthetic = None
    assert missing_sources(prepare_config(args)) == []  # tmp_path exists: nothing missing


def test_finetune_set_rejects_a_bad_override() -> None:
    args = build_parser().parse_args(["--config", str(REPO / "training/configs/plates_rec.yaml"),
                                      "--set", "data.train.5.n=1"])
    with pytest.raises(SystemExit, match="data.train.5.n"):
        prepare_config(args)
