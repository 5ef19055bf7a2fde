"""Fixes to Olive 0.13.0 that the export search needs, applied when Olive imports slm/olive_eval.py
(while it reads the config, before it runs anything).

1. Olive cannot write out a config with a custom metric: `olive run` serialises the whole
   workflow config before it runs, and a custom metric has no `backend` and its sub-types no
   `metric_config` (both None), whose serialisers call `None.model_dump()` and fail. Both are
   taught to keep a None. Patching the functions' code changes every compiled pydantic serialiser
   that calls them (each config that nests a Metric holds a reference to these very functions).
2. A search fails at its second candidate: the passes before the builder come from the cache, and
   recording them again in the footprint sets `model_config`, which FootprintNode only accepts by
   its alias at construction (`"FootprintNode" object has no field "model_config"`).
"""

from olive.engine.footprint import FootprintNode
from olive.evaluator import metric as olive_metric


def _dump_or_keep(self, value):
    return value.model_dump() if hasattr(value, "model_dump") else value


def _update_footprint_node(self, **kwargs):
    for name, value in kwargs.items():
        setattr(self, "model_config_data" if name == "model_config" else name, value)


def apply() -> None:
    olive_metric.Metric.serialize_backend.__code__ = _dump_or_keep.__code__
    olive_metric.SubMetric.serialize_metric_config.__code__ = _dump_or_keep.__code__
    FootprintNode.update = _update_footprint_node
