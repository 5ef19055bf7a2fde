"""Chat with, prompt, or evaluate the fine-tuned ONNX model on ONNX Runtime GenAI.

Run from the project root, after `olive run` has written the model (the README's step 5):
    python inferences/infer.py                     interactive, streams each answer
    python inferences/infer.py --prompt "TEXT"     one answer, streamed
    python inferences/infer.py --eval [FILE]       score held-out rows (default: the eval file beside the training file)
    python inferences/infer.py --eval --base       the base model, zero-shot, same prompt (PyTorch)
    python inferences/infer.py --adapter FILE|none an adapter export: another fine-tune of the same base
                                                   model, or the base model alone, on ONNX Runtime
    python inferences/infer.py --chat              a conversation in the model's chat template

The input is put into the prompt exactly as in training (the text template, or the chat
template for chat-format data) and the model writes the answer. --chat keeps the
conversation (oldest turns dropped when the context is full). When the answers are a small
label set, --constrain makes every answer one of those labels.
"""

import argparse
import json
import sys
from pathlib import Path

from slm.data import load_rows
from slm.engines import ENGINES, load_tokenizer
from slm.errors import UserError, cli
from slm.export import search_report
from slm.generation import Prompter, TextGenerator
from slm.metrics import label_set, score
from slm.project import Project
from slm.prompts import label_table, normalise_label


def parse_args(argv, project):
    parser = argparse.ArgumentParser(description="Prompt, chat with, or evaluate the fine-tuned model.")
    parser.add_argument("--model", type=Path, help="ONNX model folder (default: the config's output_dir)")
    parser.add_argument("--prompt", help="answer this one input, then exit")
    parser.add_argument(
        "--eval",
        nargs="?",
        const=project.eval_file if project else None,
        type=Path,
        metavar="FILE",
        help="score FILE (default: the held-out file beside the training file); the last line is the score",
    )
    parser.add_argument("--base", action="store_true", help="use the base model (PyTorch) instead of the ONNX model")
    parser.add_argument(
        "--adapter",
        metavar="FILE|none",
        help="an adapter export: the .onnx_adapter file to use (default: this project's own), "
        "or none for the base model alone on the same runtime",
    )
    parser.add_argument("--chat", action="store_true", help="talk to the model as an assistant, in its chat template")
    parser.add_argument(
        "--constrain",
        action="store_true",
        help="answer only with one of the training labels (ONNX Runtime GenAI guided decoding)",
    )
    parser.add_argument("--max-new-tokens", type=int, help="limit on generated tokens")
    parser.add_argument(
        "--device",
        choices=["cpu", "cuda"],
        default=project.device if project else "cpu",
        help="execution provider (default: the device the Olive config targets)",
    )
    return parser.parse_args(argv)


NO_ADAPTER = "none"


def adapter_to_use(args, project):
    """The adapter file this run generates with, or None (a merged model, --adapter none, or --base).
    By default the adapter beside the model: the project's own, or the one in --model's folder."""
    if args.base:
        if args.adapter is not None:
            raise UserError("--adapter runs on ONNX Runtime GenAI; leave out --base (--adapter none is the base model)")
        return None
    beside = project.model_adapter(args.model)
    if args.adapter is None:
        return beside
    if args.adapter == NO_ADAPTER:
        if beside is None:
            raise UserError(
                "--adapter none needs an adapter export (export=adapter); this model has the fine-tune merged in. "
                "Use --base for the base model in PyTorch"
            )
        return None
    return Path(args.adapter)


def open_generator(args, project, adapter_file=None):
    if args.base:
        model_dir = project.base_model_dir
        if not (model_dir / "config.json").is_file():
            raise UserError(f"no base model in {model_dir.as_posix()}: run `python setup/get_model.py` first")
        return TextGenerator(ENGINES["torch"](model_dir, args.device), load_tokenizer(model_dir))
    model_dir = project.onnx_model_dir(args.model)
    engine = ENGINES["onnx"](model_dir, args.device)
    if adapter_file is None:
        return TextGenerator(engine, load_tokenizer(model_dir))
    engine.load_adapter(adapter_file.stem, adapter_file)
    return TextGenerator(engine, load_tokenizer(model_dir), adapter=adapter_file.stem)


def print_stream(prompter, text):
    for piece in prompter.stream(text):
        print(piece, end="", flush=True)
    print()


def interactive(prompter):
    label = "chat" if prompter.chat else getattr(prompter.task, "input_column", "message")
    print(f"Type a {label} and press Enter (empty line or Ctrl-D to quit).")
    while True:
        try:
            text = input("> ").strip()
        except EOFError:
            break
        if not text:
            break
        try:
            print_stream(prompter, text)
        except UserError as error:  # one bad turn does not end the session
            print(f"ERROR: {error}", file=sys.stderr)


def write_answers(path, rows, task, references, answers, scores):
    """Every row's input, reference and answer, one JSON line each, so a user can see which were wrong."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as stream:
        for row, reference, answer, score in zip(rows, references, answers, scores, strict=True):
            line = {"input": task.input_of(row), "reference": reference, "answer": answer, "score": score}
            stream.write(json.dumps(line, ensure_ascii=False) + "\n")


def evaluate(prompter, rows, path, answers_file=None):
    """Print the score: accuracy with a per-label table for a small label set, else token F1; write every
    answer to answers_file."""
    from slm.progress import progress

    task = prompter.task
    references = [task.reference(row) for row in rows]
    answers = [prompter.answer_row(row) for row in progress(rows, f"evaluating {path}", "row")]
    metric, value, scores = score(answers, references)
    if metric == "accuracy":
        pairs = [(normalise_label(r), normalise_label(a)) for r, a in zip(references, answers, strict=True)]
        print(label_table(pairs)[0])
    last = f"{metric}: {value:.3f} (n={len(rows)})"
    if answers_file is not None:
        write_answers(answers_file, rows, task, references, answers, scores)
        print(f"every answer: {answers_file.as_posix()}")
    print(last)


@cli
def main(argv=None):
    project = Project.load()
    args = parse_args(argv, project)
    if args.prompt is not None and not args.prompt.strip():
        raise UserError('--prompt is empty; give the text to answer, e.g. --prompt "I got the job!"')
    rows = load_rows(args.eval, project.task) if args.eval else None  # a bad file fails before the model loads
    labels = None
    if args.constrain:
        labels = label_set([project.task.reference(row) for row in load_rows(project.train_file, project.task)])
        if not labels:
            raise UserError(
                f"--constrain needs a small set of answer labels, but the answers in {project.train_file.as_posix()} "
                "are free text"
            )
        if args.base:
            raise UserError("--constrain runs on ONNX Runtime GenAI; leave out --base")
    adapter_file = adapter_to_use(args, project)
    generator = open_generator(args, project, adapter_file)
    prompter = Prompter(project, generator, args.chat, args.max_new_tokens, labels)
    if rows is not None:
        mode = "".join(f"-{name}" for name in ("base", "constrain") if getattr(args, name))
        if args.adapter is not None:
            mode += f"-adapter-{Path(args.adapter).stem}"
        answers_file = project.report_dir / f"{args.eval.stem}{mode}-answers.jsonl"
        recipe = None if args.base else search_report.kept_line(search_report.candidates(generator.engine.model_dir))
        if recipe:
            print(recipe)
        evaluate(prompter, rows, args.eval.as_posix(), answers_file)
    elif args.prompt is not None:
        print_stream(prompter, args.prompt.strip())
    else:
        interactive(prompter)
    return 0
