"""Which step should a label task keep: the lowest validation loss, or the highest validation answer accuracy?

    python scripts/measure_kept_step.py PROJECT [PROJECT ...] [--patience 2 3 4]

Each PROJECT is a rendered project trained by `olive run` on a label task for its whole schedule with every checkpoint
kept (`measure_datasets.py FILE --answer __early_stopping_patience=0
--set passes.finetune.config.training_args.save_total_limit=100`). For every checkpoint it loads the base model with
that step's adapter (float32, PyTorch) and measures the teacher-forced answer accuracy (slm/train/answer_accuracy.py:
the rows whose every answer token is the argmax, i.e. what greedy decoding answers exactly) on the validation rows
and on the held-out eval rows, beside the validation loss the Trainer logged. It then replays each early-stopping
rule on those curves (from the step the template counts stalls from) and prints the step it would stop at, the step
it would keep, and the held-out accuracy of the kept step:
- loss: the template's rule (StopWhenValidationStalls on eval_loss);
- free acc: the highest validation accuracy, ties to the earlier step (transformers' own comparison of one metric);
- label acc: the same with the accuracy among the labels' tokens (as infer.py --eval decodes);
- label+loss: the highest accuracy among the labels' tokens, ties to the lower validation loss.
A stall is an evaluation that does not beat the best so far; each one-metric rule's replay is checked against the
template's own callback (slm/train/early_stopping.py's replay). The curves are saved in PROJECT/kept-step-curves.json
and read from there by the next run.
Run it with the template's test environment (scripts/env.sh), one project at a time on an otherwise idle machine.
"""

import argparse
import json
import sys
from pathlib import Path

TEMPLATE = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TEMPLATE / "{{cookiecutter.project_slug}}"))  # the generated project's package, slm

from measure_patience import evaluations  # noqa: E402


def tokenized(project_dir: Path, project, path: Path, tokenizer) -> dict:
    """The rows of one split, read by the project's one reader, as the training tokenizes them (build_rows)."""
    from slm.data import load_rows
    from slm.train.olive_data import build_rows

    pre = project.pre_process
    examples, _ = build_rows(
        load_rows(project_dir / path, project.task),
        tokenizer,
        data_format=project.data_format,
        text_template=pre.get("text_template"),
        message_col=pre.get("message_col", "messages"),
        chat_template=pre.get("chat_template"),
        max_seq_len=project.max_seq_len or 1024,
    )
    return examples


def accuracies(model, examples: dict, choices: dict, batch_size: int = 16) -> tuple[float, float]:
    """Teacher-forced answer accuracy of `model` on tokenized rows (slm.train.answer_accuracy): free, and among the
    tokens that continue a label (as infer.py --eval decodes a label task)."""
    import torch
    from slm.train.answer_accuracy import answered_rows
    from slm.train.labelled_logits import IGNORE_INDEX, labelled_positions_only

    free = constrained = 0
    rows = len(examples["input_ids"])
    for start in range(0, rows, batch_size):
        batch = {key: values[start : start + batch_size] for key, values in examples.items()}
        width = max(map(len, batch["input_ids"]))
        padded = {
            key: torch.tensor([row + [pad] * (width - len(row)) for row in batch[key]])
            for key, pad in (("input_ids", 0), ("attention_mask", 0), ("labels", IGNORE_INDEX))
        }
        inputs = labelled_positions_only(padded)
        with torch.no_grad():
            logits = model(
                input_ids=inputs["input_ids"],
                attention_mask=inputs["attention_mask"],
                logits_to_keep=inputs["logits_to_keep"],
            ).logits
        free += int(answered_rows(logits, padded["labels"]).sum())
        constrained += int(answered_rows(logits, padded["labels"], choices).sum())
    return free / rows, constrained / rows


CURVES = "kept-step-curves.json"


