"""llama.cpp as an optional peer in the benchmark, and the GGUF conversion behind it and behind the GGUF
export (slm/export/gguf.py): converter, quantizer and a LlamaCppEngine.

Nothing here is needed by training or by the ONNX model. The benchmark uses it only when
llama-cpp-python is installed in the project's environment:

    pip install llama-cpp-python==0.3.36 sentencepiece==0.2.3

(llama-cpp-python builds llama.cpp from source: about 10 minutes on 2 CPU cores; it
needs a C/C++ compiler and cmake.)

Conversion follows llama.cpp's own path:
  merged Hugging Face model --convert_hf_to_gguf.py--> f32 GGUF --llama_model_quantize--> Q4_0 / Q4_1 / Q4_K_M ...
(F16 and Q8_0 straight from the converter, which needs only sentencepiece beside the pinned stack.)
convert_hf_to_gguf.py is not part of the llama-cpp-python wheel, only of its source
distribution: `fetch_converter` downloads that sdist (with pip, from the same index) once
and keeps only the converter, its `conversion/` package and the `gguf-py/` it ships. The
converter must run with that vendored gguf-py: the `gguf==0.19.0` wheel on PyPI carries the
same version number but lacks `gguf.LazyChunkedTensor`, which the 0.3.36 converter needs.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

from slm.engines import cpu_threads
from slm.errors import UserError

PEER_VERSION = "0.3.36"
# the converter imports sentencepiece (a wheel); llama-cpp-python is needed to quantize and to run a GGUF
SENTENCEPIECE = "sentencepiece==0.2.3"
CONVERTER_PIP = f"pip install {SENTENCEPIECE}"
PEER_PIP = f"pip install llama-cpp-python=={PEER_VERSION} {SENTENCEPIECE}"
PEER_HINT = (
    "llama.cpp peer not installed: to add it to the comparison, run "
    f"`python -m {PEER_PIP}` in this project's environment "
    "(builds llama.cpp from source, about 10 minutes on 2 cores; needs a C++ compiler and cmake)"
)

# llama.cpp file types (enum llama_ftype in llama.h; the same numbers in llama_cpp.LLAMA_FTYPE_*)
QUANT_FTYPES = {
    "F32": 0,
    "F16": 1,
    "Q4_0": 2,
    "Q4_1": 3,
    "Q8_0": 7,
    "Q5_0": 8,
    "Q5_1": 9,
    "Q4_K_S": 14,
    "Q4_K_M": 15,
    "Q5_K_M": 17,
    "Q6_K": 18,
}

# the types convert_hf_to_gguf.py writes itself (its --outtype), without llama.cpp's quantizer
CONVERTER_OUTTYPES = {"F32": "f32", "F16": "f16", "Q8_0": "q8_0"}
# where the benchmark's peer and the GGUF export keep their conversions (the f32 GGUF is shared)
PEER_DIR = Path("gen-model/llama-peer")

# files the converter needs from the sdist (paths under vendor/llama.cpp/)
CONVERTER_MEMBERS = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "generation_config.json",
    "config.json",
)
GGUF_NAME = "model.gguf"


class PeerError(UserError):
    """The llama.cpp peer cannot run; the message says what to change."""


def peer_available():
    """True when llama-cpp-python can be imported in this environment."""
    return importlib.util.find_spec("llama_cpp") is not None


def converter_available():
    """True when convert_hf_to_gguf.py can run here (it needs sentencepiece beside the pinned stack)."""
    return importlib.util.find_spec("sentencepiece") is not None


def quant_ftype(quant):
    """llama.cpp's file-type number for a quantization name such as Q4_1 (case-insensitive)."""
    key = str(quant).upper()
    if key not in QUANT_FTYPES:
        raise PeerError(f"unknown llama.cpp quantization {quant!r}: use one of {', '.join(QUANT_FTYPES)}")
    return QUANT_FTYPES[key]


