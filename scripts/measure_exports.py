"""Each exported artefact scored on the held-out rows with its own runtime, beside `infer.py --eval`'s score.

    python scripts/measure_exports.py PROJECT [--quants Q4_K_M,Q8_0] [--foundry-python PY] [--runs 1]

PROJECT is a rendered project with export=merged after `olive run`. For every run:
- ONNX: `python inferences/infer.py --eval` (its last line, accuracy or token_f1).
- GGUF: `python inferences/export_gguf.py --quant Q` for each quantization, then every held-out row asked
  through llama-cpp-python: the prompt rendered from the Modelfile's TEMPLATE as Ollama fills it for one user
  message (the row's system message, else the Modelfile's SYSTEM), or, for a row with earlier turns, from the
  GGUF's own chat template (what llama-cpp-python and llama.cpp's server render); tokens as the GGUF says
  (no BOS added), greedy, stopped at the Modelfile's stop tokens, the answer cut and scored as infer.py does.
  The prompts are also compared with infer.py's (`prompts differing` must be 0).
- Foundry Local (with --foundry-python, the python of an environment with `foundry-local-sdk`: it pins its own
  onnxruntime-genai): `python inferences/export_foundry.py`, then every row sent through the SDK's chat client
  (temperature 0) to the model loaded from gen-model/foundry/: found in the catalog from that cache folder, or,
  where the SDK cannot reach its catalog service (offline it lists no model, cached ones included), the folder
  registered in its local catalog (the table says which).
Target: within 1 point of the ONNX score (accuracy) or 0.02 (token F1). Needs llama-cpp-python and
sentencepiece in this environment (`pip install llama-cpp-python==0.3.36 sentencepiece==0.2.3`).
"""

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

from measure_quality import run

SCORE_LINE = re.compile(r"^(accuracy|token_f1): (\d+\.\d+)", re.MULTILINE)
FOUNDRY_CHILD = """
import json, sys
from foundry_local_sdk import Configuration, FoundryLocalManager
job = json.load(sys.stdin)
FoundryLocalManager.initialize(Configuration(app_name="measure-exports", model_cache_dir=job["cache_dir"]))
model, found = FoundryLocalManager.instance.catalog.get_model(job["name"]), "listed from the cache folder"
if model is None:  # offline the public catalog lists nothing, cached folders included: register the folder itself
    from foundry_local_sdk.catalog import CatalogType
    from foundry_local_sdk.model_info import ModelInfoBuilder
    from foundry_local_sdk.exception import FoundryLocalException
    local, model_id = FoundryLocalManager.instance.get_catalog(CatalogType.LOCAL), job["name"] + ":1"
    try:  # a registration outlives its process (in the cache folder's foundry.local.modelinfo.json): renew it
        local.unregister_model(model_id)
    except FoundryLocalException:
        pass
    task = ModelInfoBuilder().set_string_property("task", "chat-completion")
    model, found = local.register_model(job["folder"], model_id, task), "registered in the local catalog"
model.load()
client = model.get_chat_client()
client.settings.temperature, client.settings.max_tokens = 0.0, job["max_tokens"]
answers = [client.complete_chat(messages).choices[0].message.content or "" for messages in job["requests"]]
model.unload()
if found.startswith("registered"):
    local.unregister_model(model_id)
print(json.dumps({"answers": answers, "found": found}))
"""


def onnx_score(project, env):
    name, value = SCORE_LINE.findall(run([sys.executable, "inferences/infer.py", "--eval"], project, env))[-1]
    return name, float(value)


def modelfile_parts(text):
    """(TEMPLATE, SYSTEM or "", [stop strings]) of a Modelfile written by export_gguf.py."""
    template = re.search(r'^TEMPLATE """(.*?)"""$', text, re.DOTALL | re.MULTILINE).group(1)
    system = re.search(r'^SYSTEM """(.*?)"""$', text, re.DOTALL | re.MULTILINE)
    return template, system.group(1) if system else "", re.findall(r'^PARAMETER stop "(.*)"$', text, re.MULTILINE)


def gguf_prompt(task, row, template, system, chat_template):
    """The prompt a row gets from the Modelfile (one user message) or else from the GGUF's chat template."""
    from jinja2.sandbox import ImmutableSandboxedEnvironment
    from slm.export.prompt_templates import render_go_template

    if task.data_format == "columns":
        return render_go_template(template, task.input_of(row))
    turns = task.input_of(row)
    if [turn["role"] for turn in turns] in (["user"], ["system", "user"]):
        given = turns[0]["content"] if turns[0]["role"] == "system" else system
        return render_go_template(template, turns[-1]["content"], given)
    jinja = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True).from_string(chat_template)
    return jinja.render(messages=turns, add_generation_prompt=True)


