"""Jinja extension for the template: render data as JSON, keeping key order.

Jinja's own `tojson` sorts keys (which would reorder Olive passes, and Olive runs
them in key order) and HTML-escapes `<`, `>` and `'` (which garbles chat markers
such as `<|user|>`); cookiecutter's `jsonify` sorts keys too.
"""

import json

from jinja2.ext import Extension


def to_json(value, indent=2):
    return json.dumps(value, indent=indent, ensure_ascii=False)


class PrettyJsonExtension(Extension):
    def __init__(self, environment):
        super().__init__(environment)
        environment.filters["to_json"] = to_json
