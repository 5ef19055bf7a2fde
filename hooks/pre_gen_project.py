"""Reject bad answers before cookiecutter writes anything: one `ERROR:` line saying what to change."""

import json
import sys

# The answers arrive as data: a JSON string literal, decoded here, never pasted into code.
ANSWERS = json.loads({{cookiecutter | to_json | to_json}})
# the checks live beside cookiecutter.json, where the tests import them too
sys.path.insert(0, ANSWERS["_repo_dir"])

from template_logic.answers import AnswerError, check_answers  # noqa: E402


def main():
    try:
        check_answers(ANSWERS)
    except AnswerError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
