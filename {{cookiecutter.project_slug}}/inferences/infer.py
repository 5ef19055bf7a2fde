"""Chat with, prompt, or evaluate the fine-tuned ONNX model on ONNX Runtime GenAI.

Run from the project root, after `olive run --config fine-tuning/olive-config.json`:
    python inferences/infer.py                     interactive, streams each answer
    python inferences/infer.py --prompt "TEXT"     one answer, streamed
    python inferences/infer.py --eval              accuracy on datasets/eval.json
    python inferences/infer.py --eval --base       the base model, zero-shot, same prompt (PyTorch)
    python inferences/infer.py --chat              a conversation, in the model's chat template

By default the input is put in the project's text template, exactly as in training, and
the model writes the answer column. --chat talks to the model as an assistant instead and,
interactively, keeps the conversation (oldest turns dropped when the context is full).
"""

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from generators import ENGINES, Generation, TextGenerator, load_tokenizer  # noqa: E402
from task import Task, TaskError, base_model_dir, label_table, load_olive_config, model_output_dir, normalise_label  # noqa: E402

TASK_MAX_NEW_TOKENS = 16
CHAT_MAX_NEW_TOKENS = 256


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Prompt, chat with, or evaluate the fine-tuned model.")
    parser.add_argument("--model", type=Path, help="ONNX model folder (default: the config's output_dir)")
    parser.add_argument("--prompt", help="answer this one input, then exit")
    parser.add_argument(
        "--eval",
        nargs="?",
        const="datasets/eval.json",
        type=Path,
        metavar="FILE",
        help="evaluate on FILE (default datasets/eval.json); the last line is the accuracy",
    )
    parser.add_argument("--base", action="store_true", help="use the base model (PyTorch) instead of the ONNX model")
    parser.add_argument("--chat", action="store_true", help="use the chat template instead of the task template")
    parser.add_argument("--max-new-tokens", type=int, help="limit on generated tokens")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    return parser.parse_args(argv)


def open_generator(args, config):
    if args.base:
        model_dir = base_model_dir(config)
        if not (model_dir / "config.json").is_file():
            raise TaskError(f"no base model in {model_dir}: run `python setup/get_model.py` first")
        engine = ENGINES["torch"](model_dir, args.device)
        return TextGenerator(engine, load_tokenizer(model_dir))
    model_dir = args.model or model_output_dir(config)
    if not (model_dir / "genai_config.json").is_file() or not any(model_dir.glob("*.onnx")):
        raise TaskError(
            f"no complete ONNX model in {model_dir}: run `olive run --config fine-tuning/olive-config.json` first"
        )
    return TextGenerator(ENGINES["onnx"](model_dir, args.device), load_tokenizer(model_dir))


class Prompter:
    def __init__(self, task, generator, chat, max_new_tokens):
        self.task, self.generator, self.chat = task, generator, chat
        self.max_new_tokens = max_new_tokens or (CHAT_MAX_NEW_TOKENS if chat else TASK_MAX_NEW_TOKENS)
        self.history = []  # earlier chat turns, so a conversation has memory

    def prompt_for(self, text, history=()):
        tokenizer = self.generator.tokenizer
        if self.chat:
            messages = [*history, {"role": "user", "content": text}]
            return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        return self.task.prompt(text, tokenizer.bos_token)

    def tokens_over(self, prompt):
        """How far the prompt plus a full answer runs past the model's context (0: it fits)."""
        needed = len(self.generator.encode(prompt)) + self.max_new_tokens
        return max(0, needed - self.generator.engine.context_length)

    def fitted_prompt(self, text):
        """The prompt for `text`; in a chat, the conversation so far, oldest turns dropped until the answer fits."""
        prompt = self.prompt_for(text, self.history)
        while self.history and self.tokens_over(prompt):
            del self.history[:2]  # one user turn and its answer
            prompt = self.prompt_for(text, self.history)
        overflow = self.tokens_over(prompt)
        if overflow:
            raise TaskError(
                f"the input is {overflow} tokens too long for the model's context of "
                f"{self.generator.engine.context_length} tokens with {self.max_new_tokens} new tokens; "
                "shorten it or lower --max-new-tokens"
            )
        return prompt

    def stream(self, text):
        """Stream one answer. A task answer is one line; a chat answer runs until the model ends
        it, and the exchange is remembered for the next turn."""
        prompt = self.fitted_prompt(text)
        if not self.chat:
            yield from self.generator.stream(prompt, self.max_new_tokens, stop_at_newline=True)
            return
        result = Generation()
        yield from self.generator.stream(prompt, self.max_new_tokens, result=result)
        self.history += [{"role": "user", "content": text}, {"role": "assistant", "content": result.text}]

    def answer(self, text):
        prompt = self.fitted_prompt(text)
        return self.generator.complete(prompt, self.max_new_tokens, stop_at_newline=not self.chat).text


def print_stream(prompter, text):
    for piece in prompter.stream(text):
        print(piece, end="", flush=True)
    print()


def interactive(prompter):
    label = "chat" if prompter.chat else prompter.task.input_column
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
        except TaskError as error:  # one bad turn does not end the session
            print(f"ERROR: {error}", file=sys.stderr)


def evaluate(prompter, path):
    from tqdm import tqdm

    rows = prompter.task.load_rows(path)
    pairs = []
    for row in tqdm(rows, desc=f"evaluating {path}", unit="row", file=sys.stderr):
        predicted = normalise_label(prompter.answer(str(row[prompter.task.input_column])))
        pairs.append((normalise_label(str(row[prompter.task.output_column])), predicted))
    table, accuracy = label_table(pairs)
    print(table)
    print(f"accuracy: {accuracy:.3f} (n={len(pairs)})")


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.prompt is not None and not args.prompt.strip():
            raise TaskError('--prompt is empty; give the text to answer, e.g. --prompt "I got the job!"')
        config = load_olive_config()
        task = Task.from_olive_config(config)
        if args.eval:
            task.load_rows(args.eval)  # fail on a bad file before loading the model
        prompter = Prompter(task, open_generator(args, config), args.chat, args.max_new_tokens)
        if args.eval:
            evaluate(prompter, args.eval)
        elif args.prompt is not None:
            print_stream(prompter, args.prompt.strip())
        else:
            interactive(prompter)
    except TaskError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
