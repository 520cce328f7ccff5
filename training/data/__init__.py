"""Training data: synthetic generators (``synth``), user-data loaders and train/val splits."""
