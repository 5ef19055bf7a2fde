"""Jinja extensions for the template.

- `to_json`: render data as JSON, keeping key order. Jinja's own `tojson` sorts keys
  (which would reorder Olive passes, and Olive runs them in key order) and HTML-escapes
  `<`, `>` and `'` (which garbles chat markers such as `<|user|>`); cookiecutter's
  `jsonify` sorts keys too.
- `pip_requirements`: the pinned pip packages the answers need, in install order (torch
  first): one list for setup/requirements.txt and setup/conda.yaml.
"""

import json

from jinja2.ext import Extension


def to_json(value, indent=2):
    return json.dumps(value, indent=indent, ensure_ascii=False)


def pip_requirements(cookiecutter):
    stack = cookiecutter["_stack"]
    azureml = stack["azureml"] if cookiecutter["compute"] == "azureml" else []
    return [stack["torch"], *stack["common"], *stack[cookiecutter["device"]], *azureml]


class PrettyJsonExtension(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.filters["to_json"] = to_json


class StackExtension(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.filters["pip_requirements"] = pip_requirements
