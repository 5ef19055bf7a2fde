"""Serve the fine-tuned model: an OpenAI-compatible API and a web chat.

A thin entry point: the code is in slm.serve.
"""

import sys

try:
    from slm.serve import main
except ModuleNotFoundError as error:  # run outside .venv, or before setup/install.py
    sys.exit(f"ERROR: {error.name} is missing for {sys.executable}: run `python setup/install.py`, use .venv's python")

if __name__ == "__main__":
    sys.exit(main())
