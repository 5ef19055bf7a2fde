"""The score Olive chooses the int4 export by: an Olive evaluator, run inside `olive run`.

For an int4 export on CPU, `olive run` builds every ModelBuilder recipe listed under
`passes.builder` (Olive's search, sequential sampler) and this module's ExportSearchEvaluator
scores each result (the config's `evaluators`, with `user_script` naming this file).
Each is scored on the validation rows (never the held-out eval file) exactly as
`infer.py --eval` scores: the same prompt, greedy decoding, the same stop rule; accuracy for a
small label set, token F1 otherwise. The same fine-tune merged in PyTorch is scored on the same
rows once, as the reference ("fp32" below), in the dtype it trained in: float32, or bfloat16 for the
Phi rows (in float32 a full-size Phi alone is 15 GB, more than a 16 GB machine has for it).

Olive ranks the candidates by the sub-metrics in priority order, highest first:
1. `selection`: the score, capped at the fp32 score minus TOLERANCE. Every candidate within
   TOLERANCE of fp32 ties here, so among those
2. `tokens_per_second` (decode speed) decides: the fastest candidate within TOLERANCE of fp32
   wins, else the most accurate.
`score`, `fp32_score` and `size_mb` are reported, not ranked. Olive records them all in
`gen-model/model/footprint.json`; `fine-tuning/report.py` lists every candidate and the one Olive
kept (Olive runs no project code after choosing).
"""

import hashlib
import json
from pathlib import Path

from olive.evaluator.metric_result import MetricResult, flatten_metric_result
from olive.evaluator.olive_evaluator import OliveEvaluator
from olive.evaluator.registry import Registry

from slm import olive_compat
from slm.bench.measure import ChildSettings, run_child
from slm.data import load_rows
from slm.engines import ENGINES, load_tokenizer, weights_size_bytes
from slm.export.search_metrics import EVALUATOR_TYPE, RESULT_KEYS
from slm.generation import Prompter, TextGenerator
from slm.metrics import score
from slm.project import Project
from slm.train.checkpoints import last_checkpoint, trainer_state

# Olive imports this module while it reads the config, before it writes the config out or searches
olive_compat.apply()

# how far below the fp32 model a candidate may score and still count as keeping its accuracy
TOLERANCE = 0.01
# decode speed: this many validation prompts, each continued for this many tokens (end-of-sequence ignored)
SPEED_PROMPTS = 8
SPEED_TOKENS = 32
REFERENCE_FILE = "export-fp32-reference.json"


def onnx_folder(model) -> Path:
    """The folder of an Olive ONNX model handler (its model_path names the folder or the .onnx file)."""
    path = Path(model.model_path)
    return path.parent if path.suffix == ".onnx" else path


def answers_for(project: Project, generator: TextGenerator, rows: list) -> list[str]:
    prompter = Prompter(project, generator)
    return [prompter.answer_row(row) for row in rows]


def decode_speed(project: Project, folder: Path, adapter: Path | None) -> float:
    """Decode tokens/s (median over SPEED_PROMPTS validation prompts of SPEED_TOKENS tokens) as benchmark.py
    measures it, in a process of its own: inside the Olive process the same loop ran 30-45% slower than in a
    fresh one, and by different amounts per candidate, which reordered them (measured; not profiled)."""
    settings = ChildSettings(SPEED_PROMPTS, SPEED_TOKENS, project.device, project.validation_file)
    return run_child("onnx", folder, settings, adapter)["decode_tokens_per_s_median"]


def best_adapter(project: Project) -> Path | None:
    """The LoRA weights the fine-tune ended with: the best checkpoint the Trainer kept (its adapter is what
    the LoRA pass returned, load_best_model_at_end), else the latest; None when there is none."""
    checkpoints = project.checkpoint_dir
    latest = last_checkpoint(checkpoints) if checkpoints is not None else None
    if latest is None:
        return None
    state = trainer_state(latest)
    best = Path(state.get("best_model_checkpoint") or latest)
    # the Trainer records the path as it was given: relative to the project root
    return best if (best / "adapter_model.safetensors").is_file() else None