def step_curves(project_dir: Path, losses: dict[int, float]):
    """[(step, validation loss, validation accuracy, its constrained accuracy, held-out accuracy, its constrained
    accuracy)] over every evaluated step (`losses`: the validation loss the Trainer logged at each), and the rows of
    each split; measured once, then read from PROJECT/kept-step-curves.json."""
    saved = project_dir / CURVES
    if saved.is_file():
        measured = json.loads(saved.read_text(encoding="utf-8"))
        return [tuple(row) for row in measured["rows"]], measured["counts"]
    import os

    from peft import PeftModel
    from slm.project import OLIVE_CONFIG, Project
    from slm.train.answer_accuracy import answer_choices
    from slm.train.checkpoints import checkpoints_by_step
    from slm.train.labelled_logits import IGNORE_INDEX
    from transformers import AutoModelForCausalLM, AutoTokenizer

    project = Project.load(project_dir / OLIVE_CONFIG)
    base_dir = project_dir / project.base_model_dir
    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    splits = {
        name: tokenized(project_dir, project, path, tokenizer)
        for name, path in (
            ("train", project.train_file),
            ("validation", project.validation_file),
            ("eval", project.eval_file),
        )
    }
    training = splits.pop("train")
    choices = answer_choices([[token for token in labels if token != IGNORE_INDEX] for labels in training["labels"]])
    found = checkpoints_by_step(project_dir / project.checkpoint_dir)
    missing = sorted(set(losses) - set(found))
    if missing:
        raise SystemExit(f"ERROR: {project_dir} has no checkpoint for steps {missing}: train with save_total_limit=100")
    rows = []
    for step in sorted(losses):
        base = AutoModelForCausalLM.from_pretrained(base_dir, dtype="float32")
        model = PeftModel.from_pretrained(base, os.fspath(found[step])).eval()
        measured = accuracies(model, splits["validation"], choices) + accuracies(model, splits["eval"], choices)
        rows.append((step, losses[step], *measured))
        print(f"  step {step} scored", flush=True)
    counts = {name: len(examples["input_ids"]) for name, examples in splits.items()}
    saved.write_text(json.dumps({"rows": rows, "counts": counts}, indent=1), encoding="utf-8")
    return rows, counts


def replay_by_key(keys: list[tuple[int, tuple]], patience: int, counted_from_step: int) -> tuple[int | None, int]:
    """(the step a rule stops at, None for the end; the step it keeps) on [(step, key)], a higher key better:
    a stall is an evaluation whose key is not above the best so far, counted from `counted_from_step` on."""
    best_key, best, stalls = None, None, 0
    for step, key in keys:
        if best_key is None or key > best_key:
            best_key, best, stalls = key, step, 0
        elif step >= counted_from_step:
            stalls += 1
        if patience and stalls >= patience:
            return step, best
    return None, best


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("projects", nargs="+", type=Path)
    parser.add_argument("--patience", nargs="+", type=int, default=[2, 3, 4])
    args = parser.parse_args()
    from slm.train.early_stopping import replay

    for project_dir in args.projects:
        project_dir = project_dir.resolve()
        print(f"{project_dir.name}:", flush=True)
        curve, steps, _, _, counted_from = evaluations(project_dir)
        rows, counts = step_curves(project_dir, dict(curve))
        held_out = {step: (free, constrained) for step, _, _, _, free, constrained in rows}
        rules = {
            "loss": [(step, (-loss,)) for step, loss, *_ in rows],
            "free acc": [(step, (free,)) for step, _, free, *_ in rows],
            "label acc": [(step, (constrained,)) for step, _, _, constrained, *_ in rows],
            "label+loss": [(step, (constrained, -loss)) for step, loss, _, constrained, *_ in rows],
        }
        best = max(held_out, key=lambda step: held_out[step][1])
        print(
            f"  {counts['validation']} validation rows, {counts['eval']} held out; {steps} steps, stalls counted "
            f"from step {counted_from}; the best held-out label accuracy {held_out[best][1]:.3f} at step {best}"
        )
        print(f"  {'step':>6}{'val loss':>10}{'val free':>10}{'val label':>10}{'eval free':>10}{'eval label':>11}")
        for step, loss, *measured in rows:
            print(f"  {step:>6}{loss:>10.4f}" + "".join(f"{value:>10.3f}" for value in measured))
        print(f"  {'rule':<11}{'patience':>9}{'stops at':>10}{'keeps':>7}  held out at the kept step: free, label")
        for name, keys in rules.items():
            for patience in [0, *args.patience]:
                stop, kept = replay_by_key(keys, patience, counted_from)
                if len(keys[0][1]) == 1 and patience:  # one metric: the template's own callback, on the same curve
                    assert (stop, kept) == replay([(step, -key[0]) for step, key in keys], patience, counted_from)
                stopped = "end" if stop is None else str(stop)
                free, constrained = held_out[kept]
                print(f"  {name:<11}{patience or 'none':>9}{stopped:>10}{kept:>7}  {free:.3f}, {constrained:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
