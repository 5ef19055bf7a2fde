"""One error type for anything the user can fix, and one way to report it."""

import functools
import sys


class UserError(Exception):
    """A problem the user can fix; the message says what to do, `retry` the command to run again after."""

    def __init__(self, message, retry=None):
        super().__init__(message)
        self.retry = retry


def cli(main):
    """Wrap a command's main(argv) -> int: a UserError becomes `ERROR: ...` lines on stderr and exit code 1."""

    @functools.wraps(main)
    def wrapper(argv=None):
        try:
            return main(argv)
        except UserError as error:
            for line in str(error).splitlines():
                print(f"ERROR: {line}", file=sys.stderr)
            if error.retry:
                print(f"Retry from the project root: {error.retry}", file=sys.stderr)
            return 1
        except ModuleNotFoundError as error:
            if (error.name or "").split(".")[0] == "slm":  # this project's own code is broken: the real error
                raise
            print(
                f"ERROR: the package {error.name} is missing: run `python setup/install.py` and use .venv's python",
                file=sys.stderr,
            )
            return 1
        except KeyboardInterrupt:
            print("Stopped.", file=sys.stderr)
            return 130

    return wrapper
