"""Strictly check an Olive workflow config against the installed Olive, before a long run.

Olive 0.13 silently drops keys it does not know (a misspelt `lora_r` quietly becomes
the default rank) and silently prunes a pass whose settings the target cannot run
(`olive run` then exits 0 with no model). This check fails loudly on both:

- the whole file must parse as Olive's own `RunConfig`;
- every key of every pass must be a parameter that pass class declares for the
  configured accelerator, and the pass must accept its settings on that accelerator;
- every training argument must be a real `transformers.TrainingArguments` field;
- every text pre-processing key must be a field of Olive's `TextGenParams`.

Usage, from the project root:
    python fine-tuning/check_config.py [fine-tuning/olive-config.json] [--paths]
`--paths` also checks that the model folder and data files exist.
"""

import argparse
import copy
import dataclasses
import json
import sys
from pathlib import Path

DEFAULT_CONFIG = Path("fine-tuning/olive-config.json")


class ConfigError(Exception):
    pass


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


def check_pass(name, pass_entry, accelerator_spec, data_configs):
    import transformers
    from olive.engine.config import RunPassConfig
    from olive.package_config import OlivePackageConfig

    _unknown(pass_entry, RunPassConfig.model_fields, f"passes.{name}")
    pass_class = OlivePackageConfig.load_default_config().import_pass_module(pass_entry["type"])
    params = pass_entry.get("config") or {}
    _unknown(params, pass_class.default_config(accelerator_spec), f"passes.{name}.config ({pass_entry['type']})")

    training_args = params.get("training_args") or {}
    training_fields = {f.name for f in dataclasses.fields(transformers.TrainingArguments) if f.init}
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


def check_data_config(data_config):
    from olive.data.component.text_generation import TextGenParams

    pre_process = data_config.get("pre_process_data_config") or {}
    _unknown(pre_process, TextGenParams.model_fields, f"data_configs.{data_config['name']}.pre_process_data_config")


def check_paths(config, root):
    model_path = config["input_model"]["model_path"]
    # a registry model (a dict: azureml_registry_model) is fetched by Olive at run time
    if isinstance(model_path, str) and not (root / model_path / "config.json").is_file():
        raise ConfigError(f"model folder {root / model_path} has no config.json: run `python setup/get_model.py` first")
    for data_config in config.get("data_configs", []):
        files = data_config["load_dataset_config"].get("data_files") or []
        for data_file in [files] if isinstance(files, str) else files:
            if not (root / data_file).is_file():
                raise ConfigError(f"data file {root / data_file} does not exist")


def check_config(config, root=Path("."), paths=False):
    """Raise ConfigError (or Olive's own validation error) if the config is not strictly valid."""
    from olive.workflows.run.config import RunConfig

    RunConfig.parse_file_or_obj(json.loads(json.dumps(config)))
    accelerator_spec = _accelerator_spec(config)
    # a copy, because building a pass config normalises the data configs in place
    data_configs = {data_config["name"]: data_config for data_config in copy.deepcopy(config.get("data_configs", []))}
    for name, pass_entry in config["passes"].items():
        check_pass(name, pass_entry, accelerator_spec, data_configs)
    for data_config in config.get("data_configs", []):
        check_data_config(data_config)
    if paths:
        check_paths(config, root)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", nargs="?", type=Path, default=DEFAULT_CONFIG)
    parser.add_argument("--paths", action="store_true", help="also check that the model and data files exist")
    args = parser.parse_args(argv)
    try:
        config = json.loads(args.config.read_text(encoding="utf-8"))
        check_config(config, root=Path("."), paths=args.paths)
    except FileNotFoundError as error:
        print(f"ERROR: {error.filename} not found; run this from the project root", file=sys.stderr)
        return 1
    except json.JSONDecodeError as error:
        print(f"ERROR: {args.config} is not valid JSON: {error}", file=sys.stderr)
        return 1
    except Exception as error:  # Olive's pydantic errors and ours read the same to a user
        message = " ".join(str(error).split())
        print(f"ERROR: {args.config}: {message}", file=sys.stderr)
        return 1
    print(f"OK: {args.config} is valid for the installed Olive")
    return 0


if __name__ == "__main__":
    sys.exit(main())
