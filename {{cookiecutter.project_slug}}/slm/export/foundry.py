"""A Foundry Local model folder from the ONNX model (inferences/export_foundry.py).

Foundry Local lists a folder of its model cache as a model when it holds genai_config.json and an
inference_model.json with a "Name" (microsoft/Foundry-Local, sdk_v2/cpp/src/catalog/local_model_scanner.cc).
inference_model.json's "PromptTemplate" puts the user's message where `{Content}` stands (Microsoft Learn,
"Compile Hugging Face models to run on Foundry Local"); the current runtime formats the messages with the
tokenizer's own chat template through ONNX Runtime GenAI (sdk_v2/cpp/src/inferencing/generative/chat/
chat_template.cc). The folder carries the trained prompt in both: PromptTemplate and the chat template
(chat_template.jinja, and tokenizer_config.json's `chat_template`, which ONNX Runtime GenAI reads first).
"""

import argparse
import json
import shutil
from pathlib import Path

from slm.engines import load_tokenizer
from slm.errors import UserError, cli
from slm.export.prompt_templates import content_template, jinja_chat_template
from slm.project import Project

FOUNDRY_DIR = Path("gen-model/foundry")
INFERENCE_MODEL = "inference_model.json"
CHAT_TEMPLATE_FILE = "chat_template.jinja"
TOKENIZER_CONFIG = "tokenizer_config.json"


def inference_model(name, project, tokenizer):
    """inference_model.json's content: the model's name and the trained prompt around `{Content}`."""
    prompt = content_template(project.task, tokenizer, project.system_prompt, "{Content}")
    return {"Name": name, "PromptTemplate": {"assistant": "{Content}", "prompt": prompt}}


def write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def replace_folder(staging: Path, target: Path) -> None:
    """Put the finished staging folder where target was: the old one is removed only once the new one is whole."""
    old = target.with_name(f".{target.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if target.exists():
        target.rename(old)
    staging.rename(target)
    shutil.rmtree(old, ignore_errors=True)


def write_foundry_folder(project: Project, onnx_dir=None, out_dir: Path = FOUNDRY_DIR, name: str | None = None):
    """Copy the ONNX model into out_dir/<name>/ with inference_model.json and the trained chat template."""
    onnx_dir = project.onnx_model_dir(onnx_dir)
    if project.model_adapter(onnx_dir):
        raise UserError(
            f"{onnx_dir.as_posix()} is a base model with the fine-tune in an adapter file, and Foundry Local loads "
            "no adapter files: render the project with export=merged and run `olive run` to export a model "
            "with the fine-tune merged in"
        )
    name = name or project.name
    if not name or "/" in name or "\\" in name or name.startswith("."):
        raise UserError(f"--name {name!r}: give a plain folder name (letters, digits, '-', '_', '.')")
    tokenizer = load_tokenizer(onnx_dir)
    template = jinja_chat_template(project.task, tokenizer, project.system_prompt)
    record = inference_model(name, project, tokenizer)
    target = Path(out_dir) / name
    staging = target.with_name(f".{name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        for item in sorted(Path(onnx_dir).iterdir()):
            if item.is_file():
                shutil.copy2(item, staging / item.name)
        (staging / CHAT_TEMPLATE_FILE).write_text(template, encoding="utf-8")
        config_path = staging / TOKENIZER_CONFIG
        if config_path.is_file():
            config = json.loads(config_path.read_text(encoding="utf-8"))
            if "chat_template" in config:
                config["chat_template"] = template
                write_json(config_path, config)
        write_json(staging / INFERENCE_MODEL, record)
        replace_folder(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


@cli
def main(argv=None):
    parser = argparse.ArgumentParser(description="Write a Foundry Local model folder from the fine-tuned ONNX model.")
    parser.add_argument("--model", type=Path, help="ONNX model folder (default: the config's output_dir)")
    parser.add_argument("--out", type=Path, default=FOUNDRY_DIR, help=f"where the folder goes (default {FOUNDRY_DIR})")
    parser.add_argument("--name", help="the model's name in Foundry Local (default: the project folder's name)")
    args = parser.parse_args(argv)
    folder = write_foundry_folder(Project.load(), args.model, args.out, args.name)
    name = json.loads((folder / INFERENCE_MODEL).read_text(encoding="utf-8"))["Name"]
    print(f"wrote {folder.as_posix()}: Foundry Local model {name}")
    print(f"add it:  foundry cache cd {args.out.as_posix()}")
    print("         (or copy the folder into the cache folder `foundry cache location` shows)")
    print(f"then:    foundry cache list  and  foundry model run {name}")
    return 0
