"""The evidence studies and performance benchmarks, run from the repository root as
``python -m benchmarks.NAME`` (``make -f benchmarks/Makefile evidence`` runs them all). Each prints the table it
measured and writes it with ``--out``; trained models are cached under ``runs/bench``."""
