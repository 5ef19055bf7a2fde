"""Strictly check an Olive workflow config against the installed Olive, before a long run.

Olive 0.13 silently drops keys it does not know (a misspelt `lora_r` quietly becomes
the default rank) and silently prunes a pass whose settings the target cannot run
(`olive run` then exits 0 with no model). This check fails loudly on both:

- the whole file must parse as Olive's own `RunConfig`;
- every key of every pass must be a parameter that pass class declares for the
  configured accelerator, and the pass must accept its settings on that accelerator;
- every training argument must be a real `transformers.TrainingArguments` field;
- every text pre-processing key must be a parameter of the pre-processing component named
  by its `type` (this project's own, from its `user_script`) or a field of Olive's `TextGenParams`;
- every top-level key must be one Olive reads, and the export search's keys (`evaluators`,
  `evaluator`, `search_strategy`) must be fields of Olive's evaluator, metric and search configs,
  with the sub-metrics this project's evaluator reports; a pass given as a list of candidates must
  set every setting Olive could search in each (Olive 0.13 fails on one left out).

Usage, from the project root:
    python fine-tuning/check_config.py [fine-tuning/olive-config.json] [--paths]
`--paths` also checks that the model folder and data files exist, prints what the run will cost on CPU
(slm/train/footprint.py) and refuses one whose forecast peak memory is more than this machine has.
"""

import argparse
import copy
import dataclasses
import inspect
import json
from pathlib import Path

from slm.errors import UserError, cli
from slm.project import EARLY_STOPPING_KEY, OLIVE_CONFIG, SCHEDULE_KEYS, Project
from slm.train.footprint import check_fits

# keys of the training data's pre-processing that only training uses: the schedule (slm/train/schedule.py), its row
# order, early stopping
SCHEDULE_ONLY_KEYS = (*SCHEDULE_KEYS, "seed", EARLY_STOPPING_KEY)
# training_args keys of Olive 0.13's LoRA pass that are not transformers.TrainingArguments fields
OLIVE_TRAINING_KEYS = {"overwrite_output_dir", "resume_from_checkpoint"}


class ConfigError(UserError):
    """The config is not strictly valid for the installed Olive."""


def _unknown(keys, allowed, where):
    unknown = sorted(set(keys) - set(allowed))
    if unknown:
        hint = f"; allowed: {sorted(allowed)}" if len(allowed) <= 20 else ""
        raise ConfigError(f"{where}: unknown key(s) {unknown}{hint}")


def _accelerator_spec(config):
    from olive.hardware.accelerator import AcceleratorSpec

    system = config["systems"][config.get("target", "local_system")]
    accelerator = system["accelerators"][0]
    return AcceleratorSpec(
        accelerator_type=accelerator["device"], execution_provider=accelerator["execution_providers"][0]
    )


def check_pass(name, pass_entry, accelerator_spec, data_configs, candidate=False):
    """candidate: one of several configs of one pass, which Olive's search tries in turn."""
    import transformers
    from olive.engine.config import RunPassConfig
    from olive.package_config import OlivePackageConfig

    _unknown(pass_entry, RunPassConfig.model_fields, f"passes.{name}")
    pass_class = OlivePackageConfig.load_default_config().import_pass_module(pass_entry["type"])
    params = pass_entry.get("config") or {}
    declared = pass_class.default_config(accelerator_spec)
    _unknown(params, declared, f"passes.{name}.config ({pass_entry['type']})")
    if candidate:
        unset = sorted(key for key, param in declared.items() if param.search_defaults and key not in params)
        if unset:
            raise ConfigError(
                f"passes.{name}.config: set {unset} in every candidate; Olive 0.13 searches a setting left out "
                "and then fails with 'Search point is not in the search space'"
            )

    training_args = params.get("training_args") or {}
    training_fields = {f.name for f in dataclasses.fields(transformers.TrainingArguments) if f.init}
    if pass_entry["type"] in ("LoRA", "QLoRA"):
        # Olive's own keys that Olive acts on itself; its other declared fields (warmup_ratio, ...) that are
        # no Trainer field in transformers 5 are dropped without a word, so they are refused here
        training_fields |= OLIVE_TRAINING_KEYS
    _unknown(training_args, training_fields, f"passes.{name}.config.training_args (transformers.TrainingArguments)")

    # Olive resolves data config names to the data configs themselves before building the pass
    resolved = {
        key: data_configs.get(value, value) if key.endswith("data_config") and isinstance(value, str) else value
        for key, value in params.items()
    }
    pass_config = pass_class.generate_config(accelerator_spec, resolved, disable_search=True)
    if not pass_class.validate_config(pass_config, accelerator_spec):
        raise ConfigError(
            f"passes.{name}: {pass_entry['type']} rejects these settings on {accelerator_spec} "
            "(Olive would silently skip it and produce no model)"
        )


