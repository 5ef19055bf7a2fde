"""After `olive run`: the training and validation loss curve and the summary line.

A thin entry point: the code is in slm.report.
"""

import sys

try:
    from slm.report import main
except ModuleNotFoundError as error:  # run outside .venv, or before setup/install.py
    sys.exit(f"ERROR: {error.name} is missing for {sys.executable}: run `python setup/install.py`, use .venv's python")

if __name__ == "__main__":
    sys.exit(main())
