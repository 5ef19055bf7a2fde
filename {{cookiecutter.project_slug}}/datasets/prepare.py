"""Check your data file and split it into the training and held-out files.

A thin entry point: the code is in slm.prepare.
"""

import sys

try:
    from slm.prepare import main
except ModuleNotFoundError as error:  # run outside .venv, or before setup/install.py
    sys.exit(f"ERROR: {error.name} is missing for {sys.executable}: run `python setup/install.py`, use .venv's python")

if __name__ == "__main__":
    sys.exit(main())
