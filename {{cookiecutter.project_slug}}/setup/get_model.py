"""Get the base model where the Olive config reads it.

A thin entry point: the code is in slm.model_source.
"""

import sys

try:
    from slm.model_source import main
except ModuleNotFoundError as error:  # run outside .venv, or before setup/install.py
    sys.exit(f"ERROR: {error.name} is missing for {sys.executable}: run `python setup/install.py`, use .venv's python")

if __name__ == "__main__":
    sys.exit(main())