def converter_members(names, prefix):
    """The sdist members to extract: the converter, conversion/ and gguf-py/ under `prefix`."""
    wanted = []
    for name in names:
        if not name.startswith(prefix):
            continue
        relative = name[len(prefix) :]
        if any(relative == m or (m.endswith("/") and relative.startswith(m)) for m in CONVERTER_MEMBERS):
            wanted.append(name)
    return wanted


def fetch_converter(cache_dir, version=PEER_VERSION, sdist=None):
    """Path of convert_hf_to_gguf.py, extracted once into cache_dir from the llama-cpp-python sdist.

    sdist: a llama_cpp_python-<version>.tar.gz already on disk; without it pip downloads it.
    """
    cache_dir = Path(cache_dir)
    script = cache_dir / "convert_hf_to_gguf.py"
    if script.is_file() and (cache_dir / "conversion").is_dir() and (cache_dir / "gguf-py").is_dir():
        return script
    with tempfile.TemporaryDirectory() as tmp:
        if sdist is None:
            command = [
                sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                f"llama-cpp-python=={version}", "-d", tmp,
            ]  # fmt: skip
            if subprocess.run(command, stdout=subprocess.DEVNULL).returncode != 0:
                raise PeerError(
                    f"could not download the llama-cpp-python {version} source (`{' '.join(command)}` failed)"
                )
            found = sorted(Path(tmp).glob("llama_cpp_python-*.tar.gz"))
            if not found:
                raise PeerError(f"pip downloaded no llama_cpp_python-{version}.tar.gz into {tmp}")
            sdist = found[0]
        prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
        with tarfile.open(sdist) as archive:
            members = converter_members(archive.getnames(), prefix)
            if not any(m.endswith("/convert_hf_to_gguf.py") for m in members):
                raise PeerError(f"{sdist} has no {prefix}convert_hf_to_gguf.py (is it llama-cpp-python {version}?)")
            archive.extractall(tmp, members=[archive.getmember(m) for m in members], filter="data")
        cache_dir.mkdir(parents=True, exist_ok=True)
        source = Path(tmp) / prefix
        for item in ("conversion", "gguf-py"):
            shutil.rmtree(cache_dir / item, ignore_errors=True)
            shutil.copytree(source / item, cache_dir / item)
        shutil.copy2(source / "convert_hf_to_gguf.py", script)
    return script


def is_stale(target, sources):
    """True when target is missing or older than any existing source file."""
    target = Path(target)
    if not target.is_file():
        return True
    newest = max((Path(s).stat().st_mtime for s in sources if Path(s).is_file()), default=0)
    return target.stat().st_mtime < newest


def run_converter(merged_model_dir, outfile, outtype, script):
    """convert_hf_to_gguf.py on a merged Hugging Face model, into outfile (written under a temporary name)."""
    partial = Path(outfile).with_name(Path(outfile).name + ".partial")
    command = [sys.executable, str(script), "--outtype", outtype, "--outfile", str(partial), str(merged_model_dir)]
    # the converter puts its own gguf-py first on its import path unless NO_LOCAL_GGUF is set
    env = {k: v for k, v in os.environ.items() if k != "NO_LOCAL_GGUF"}
    try:
        result = subprocess.run(command, env=env, capture_output=True, text=True)
        if result.returncode != 0 or not partial.is_file():
            tail = (result.stderr or result.stdout).strip().splitlines()[-1:] or ["no output"]
            raise PeerError(f"convert_hf_to_gguf.py failed on {merged_model_dir}: {tail[0]}")
        os.replace(partial, outfile)
    finally:
        partial.unlink(missing_ok=True)


