"""The fine-tune as a GGUF file for llama.cpp, Ollama and LM Studio, with an Ollama Modelfile
(inferences/export_gguf.py).

The merged model goes through llama.cpp's own converter and quantizer (slm/bench/llama_peer.py, the benchmark's
peer). The file written carries the trained prompt as its chat template (`tokenizer.chat_template`), the
tokens the ONNX model stops at as end-of-sequence and end-of-turn, and `add_bos_token` false: the trained
prompt brings its own special tokens, as infer.py tokenizes it. The Modelfile renders the same prompt in
Ollama's Go template syntax, stops at the same tokens, and decodes greedily for a label task.
"""

import argparse
import os
from pathlib import Path

from slm.bench import llama_peer
from slm.data import load_rows
from slm.engines import load_tokenizer
from slm.errors import UserError, cli
from slm.export.prompt_templates import go_template, jinja_chat_template, stop_tokens
from slm.metrics import label_set
from slm.project import Project, merged_model_on_disk

GGUF_DIR = Path("gen-model/gguf")
DEFAULT_QUANT = "Q4_K_M"
MODELFILE = "Modelfile"


def merged_source(project: Project, onnx_dir: Path, merged_model: Path | None) -> Path:
    """The merged Hugging Face model the GGUF is converted from."""
    if merged_model is None and project.model_adapter(onnx_dir):
        raise UserError(
            "this project exports the fine-tune as an adapter file (export=adapter), and a GGUF is converted from "
            "a merged model: pass --merged-model DIR (the base model with the LoRA adapter merged in), or render "
            "the project with export=merged and run `olive run`"
        )
    return merged_model_on_disk(onnx_dir, merged_model)


def check_quant(quant: str) -> str:
    """The quantization's name in upper case; an unknown one, or one this environment cannot write, stops here."""
    llama_peer.quant_ftype(quant)
    quant = quant.upper()
    if quant not in llama_peer.CONVERTER_OUTTYPES and not llama_peer.peer_available():
        writable = ", ".join(llama_peer.CONVERTER_OUTTYPES)
        raise UserError(
            f"{quant} needs llama.cpp's quantizer, which comes with llama-cpp-python: run "
            f"`python -m {llama_peer.PEER_PIP}` (builds llama.cpp, about 10 minutes on 2 cores; needs a C++ "
            f"compiler and cmake), or choose --quant {writable}, which the converter writes alone"
        )
    if not llama_peer.converter_available():
        raise UserError(f"llama.cpp's converter needs sentencepiece: run `python -m {llama_peer.CONVERTER_PIP}`")
    return quant


def write_gguf_with_prompt(source: Path, target: Path, name: str, chat_template: str, stop_ids: list[int]):
    """Copy a GGUF with the name, chat template, stop tokens (stop_ids[0]: the one the trained answers end
    with) and add_bos_token=false in its metadata (gguf-py's own copy routine), under a temporary name
    renamed into place when complete."""
    import gguf
    from gguf.scripts.gguf_new_metadata import MetadataDetails, copy_with_new_metadata

    reader = gguf.GGUFReader(source, "r")
    eos = int(reader.get_field(gguf.Keys.Tokenizer.EOS_ID).contents())
    uint32, text = gguf.GGUFValueType.UINT32, gguf.GGUFValueType.STRING
    metadata = {
        gguf.Keys.General.NAME: MetadataDetails(text, name),
        gguf.Keys.Tokenizer.CHAT_TEMPLATE: MetadataDetails(text, chat_template),
        gguf.Keys.Tokenizer.ADD_BOS: MetadataDetails(gguf.GGUFValueType.BOOL, False),
    }
    if eos not in stop_ids:
        metadata[gguf.Keys.Tokenizer.EOS_ID] = MetadataDetails(uint32, stop_ids[0])
    if stop_ids[0] != eos:  # the trained answers end with it: Phi-3's chat turns with <|end|>, not its eos
        metadata[gguf.Keys.Tokenizer.EOT_ID] = MetadataDetails(uint32, stop_ids[0])
    partial = target.with_name(target.name + ".partial")
    writer = gguf.GGUFWriter(partial, arch=reader.get_field(gguf.Keys.General.ARCHITECTURE).contents())
    alignment = reader.get_field(gguf.Keys.General.ALIGNMENT)
    if alignment is not None:
        writer.data_alignment = alignment.contents()
    try:
        copy_with_new_metadata(reader, writer, metadata, [])
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def _quoted(text: str, what: str) -> str:
    if '"""' in text:
        raise UserError(f'the {what} holds """, which an Ollama Modelfile cannot quote')
    return f'"""{text}"""'


