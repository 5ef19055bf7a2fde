"""The project as fine-tuning/olive-config.json describes it: the only reader of that file.

Training and inference read the same facts from here (the text template and so the columns,
the data format, the base model folder, the output folder, the devices), so editing the
config changes both together.
"""

import hashlib
import json
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from slm.errors import UserError
from slm.prompts import ChatTask, ColumnsTask

OLIVE_CONFIG = Path("fine-tuning/olive-config.json")


def olive_run_command(config_path: str | Path = OLIVE_CONFIG) -> str:
    """The one command that trains and exports: what every "run it first" and "retry" message names."""
    return f"olive run --config {Path(config_path).as_posix()}"


OLIVE_RUN = olive_run_command()
# each training file's siblings: the held-out rows (infer.py --eval; never trained on), the validation rows
EVAL_FILES = {"train.json": "eval.json", "train.jsonl": "eval.jsonl"}
VALIDATION_FILES = {"train.json": "validation.json", "train.jsonl": "validation.jsonl"}
# what prepare.py found in the user's file (repeats, conflicts, labels per split, over-long rows), beside the splits
DATA_REPORT = "data-report.json"
# what olive run and infer.py --eval leave for the user to look at: the loss curve, the summary, every answer
REPORT_DIR = Path("gen-model/report")
SCHEDULE_KEYS = ("epochs", "min_steps", "step_cap")
# the training data's key that ends training after that many evaluations without improvement (train/early_stopping)
EARLY_STOPPING_KEY = "early_stopping_patience"
# the file Olive's ExtractAdapters pass writes beside the model (export=adapter)
ADAPTER_FILE = "adapter_weights.onnx_adapter"