def convert_to_gguf(merged_model_dir, out_dir, quant="Q4_1", converter=None, threads=2):
    """Merged HF model -> out_dir/<QUANT>/model.gguf (+ tokenizer files); returns that folder.

    The types in CONVERTER_OUTTYPES are written by convert_hf_to_gguf.py itself; any other is quantized
    by llama.cpp (llama-cpp-python) from the f32 GGUF, which is kept in out_dir/F32/ and reused while it is
    newer than the merged weights.
    """
    merged_model_dir, out_dir = Path(merged_model_dir), Path(out_dir)
    ftype, quant = quant_ftype(quant), quant.upper()
    if not (merged_model_dir / "config.json").is_file():
        raise PeerError(f"no Hugging Face model in {merged_model_dir} (config.json missing)")
    weights = sorted(merged_model_dir.glob("*.safetensors")) + sorted(merged_model_dir.glob("*.bin"))
    direct = quant in CONVERTER_OUTTYPES
    source = out_dir / (quant if direct else "F32") / GGUF_NAME
    if is_stale(source, weights):
        script = Path(converter) if converter else fetch_converter(out_dir / "llama.cpp")
        source.parent.mkdir(parents=True, exist_ok=True)
        run_converter(merged_model_dir, source, CONVERTER_OUTTYPES[quant if direct else "F32"], script)
    target_dir = out_dir / quant
    target = target_dir / GGUF_NAME
    if not direct and is_stale(target, [source]):
        target_dir.mkdir(parents=True, exist_ok=True)
        quantize_gguf(source, target, ftype, threads)
    for name in TOKENIZER_FILES:
        if (merged_model_dir / name).is_file():
            shutil.copy2(merged_model_dir / name, target_dir / name)
    return target_dir


def quantize_gguf(source, target, ftype, threads=2):
    """llama.cpp's quantizer (the llama-quantize tool's library call) through llama-cpp-python."""
    import ctypes

    import llama_cpp

    llama_cpp.llama_backend_init()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = ftype
    params.nthread = threads
    partial = Path(target).with_name(Path(target).name + ".partial")
    try:
        status = llama_cpp.llama_model_quantize(str(source).encode(), str(partial).encode(), ctypes.byref(params))
        if status != 0 or not partial.is_file():
            raise PeerError(f"llama_model_quantize({source} -> {target}, ftype {ftype}) failed with status {status}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)


def gguf_file(model_path):
    """The .gguf file itself, or the single model.gguf inside a folder."""
    path = Path(model_path)
    if path.is_dir():
        path = path / GGUF_NAME
    if not path.is_file():
        raise PeerError(f"no GGUF model at {path}: convert it first (slm.bench.llama_peer.convert_to_gguf)")
    return path


class LlamaCppEngine:
    """Greedy generation on llama.cpp with the interface of slm.engines.OnnxEngine.

    Takes token ids (from the Hugging Face tokenizer saved beside the GGUF) and yields
    token ids one at a time; every call starts from an empty KV cache (no prefix reuse
    between prompts, as for the other engines).
    """

    name = "llama.cpp"
    ignore_eos_changes_tokens = False  # it picks end-of-sequence as usual and generates on past it

    def __init__(self, model_path, device="cpu", n_ctx=2048, flash_attn=None):
        if device != "cpu":
            raise PeerError("the llama.cpp peer is measured on CPU only (device=cpu)")
        from llama_cpp import Llama

        self.threads = cpu_threads()  # as many as the other engines compute with
        kwargs = {} if flash_attn is None else {"flash_attn": flash_attn}
        self.path = gguf_file(model_path)
        self.model = Llama(
            model_path=str(self.path),
            n_ctx=n_ctx,
            n_threads=self.threads,
            n_threads_batch=self.threads,
            verbose=False,
            **kwargs,
        )
        self.context_length = self.model.n_ctx()
        self.eos_ids = {self.model.token_eos()}
        # convert_to_gguf names the folder after the quantization (out_dir/Q4_1/model.gguf)
        self.name = f"llama.cpp {self.path.parent.name}"

    def generate_ids(self, prompt_ids, max_new_tokens, ignore_eos=False):
        if len(prompt_ids) + max_new_tokens > self.context_length:
            raise PeerError(f"prompt plus {max_new_tokens} new tokens exceeds n_ctx={self.context_length}")
        self.model.reset()  # n_tokens = 0: generate() then re-evaluates the whole prompt
        produced = 0
        for token in self.model.generate(list(prompt_ids), temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
            yield int(token)
            produced += 1
            if produced >= max_new_tokens or (token in self.eos_ids and not ignore_eos):
                return