def gguf_answers(project, gguf_path, modelfile, rows, max_new_tokens):
    """(answers, prompts) of every row on llama-cpp-python, greedy, as the Modelfile and the GGUF say."""
    import gguf
    from llama_cpp import Llama
    from slm.engines import cpu_threads
    from slm.project import Project

    task = Project.load(project / "fine-tuning/olive-config.json").task
    template, system, stops = modelfile_parts(modelfile.read_text(encoding="utf-8"))
    chat_template = gguf.GGUFReader(gguf_path).get_field("tokenizer.chat_template").contents()
    threads = cpu_threads()
    llm = Llama(model_path=str(gguf_path), n_ctx=2048, n_threads=threads, n_threads_batch=threads, verbose=False)
    stop_ids = {llm.tokenize(stop.encode(), add_bos=False, special=True)[0] for stop in stops}
    answers, prompts = [], []
    for row in rows:
        prompt = gguf_prompt(task, row, template, system, chat_template)
        ids, produced = llm.tokenize(prompt.encode(), add_bos=False, special=True), []
        llm.reset()
        for token in llm.generate(ids, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
            if token in stop_ids or len(produced) >= max_new_tokens:
                break
            produced.append(token)
        answers.append(llm.detokenize(produced).decode("utf-8", errors="replace"))
        prompts.append(prompt)
    return answers, prompts


def foundry_answers(project, name, foundry_python, rows, task, max_new_tokens, env):
    """Every row sent to the exported folder through Foundry Local's Python SDK, in its own environment."""
    run([sys.executable, "inferences/export_foundry.py"], project, env)
    if task.data_format == "columns":
        requests = [[{"role": "user", "content": task.input_of(row)}] for row in rows]
    else:
        requests = [task.input_of(row) for row in rows]
    cache = str(project / "gen-model/foundry")
    folder = str(project / "gen-model/foundry" / name)
    job = {"cache_dir": cache, "folder": folder, "name": name, "requests": requests, "max_tokens": max_new_tokens}
    child = subprocess.run(
        [foundry_python, "-c", FOUNDRY_CHILD], input=json.dumps(job), cwd=project, capture_output=True, text=True
    )
    if child.returncode != 0:
        raise RuntimeError(f"the Foundry Local run failed:\n{child.stderr[-3000:]}")
    result = json.loads(child.stdout.strip().splitlines()[-1])
    return result["answers"], result["found"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", type=Path)
    parser.add_argument("--quants", default="Q4_K_M,Q8_0")
    parser.add_argument("--foundry-python", help="python of an environment with foundry-local-sdk")
    parser.add_argument("--runs", type=int, default=1)
    args = parser.parse_args()
    project = args.project.resolve()
    sys.path.insert(0, str(project))
    from slm.data import load_rows
    from slm.engines import load_tokenizer
    from slm.generation import CHAT_MAX_NEW_TOKENS, TASK_MAX_NEW_TOKENS, answer_line
    from slm.metrics import score
    from slm.project import Project

    # the project first, then what the caller put on PYTHONPATH (e.g. a folder with llama-cpp-python for the quantizer)
    python_path = os.pathsep.join(filter(None, [str(project), os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "PYTHONPATH": python_path, "OLIVE_DISABLE_TELEMETRY": "1"}
    os.chdir(project)
    config = Project.load()
    task, rows = config.task, load_rows(config.eval_file, config.task)
    references = [task.reference(row) for row in rows]
    one_line = task.one_line_answer
    max_new_tokens = TASK_MAX_NEW_TOKENS if one_line else CHAT_MAX_NEW_TOKENS
    tokenizer = load_tokenizer(config.onnx_model_dir())
    trained = [task.prompt_for_row(row, tokenizer) for row in rows]

    def scored(answers):
        return score([answer_line(a) if one_line else a.strip() for a in answers], references)[1]

    table, failures = [], []
    for number in range(1, args.runs + 1):
        name, onnx = onnx_score(project, env)
        table.append((number, "ONNX (infer.py --eval)", onnx, "-"))
        for quant in [q.strip().upper() for q in args.quants.split(",") if q.strip()]:
            run([sys.executable, "inferences/export_gguf.py", "--quant", quant], project, env)
            gguf_path = project / f"gen-model/gguf/{config.name}-{quant}.gguf"
            modelfile = project / "gen-model/gguf/Modelfile"
            answers, prompts = gguf_answers(project, gguf_path, modelfile, rows, max_new_tokens)
            differing = sum(p != t for p, t in zip(prompts, trained, strict=True))
            table.append((number, f"GGUF {quant} (llama-cpp-python, Modelfile)", scored(answers), differing))
        if args.foundry_python:
            try:
                answers, found = foundry_answers(
                    project, config.name, args.foundry_python, rows, task, max_new_tokens, env
                )
                table.append((number, f"Foundry Local folder (SDK; {found})", scored(answers), "-"))
            except RuntimeError as error:  # the other artefacts' scores are still printed
                failures.append(str(error))
                table.append((number, "Foundry Local folder (SDK): failed, below", float("nan"), "-"))
    print(f"{len(rows)} held-out rows of {config.eval_file.as_posix()}, {name}")
    print(f"{'run':>3}  {'artefact':<62}{name:>10}  prompts differing")
    for number, artefact, value, differing in table:
        print(f"{number:>3}  {artefact:<62}{value:>10.3f}  {differing}")
    for failure in failures:
        print(f"ERROR: {failure}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
