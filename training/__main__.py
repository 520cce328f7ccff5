"""``python -m training`` is the same as the ``ocrnet`` command."""
from training.cli import main

raise SystemExit(main())