# Olive's own text pre-processing passes its **kwargs on to TextGenParams
OLIVE_TEXT_PRE_PROCESS = "text_generation_huggingface_pre_process"


def pre_process_keys(component_type):
    """The keys a pre-processing component accepts: its named parameters (and TextGenParams' for Olive's own)."""
    from olive.data.component.text_generation import TextGenParams
    from olive.data.registry import Registry

    if not component_type:
        return set(TextGenParams.model_fields)
    component = Registry.get_pre_process_component(component_type)
    if component is None:
        raise ConfigError(f"pre-processing type {component_type!r} is not registered (is its user_script set?)")
    parameters = list(inspect.signature(component).parameters.values())[1:]  # the first is the dataset
    keys = {p.name for p in parameters if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    if component_type == OLIVE_TEXT_PRE_PROCESS:
        keys |= set(TextGenParams.model_fields)
    return keys


def check_data_config(data_config):
    pre_process = dict(data_config.get("pre_process_data_config") or {})
    component_type = pre_process.pop("type", None)
    where = f"data_configs.{data_config['name']}.pre_process_data_config"
    _unknown(pre_process, pre_process_keys(component_type), f"{where} ({component_type or 'TextGenParams'})")


def check_paths(config, root):
    model_path = config["input_model"]["model_path"]
    # a registry model (a dict: azureml_registry_model) is fetched by Olive at run time
    if isinstance(model_path, str) and not (root / model_path / "config.json").is_file():
        raise ConfigError(
            f"model folder {(root / model_path).as_posix()} has no config.json: run `python setup/get_model.py` first"
        )
    for data_config in config.get("data_configs", []):
        files = data_config["load_dataset_config"].get("data_files") or []
        for data_file in [files] if isinstance(files, str) else files:
            if not (root / data_file).is_file():
                raise ConfigError(f"data file {(root / data_file).as_posix()} does not exist")
    check_data_version(config, root)


def check_data_version(config, root):
    """The training and validation files still match the digest prepare.py recorded (data_version)."""
    from slm.project import Project

    problem = Project(config).data_version_problem(root)
    if problem:
        raise ConfigError(problem)


def check_validation_like_training(config):
    """The validation rows are tokenized as the training rows are (one pre-processing, less the schedule)."""
    configs = config.get("data_configs", [])
    if len(configs) < 2:
        return
    training, validation = (dict(c.get("pre_process_data_config") or {}) for c in configs[:2])
    for key in (*SCHEDULE_ONLY_KEYS, "data_version"):
        training.pop(key, None)
    differing = sorted(key for key in set(training) | set(validation) if training.get(key) != validation.get(key))
    if differing:
        raise ConfigError(
            f"data_configs[1].pre_process_data_config differs from data_configs[0]'s in {differing}: the validation "
            "rows that choose the best checkpoint must be tokenized as the training rows are; make them equal"
        )


def with_absolute_scripts(config, root):
    """A copy naming each data config's and evaluator's user_script by absolute path (Olive resolves it from
    the working folder)."""
    config = copy.deepcopy(config)
    for section in [*config.get("data_configs", []), *(config.get("evaluators") or {}).values()]:
        if section.get("user_script"):
            section["user_script"] = str((Path(root) / section["user_script"]).resolve())
    return config


def check_top_level(config):
    """Olive reads the engine's settings from the top level too (cache_dir, output_dir, search_strategy, ...)."""
    from olive.workflows.run.config import RunConfig, RunEngineConfig

    _unknown(config, {*RunConfig.model_fields, *RunEngineConfig.model_fields}, "the top level")


def check_export_search(config):
    """The evaluators' and the search's keys, and the sub-metrics the project's evaluator reports."""
    from olive.evaluator.metric import Metric, SubMetric
    from olive.evaluator.olive_evaluator import OliveEvaluatorConfig
    from olive.search.search_strategy import SearchStrategyConfig

    from slm.export.search_metrics import EVALUATOR_TYPE, RESULT_KEYS

    evaluators = config.get("evaluators") or {}
    for name, evaluator in evaluators.items():
        _unknown(evaluator, OliveEvaluatorConfig.model_fields, f"evaluators.{name}")
        for number, metric in enumerate(evaluator.get("metrics") or []):
            where = f"evaluators.{name}.metrics[{number}]"
            _unknown(metric, Metric.model_fields, where)
            for sub_number, sub_type in enumerate(metric.get("sub_types") or []):
                _unknown(sub_type, SubMetric.model_fields, f"{where}.sub_types[{sub_number}]")
            if evaluator.get("type") == EVALUATOR_TYPE:
                names = [sub_type.get("name") for sub_type in metric.get("sub_types") or []]
                _unknown(names, RESULT_KEYS, f"{where}.sub_types names ({EVALUATOR_TYPE} reports)")
    chosen = config.get("evaluator")
    if isinstance(chosen, str) and chosen not in evaluators:
        raise ConfigError(f"evaluator {chosen!r} is not one of evaluators {sorted(evaluators)}")
    search = config.get("search_strategy")
    if isinstance(search, dict):
        _unknown(search, SearchStrategyConfig.model_fields, "search_strategy")


def check_config(config, root=Path("."), paths=False):
    """Raise ConfigError (or Olive's own validation error) if the config is not strictly valid.

    root: the project folder the config's relative paths start from.
    """
    if paths:  # before Olive is imported (10 s and more): a missing model or file is told at once
        check_paths(config, root)
    from olive.workflows.run.config import RunConfig

    config = with_absolute_scripts(config, root)
    RunConfig.parse_file_or_obj(copy.deepcopy(config))  # parsing normalises its argument in place
    accelerator_spec = _accelerator_spec(config)
    # a copy, because building a pass config normalises the data configs in place
    data_configs = {data_config["name"]: data_config for data_config in copy.deepcopy(config.get("data_configs", []))}
    for name, pass_entry in config["passes"].items():
        if isinstance(pass_entry, list):
            for number, candidate in enumerate(pass_entry):
                check_pass(f"{name}[{number}]", candidate, accelerator_spec, data_configs, candidate=True)
        else:
            check_pass(name, pass_entry, accelerator_spec, data_configs)
    check_top_level(config)
    check_export_search(config)
    for data_config in config.get("data_configs", []):
        check_data_config(data_config)
    check_validation_like_training(config)


@cli
def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", type=Path, default=OLIVE_CONFIG)
    parser.add_argument("--paths", action="store_true", help="also check that the model and data files exist")
    args = parser.parse_args(argv)
    try:
        config = json.loads(args.config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{args.config.as_posix()} not found; run this from the project root") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{args.config.as_posix()} is not valid JSON: {error}") from None
    expected = check_fits(Project(config, args.config)) if args.paths else None
    try:
        check_config(config, root=Path("."), paths=args.paths)
    except ConfigError:
        raise
    except Exception as error:  # Olive's pydantic errors read the same to a user
        raise UserError(f"{args.config.as_posix()}: {' '.join(str(error).split())}") from None
    if expected:
        print(expected.describe())
    print(f"OK: {args.config.as_posix()} is valid for the installed Olive")
    return 0
