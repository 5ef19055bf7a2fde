"""The template's own logic, importable and unit-tested without rendering (tests/test_template_logic.py, on plain
dicts). One job per module:

- `tables`: what the template defines once elsewhere, read here: cookiecutter.json's tables (the model table, the
  pinned stack) and the generated project's dependency-free modules (`slm/prompts.py`, the training text;
  `slm/export/search_metrics.py`, the export search's metrics).
- `answers`: every refusal in one table (`REFUSALS`); `resolve(answers)`, the answers as the project uses them;
  `check_answers(answers)`, which raises AnswerError with one line saying what to change.
- `workflow`: `olive_config(answers)`, the Olive 0.13 workflow as a Python dict.
- `stack`: `pip_requirements(runtime, extras=())`, the pinned pip list in install order; the files each answer set
  leaves out (`unneeded_files`).

Used by the hooks (imported from the template folder), by the Jinja filters in local_extensions.py, and by
scripts/env.sh.
"""
