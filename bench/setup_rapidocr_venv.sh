#!/usr/bin/env bash
# Make .cache/rapidocr-venv: rapidocr==3.10.0 (+ opencv-python-headless, its hard dependency) for
# bench/compare_rapidocr.py, kept out of the main .venv (the service and training must never pick up cv2).
# The venv also sees the main .venv's site-packages through a .pth file, so OCRNet's pipeline imports there too.
set -euo pipefail
cd "$(dirname "$0")/.."
MAIN_PY=.venv/bin/python
VENV=.cache/rapidocr-venv
[ -x "$MAIN_PY" ] || { echo "missing $MAIN_PY: run 'make install-all' first" >&2; exit 1; }
BASE_PY=$("$MAIN_PY" -c 'import sys; print(sys._base_executable)')
SITE=$("$MAIN_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
"$BASE_PY" -m venv "$VENV"
VSITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
echo "$SITE" > "$VSITE/ocrnet-main-venv.pth"
"$VENV/bin/pip" install -q "rapidocr==3.10.0"
"$VENV/bin/python" -c 'import rapidocr, cv2; print("rapidocr", rapidocr.__file__, "cv2", cv2.__version__)'
