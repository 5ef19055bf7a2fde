"""Jinja filters for the template; the logic behind them is the template_logic package.

- `to_json` / `to_yaml`: render data keeping key order. Jinja's own `tojson` sorts keys (which
  would reorder Olive passes, and Olive runs them in key order) and HTML-escapes `<`, `>` and
  `'` (which garbles chat markers such as `<|user|>`); cookiecutter's `jsonify` sorts keys too.
- `resolved`: the answers as the project uses them (template_logic.answers.resolve).
- `olive_config`: the Olive workflow built from the answers (template_logic.workflow.olive_config).
- `number`: a setting as a person writes it (32, not 32.0; template_logic.answers.plain_number).
- `pip_requirements`: the pinned pip list for the answers; `pip_requirements(False)` leaves out
  the project's own test tools (for the Azure ML job's image).
"""

import json

import yaml
from jinja2.ext import Extension

from template_logic.answers import plain_number, resolve
from template_logic.stack import pip_requirements as pinned_requirements
from template_logic.stack import project_extras, project_runtime
from template_logic.workflow import olive_config


def to_json(value, indent=2):
    return json.dumps(value, indent=indent, ensure_ascii=False)


def to_yaml(value):
    return yaml.safe_dump(value, sort_keys=False, allow_unicode=True, width=120)


def pip_requirements(cookiecutter, with_tools=True):
    extras = [extra for extra in project_extras(cookiecutter) if with_tools or extra != "tools"]
    return pinned_requirements(project_runtime(cookiecutter), extras)


class TemplateFilters(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.filters.update(
            to_json=to_json,
            to_yaml=to_yaml,
            resolved=resolve,
            olive_config=olive_config,
            pip_requirements=pip_requirements,
            number=plain_number,
        )
