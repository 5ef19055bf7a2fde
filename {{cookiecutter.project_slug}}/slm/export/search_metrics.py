"""The export search's metric schema, defined once: the template renders the evaluator into
fine-tuning/olive-config.json from it (template_logic loads this file as it loads prompts.py), the evaluator
reports these values (olive_eval), the config check accepts these names (olive_check) and the search report
reads them back from Olive's footprint (export_report). No imports: the template reads it without the stack.
"""

EVALUATOR_TYPE = "ExportSearchEvaluator"  # the project's evaluator class, registered with Olive by olive_eval
EVALUATOR_NAME = "validation"  # its key under the config's `evaluators`
METRIC = "export"  # the one metric; Olive names each value `export-<sub-metric>` in the footprint
# (name, priority, higher_is_better); priority -1: reported, not ranked. Olive ranks by `selection` (the score
# capped 1 point below fp32: every candidate within a point ties), then by decode speed.
SUB_METRICS = (
    ("selection", 1, True),
    ("tokens_per_second", 2, True),
    ("score", -1, True),
    ("fp32_score", -1, True),
    ("size_mb", -1, False),
)
RESULT_KEYS = tuple(name for name, _, _ in SUB_METRICS)


def footprint_key(name: str) -> str:
    """The key Olive's footprint gives a sub-metric's value."""
    return f"{METRIC}-{name}"