def modelfile_text(gguf_name: str, template: str, stops: list[str], system: str | None, greedy: bool) -> str:
    lines = [f"FROM ./{gguf_name}", f"TEMPLATE {_quoted(template, 'prompt template')}"]
    if system:
        lines.append(f"SYSTEM {_quoted(system, 'system prompt')}")
    for stop in stops:
        if '"' in stop:
            raise UserError(f"the stop token {stop!r} holds a double quote, which an Ollama Modelfile cannot quote")
        lines.append(f'PARAMETER stop "{stop}"')
    if greedy:  # a label task is scored on its greedy answer, as infer.py --eval gives it
        lines.append("PARAMETER temperature 0")
    return "\n".join(lines) + "\n"


def is_label_task(project: Project) -> bool:
    """True when the training answers form a small label set (infer.py --eval scores accuracy)."""
    if not project.train_file.is_file():
        return False
    task = project.task
    return label_set([task.reference(row) for row in load_rows(project.train_file, task)]) is not None


def export_gguf(project: Project, quant=DEFAULT_QUANT, merged_model=None, onnx_dir=None, out_dir=GGUF_DIR):
    """Write out_dir/<name>-<QUANT>.gguf and out_dir/Modelfile; returns both paths."""
    quant = check_quant(quant)
    onnx_dir = project.onnx_model_dir(onnx_dir)
    merged = merged_source(project, onnx_dir, merged_model)
    tokenizer = load_tokenizer(onnx_dir)
    chat_template = jinja_chat_template(project.task, tokenizer, project.system_prompt)
    stops = stop_tokens(onnx_dir, project.task, tokenizer)
    out_dir = Path(out_dir)
    target = out_dir / f"{project.name}-{quant}.gguf"
    modelfile = modelfile_text(
        target.name, go_template(project.task, tokenizer), stops, project.system_prompt, is_label_task(project)
    )
    source = llama_peer.convert_to_gguf(merged, llama_peer.PEER_DIR, quant) / llama_peer.GGUF_NAME
    out_dir.mkdir(parents=True, exist_ok=True)
    write_gguf_with_prompt(source, target, project.name, chat_template, tokenizer.convert_tokens_to_ids(stops))
    partial = out_dir / f".{MODELFILE}.partial"
    partial.write_text(modelfile, encoding="utf-8")
    os.replace(partial, out_dir / MODELFILE)
    return target, out_dir / MODELFILE


@cli
def main(argv=None):
    parser = argparse.ArgumentParser(description="Write the fine-tune as a GGUF file with an Ollama Modelfile.")
    quants = ", ".join(llama_peer.QUANT_FTYPES)
    parser.add_argument("--quant", default=DEFAULT_QUANT, help=f"quantization (default {DEFAULT_QUANT}): {quants}")
    parser.add_argument("--merged-model", type=Path, help="merged Hugging Face model (default: from the footprint)")
    parser.add_argument("--model", type=Path, help="ONNX model folder (default: the config's output_dir)")
    parser.add_argument("--out", type=Path, default=GGUF_DIR, help=f"where the files go (default {GGUF_DIR})")
    args = parser.parse_args(argv)
    project = Project.load()
    gguf_path, modelfile = export_gguf(project, args.quant, args.merged_model, args.model, args.out)
    print(f"wrote {gguf_path.as_posix()} ({gguf_path.stat().st_size / 2**20:.0f} MB) and {modelfile.as_posix()}")
    print(f"Ollama:  ollama create {project.name} -f {modelfile.as_posix()}  then  ollama run {project.name}")
    return 0
