"""Greedy text generation behind one interface, on ONNX Runtime GenAI or on PyTorch.

Both engines take the same token ids (encoded once by the Hugging Face tokenizer saved
with the model, exactly as Olive tokenised the training text) and yield token ids one
at a time, so infer.py, benchmark.py and serve.py compare like with like.
"""

import json
import os
from collections.abc import Iterator
from pathlib import Path

from slm.errors import UserError


def first_line(error: BaseException) -> str:
    return (str(error).strip().splitlines() or [type(error).__name__])[0]


def cpu_threads() -> int:
    """The CPUs this process may run on: the thread count every CPU engine computes with."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS and Windows have no affinity call
        return os.cpu_count() or 1


def onnx_session_overlay(genai_config: dict, device: str) -> dict | None:
    """What OnnxEngine lays over genai_config.json: on CPU, one intra-op thread per CPU, unless the file
    sets its own. When the file sets none, ONNX Runtime GenAI 0.14.1 decodes as slowly as with one thread
    (measured in docs/measurements.md of the phi3-olive-e2e template, "Speed")."""
    session_options = genai_config["model"]["decoder"].get("session_options", {})
    if device != "cpu" or "intra_op_num_threads" in session_options:
        return None
    return {"model": {"decoder": {"session_options": {"intra_op_num_threads": cpu_threads()}}}}


def genai_eos_ids(genai_config: dict) -> set[int]:
    """Every id ONNX Runtime GenAI stops at (Phi-3 ends a turn with <|end|>, not only its tokenizer's eos)."""
    eos = genai_config["model"].get("eos_token_id", [])
    return set(eos if isinstance(eos, list) else [eos])


def load_tokenizer(model_dir: str | Path):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(model_dir))


class OnnxEngine:
    """An ONNX Runtime GenAI model; with an adapter export, any number of LoRA adapters loaded by name
    and chosen per generation (`adapter=None`: the base model alone)."""

    name = "onnxruntime-genai"
    # ignore_eos goes through min_length, which keeps the runtime from choosing end-of-sequence at all:
    # the tokens after an answer then differ from a plain run's, so the benchmark scores a plain run
    ignore_eos_changes_tokens = True

    def __init__(self, model_dir: str | Path, device: str = "cpu") -> None:
        import onnxruntime_genai as og

        self._og = og
        self.model_dir = Path(model_dir)
        self.adapters = None  # og.Adapters, made when the first adapter is loaded
        genai_config = json.loads((self.model_dir / "genai_config.json").read_text(encoding="utf-8"))
        config = og.Config(str(model_dir))
        overlay = onnx_session_overlay(genai_config, device)
        if overlay:
            config.overlay(json.dumps(overlay))
        self.threads = None  # intra-op threads on CPU, as the benchmark reports them (0: ONNX Runtime's default)
        if device == "cpu":
            self.threads = (overlay or genai_config)["model"]["decoder"]["session_options"]["intra_op_num_threads"]
        config.clear_providers()
        if device == "cuda":
            config.append_provider("cuda")
        self.model = og.Model(config)
        self.context_length = genai_config["model"]["context_length"]
        self.eos_ids = genai_eos_ids(genai_config)

    @property
    def runtime(self):
        """The onnxruntime_genai module this engine runs on (og.Engine, og.Generator, ...)."""
        return self._og

    def load_adapter(self, name: str, path: str | Path) -> None:
        """Load an .onnx_adapter file as `name`; a missing, corrupt or mismatched file is a UserError."""
        path = Path(path)
        if not path.is_file():
            raise UserError(f"no adapter file {path.as_posix()}; give an .onnx_adapter file written by olive run")
        if self.adapters is None:
            self.adapters = self._og.Adapters(self.model)
        try:
            self.adapters.load(str(path), name)
        except Exception as error:
            raise UserError(f"{path.as_posix()} is not an ONNX Runtime adapter file ({first_line(error)})") from None
        try:  # a file made for another base model loads, and fails at the first step: find out now
            list(self.generate_ids([0], 1, adapter=name))
        except Exception as error:
            raise UserError(
                f"{path.as_posix()} does not fit the model in {self.model_dir.as_posix()}: it was made for another "
                f"base model, or the model was exported without adapter inputs (export=merged) ({first_line(error)})"
            ) from None

    def generator(
        self, prompt_ids: list[int], search_options: dict, guidance_regex: str | None = None, adapter: str | None = None
    ):
        """An og.Generator with the prompt appended, on the loaded adapter `adapter` (None: none)."""
        params = self._og.GeneratorParams(self.model)
        if guidance_regex:
            # the runtime masks every token that would leave the regex, so the answer always matches it
            params.set_guidance("regex", guidance_regex)
        params.set_search_options(**search_options)
        generator = self._og.Generator(self.model, params)
        if adapter is not None:
            generator.set_active_adapter(self.adapters, adapter)
        generator.append_tokens(list(prompt_ids))
        return generator

    def generate_ids(
        self,
        prompt_ids: list[int],
        max_new_tokens: int,
        ignore_eos: bool = False,
        guidance_regex: str | None = None,
        adapter: str | None = None,
    ) -> Iterator[int]:
        max_length = len(prompt_ids) + max_new_tokens
        # ignore_eos: always produce max_new_tokens, so engines are timed on equal work
        min_length = max_length if ignore_eos else 0
        options = {"max_length": max_length, "min_length": min_length, "do_sample": False}
        generator = self.generator(prompt_ids, options, guidance_regex, adapter)
        while not generator.is_done():
            generator.generate_next_token()
            yield int(generator.get_next_tokens()[0])