@dataclass
class Project:
    config: dict
    config_path: Path = OLIVE_CONFIG

    @property
    def olive_run(self) -> str:
        return olive_run_command(self.config_path)

    @classmethod
    def load(cls, path: str | Path = OLIVE_CONFIG) -> "Project":
        path = Path(path)
        try:
            return cls(json.loads(path.read_text(encoding="utf-8")), path)
        except FileNotFoundError:
            raise UserError(f"{path} not found; run this from the project root") from None
        except json.JSONDecodeError as error:
            raise UserError(f"{path} is not valid JSON: {error}") from None

    @property
    def name(self) -> str:
        """The project folder's name: the model's name in the server, Foundry Local and Ollama."""
        return self.config_path.resolve().parents[1].name

    @property
    def data_config(self) -> dict:
        return self.config["data_configs"][0]

    @property
    def pre_process(self) -> dict:
        return self.data_config["pre_process_data_config"]

    @property
    def data_format(self) -> str:
        return self.pre_process.get("data_format", "columns")

    @property
    def max_seq_len(self) -> int | None:
        return self.pre_process.get("max_seq_len")

    @property
    def train_file(self) -> Path:
        return Path(self.data_config["load_dataset_config"]["data_files"])

    @property
    def eval_file(self) -> Path:
        train = self.train_file
        return train.with_name(EVAL_FILES.get(train.name, "eval" + train.suffix))

    @property
    def validation_file(self) -> Path:
        train = self.train_file
        return train.with_name(VALIDATION_FILES.get(train.name, "validation" + train.suffix))

    @property
    def data_report_file(self) -> Path:
        return self.train_file.with_name(DATA_REPORT)

    @property
    def pass_entries(self) -> list[dict]:
        """Every pass entry of the config; a pass given as a list (the export search's recipes) is each of them."""
        entries = []
        for entry in self.config["passes"].values():
            entries += entry if isinstance(entry, list) else [entry]
        return entries

    @property
    def finetune(self) -> dict:
        """The config of the LoRA / QLoRA pass."""
        for entry in self.pass_entries:
            if entry.get("type") in ("LoRA", "QLoRA"):
                return entry.get("config") or {}
        raise UserError(f"{self.config_path.as_posix()} has no LoRA or QLoRA pass")

    @property
    def training_args(self) -> dict:
        return self.finetune.get("training_args") or {}

    @property
    def training_dtype(self) -> str:  # the torch dtype the fine-tune trains in (the LoRA pass's)
        return self.finetune.get("torch_dtype") or "float32"

    @property
    def batch_size(self) -> int:
        """Rows per optimisation step: the per-device batch times gradient accumulation."""
        args = self.training_args
        return int(args.get("per_device_train_batch_size", 8)) * int(args.get("gradient_accumulation_steps", 1))

    @property
    def checkpoint_dir(self) -> Path | None:
        """Where the Trainer keeps its checkpoints and trainer_state.json (resumed from by the next olive run)."""
        output_dir = self.training_args.get("output_dir")
        return Path(output_dir) if output_dir else None

    @property
    def report_dir(self) -> Path:
        return REPORT_DIR

    @property
    def schedule_settings(self) -> dict | None:
        """The schedule keys of the training data's pre-processing (slm/train/schedule.py), or None without one."""
        if self.pre_process.get("epochs") is None:
            return None
        return {key: self.pre_process[key] for key in SCHEDULE_KEYS if key in self.pre_process}

    def data_digest(self, root: Path = Path(".")) -> str:
        """A short digest of the training and validation files' bytes (what Olive's cache cannot see)."""
        digest = hashlib.sha256()
        for path in (root / self.train_file, root / self.validation_file):
            digest.update(path.read_bytes() if path.is_file() else b"")
        return digest.hexdigest()[:16]

    def data_version_problem(self, root: Path = Path(".")) -> str | None:
        """What to do when the data files no longer match the recorded data_version, else None."""
        recorded = self.pre_process.get("data_version")
        digest = self.data_digest(root)
        if recorded is None or digest == recorded:
            return None
        return (
            f"{self.train_file.as_posix()} or {self.validation_file.as_posix()} changed since data_version {recorded} "
            f"was recorded, and Olive's cache would reuse the model trained on the old data: set "
            f'"data_version": "{digest}" in {OLIVE_CONFIG.as_posix()} (or run `python datasets/prepare.py YOUR_FILE`)'
        )

    def record_data_version(self) -> None:
        """Write the data files' digest into the config as the training data's `data_version`: Olive keys its
        cache on the config, not on the data files, so new data must change the config to be trained on."""
        self.pre_process["data_version"] = self.data_digest()
        self.config_path.write_text(json.dumps(self.config, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")

    @property
    def base_model_path(self) -> str | dict:
        """The base model: a folder, or a dict for a model Olive fetches itself (an Azure ML registry model)."""
        return self.config["input_model"]["model_path"]

    @property
    def base_model_dir(self) -> Path:
        path = self.base_model_path
        if not isinstance(path, str):
            raise UserError("the base model is fetched by Olive inside an Azure ML job; it has no local folder")
        return Path(path)

    @property
    def output_dir(self) -> Path:
        return Path(self.config["output_dir"])

    @property
    def exports_adapter(self) -> bool:
        """True when olive run writes the base model plus the fine-tune as an adapter file (export=adapter)."""
        return any(entry.get("type") == "ExtractAdapters" for entry in self.pass_entries)

    @property
    def adapter_file(self) -> Path | None:
        """The project's own adapter file, or None for a merged export."""
        return self.output_dir / ADAPTER_FILE if self.exports_adapter else None

    def model_adapter(self, model_dir: str | Path | None = None) -> Path | None:
        """The adapter file beside the ONNX model in model_dir (default: this project's output folder),
        or None for a merged model. How infer.py, serve.py and benchmark.py all pick the default adapter."""
        if model_dir is None and self.exports_adapter and not self.adapter_file.is_file():
            raise UserError(f"no adapter file {self.adapter_file.as_posix()}: run `{self.olive_run}`")
        beside = Path(model_dir or self.output_dir) / ADAPTER_FILE
        return beside if beside.is_file() else None

    def _system_device(self, role: str) -> str:
        """cpu or cuda: the accelerator of Olive's `host` or `target` system."""
        system = self.config["systems"][self.config.get(role, "local_system")]
        return "cuda" if system["accelerators"][0]["device"] == "gpu" else "cpu"

    @property
    def device(self) -> str:
        """cpu or cuda: where the exported model runs (Olive's `target`), so inference and the export search's
        fp32 reference default to it."""
        return self._system_device("target")

    @property
    def training_device(self) -> str:
        """cpu or cuda: where `olive run` trains (Olive's `host`); a GPU-trained model may run on CPU."""
        return self._system_device("host")

    @cached_property
    def task(self) -> ChatTask | ColumnsTask:
        if self.data_format == "messages":
            return ChatTask(self.pre_process.get("message_col", "messages"), self.pre_process.get("chat_template"))
        return ColumnsTask.from_template(self.pre_process["text_template"])

    @cached_property
    def system_prompt(self) -> str | None:
        """The system turn every training conversation shares (chat-format data), used for a bare user input."""
        if self.data_format != "messages" or not self.train_file.is_file():
            return None
        from slm.data import read_records

        firsts = {
            json.dumps(row[self.task.message_col][0])
            for _, row in read_records(self.train_file)
            if isinstance(row, dict) and row.get(self.task.message_col)
        }
        first = json.loads(firsts.pop()) if len(firsts) == 1 else {}
        return first.get("content") if first.get("role") == "system" else None

    def onnx_model_dir(self, override: str | Path | None = None) -> Path:
        """The ONNX model folder, checked complete: genai_config.json and at least one .onnx file."""
        model_dir = Path(override or self.output_dir)
        if not (model_dir / "genai_config.json").is_file() or not any(model_dir.glob("*.onnx")):
            raise UserError(f"no complete ONNX model in {model_dir.as_posix()}: run `{self.olive_run}` first")
        return model_dir


# ---- Olive's footprint: the models olive run produced on the way to the ONNX model (benchmark.py)


def footprint_file(onnx_dir: str | Path) -> Path:
    return Path(onnx_dir) / "footprint.json"


def read_footprint(onnx_dir: str | Path) -> dict:
    """Olive's footprint beside the model, its nodes by id (each pass's output, metrics, parent); {} without one."""
    footprint = footprint_file(onnx_dir)
    return json.loads(footprint.read_text(encoding="utf-8")) if footprint.is_file() else {}


def footprint_model(onnx_dir: str | Path, from_passes: set[str]) -> dict | None:
    """The config of the model the first of `from_passes` produced, from Olive's footprint; None if absent."""
    for node in read_footprint(onnx_dir).values():
        if node.get("from_pass") in from_passes:
            return node["model_config_data"]["config"]
    return None


def merged_model_dir(onnx_dir: str | Path) -> Path:
    """The merged fine-tuned PyTorch model Olive produced on the way to the ONNX model."""
    merged = footprint_model(onnx_dir, {"mergeadapterweights"})
    if merged:
        return Path(merged["model_path"])
    raise UserError(
        f"no merged model recorded in {footprint_file(onnx_dir).as_posix()}: run `{OLIVE_RUN}` "
        "(or pass --merged-model DIR)"
    )


def merged_model_on_disk(onnx_dir: str | Path, given: str | Path | None = None) -> Path:
    """The merged fine-tuned PyTorch model (`given`, else the one Olive recorded), refused unless it is there."""
    merged = Path(given) if given else merged_model_dir(onnx_dir)
    if not (merged / "config.json").is_file():
        raise UserError(
            f"no merged PyTorch model in {merged.as_posix()} (was gen-model/olive-cache/ deleted?): "
            f"re-run `{OLIVE_RUN}`, or pass --merged-model DIR"
        )
    return merged


def trained_adapter_dir(onnx_dir: str | Path) -> tuple[Path, Path]:
    """An adapter export's base model and LoRA adapter folder (the LoRA pass's output), for PyTorch."""
    trained = footprint_model(onnx_dir, {"lora", "qlora"})
    if trained and trained.get("adapter_path"):
        return Path(trained["model_path"]), Path(trained["adapter_path"])
    raise UserError(
        f"no LoRA adapter recorded in {footprint_file(onnx_dir).as_posix()}: run "
        f"`{OLIVE_RUN}` (or pass --merged-model DIR)"
    )