def fp32_reference(project: Project, rows: list, references: list[str]) -> dict | None:
    """The fine-tune merged into the base model in PyTorch, in the dtype it trained in, scored on `rows`:
    computed once per fine-tune and validation file, kept in the report folder."""
    adapter = best_adapter(project)
    if adapter is None:
        return None
    key = hashlib.sha256(
        (adapter / "adapter_model.safetensors").read_bytes()
        + project.validation_file.read_bytes()
        + project.training_dtype.encode()
    ).hexdigest()
    cache = project.report_dir / REFERENCE_FILE
    if cache.is_file():
        kept = json.loads(cache.read_text(encoding="utf-8"))
        if kept.get("key") == key:
            return kept
    engine = ENGINES["torch"](project.base_model_dir, project.device, lora_dir=adapter, dtype=project.training_dtype)
    generator = TextGenerator(engine, load_tokenizer(project.base_model_dir))
    name, value, _ = score(answers_for(project, generator, rows), references)
    reference = {
        "key": key,
        "adapter": adapter.as_posix(),
        "dtype": project.training_dtype,
        "metric": name,
        "score": value,
    }
    project.report_dir.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps(reference, indent=2) + "\n", encoding="utf-8")
    return reference


def selection_value(score: float, fp32_score: float | None) -> float:
    """What Olive ranks first: the score, capped TOLERANCE below fp32, so every candidate that keeps the
    accuracy ties and the decode speed decides among them."""
    return score if fp32_score is None else min(score, fp32_score - TOLERANCE)


def score_export(model) -> dict:
    """One export candidate (an Olive ONNX model handler), scored on the validation rows."""
    project = Project.load()
    rows = load_rows(project.validation_file, project.task)
    references = [project.task.reference(row) for row in rows]
    # first, and freed before the candidate loads: the PyTorch model is the largest thing the search holds
    reference = fp32_reference(project, rows, references)
    olive_compat.release_memory()
    folder = onnx_folder(model)
    engine = ENGINES["onnx"](folder, project.device)
    adapter = project.model_adapter(folder)
    if adapter is not None:
        engine.load_adapter(adapter.stem, adapter)
    generator = TextGenerator(engine, load_tokenizer(folder), adapter=adapter.stem if adapter else None)
    name, value, _ = score(answers_for(project, generator, rows), references)
    speed = decode_speed(project, folder, adapter)
    fp32_score = reference["score"] if reference else None
    result = {
        "selection": selection_value(value, fp32_score),
        "tokens_per_second": round(speed, 1),
        "score": value,
        # Olive keeps numbers only: -1 when there is no fp32 reference (no checkpoint to merge)
        "fp32_score": -1.0 if fp32_score is None else fp32_score,
        "size_mb": round(weights_size_bytes(folder) / 1e6, 1),
    }
    against = f"fp32 {fp32_score:.3f}" if fp32_score is not None else "no fp32 reference"
    print(
        f"export candidate {folder.as_posix()}: validation {name} {value:.3f} ({against}, n={len(rows)}), "
        f"{speed:.1f} tokens/s, {result['size_mb']} MB",
        flush=True,
    )
    return result


class ExportSearchEvaluator(OliveEvaluator):
    """Olive's evaluator for the export candidates: the values of score_export as the config's sub-metrics."""

    def evaluate(self, model, metrics, device=None, execution_providers=None) -> MetricResult:
        try:
            values = score_export(model)
        except Exception as error:  # noqa: BLE001
            # Olive would drop the candidate and, if every one failed, end with no model and exit 0: a
            # candidate that cannot be scored ranks last instead, and its error is in the log
            print(f"WARNING: export candidate {onnx_folder(model).as_posix()} could not be scored: {error}", flush=True)
            values = dict.fromkeys(RESULT_KEYS, -1.0) | {"tokens_per_second": 0.0, "size_mb": 0.0}
        results = {
            metric.name: MetricResult.model_validate(
                {
                    sub.name: {
                        "value": values[sub.name],
                        "priority": sub.priority,
                        "higher_is_better": sub.higher_is_better,
                    }
                    for sub in metric.sub_types
                }
            )
            for metric in metrics
        }
        return flatten_metric_result(results)


# Olive executes this file by path each time it validates the evaluator config; registering a second class
# under the name fails in Olive's duplicate check (it cannot find the source of a module loaded by path)
if Registry.get(EVALUATOR_TYPE) is None:
    Registry.register(EVALUATOR_TYPE)(ExportSearchEvaluator)