class TorchEngine:
    name = "pytorch"
    ignore_eos_changes_tokens = False  # it picks end-of-sequence as usual and generates on past it

    def __init__(
        self, model_dir: str | Path, device: str = "cpu", lora_dir: str | Path | None = None, dtype: str = "float32"
    ) -> None:
        """lora_dir: a PEFT LoRA adapter folder, merged into the model's weights before timing; dtype: a torch
        dtype's name, the weights' type in memory."""
        import torch
        from transformers import AutoModelForCausalLM

        self._torch = torch
        self.device = device
        self.threads = None
        if device == "cpu":
            torch.set_num_threads(cpu_threads())
            self.threads = torch.get_num_threads()
        self.model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype=getattr(torch, dtype))
        if lora_dir:
            from peft import PeftModel

            self.model = PeftModel.from_pretrained(self.model, str(lora_dir)).merge_and_unload()
        self.model = self.model.to(device)
        self.model.eval()
        self.context_length = self.model.config.max_position_embeddings
        eos = self.model.generation_config.eos_token_id
        self.eos_ids = set(eos if isinstance(eos, list) else [eos])

    def generate_ids(self, prompt_ids: list[int], max_new_tokens: int, ignore_eos: bool = False) -> Iterator[int]:
        # the same greedy loop model.generate runs, written out so each token can be timed
        torch = self._torch
        with torch.inference_mode():
            inputs = torch.tensor([prompt_ids], device=self.device)
            cache = None
            for _ in range(max_new_tokens):
                # `cache` is the pinned transformers' name for what older releases called past_key_values
                output = self.model(input_ids=inputs, cache=cache, use_cache=True)
                cache = output.cache
                token = int(output.logits[0, -1].argmax())
                yield token
                if token in self.eos_ids and not ignore_eos:
                    return
                inputs = torch.tensor([[token]], device=self.device)


ENGINES = {"onnx": OnnxEngine, "torch": TorchEngine}


WEIGHT_SUFFIXES = {".onnx", ".data", ".safetensors", ".bin", ".gguf"}


def weights_size_bytes(path: str | Path) -> int:
    """Bytes of a model folder's weight and graph files (tokenizer, configs and adapter files left out),
    or of one file."""
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and p.suffix in WEIGHT_SUFFIXES)
