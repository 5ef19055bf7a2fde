"""How close decoding runs to the machine's memory bandwidth.

Generating one token reads every weight the forward pass multiplies with (each MatMul's
packed weights and scales, the LM head), but only one row of an embedding table that is
used by a Gather alone. For a tied-embedding model (SmolLM2, Phi-4 mini) the table is
also the LM head and is therefore read in full, once.

    bytes/token x decode tokens/s = GB/s of weights streamed,

to set beside `probe_memory_bandwidth()`, a large numpy copy on this machine. The KV cache
and activations are left out (small against the weights for short answers), so the figure
is a lower bound on the real traffic. Small models can sit partly in the CPU's last-level
cache, so the ratio can exceed 1.
"""

import statistics
import time
from pathlib import Path

# ops that read only the rows they are asked for, when the weight is their data input
GATHER_OPS = {"Gather", "GatherBlockQuantized", "GatherND"}
# ops that only re-label a tensor: follow their output to the real reader
PASS_THROUGH_OPS = {"Reshape", "Transpose", "Cast", "Identity", "Squeeze", "Unsqueeze"}


def _tensor_bytes(initializer):
    import onnx

    count = 1
    for dim in initializer.dims:
        count *= dim
    if initializer.data_type in (onnx.TensorProto.INT4, onnx.TensorProto.UINT4):
        return (count + 1) // 2
    return count * onnx.helper.tensor_dtype_to_np_dtype(initializer.data_type).itemsize


def onnx_weight_bytes_per_token(onnx_path):
    """(bytes read per decoded token, bytes of all initializers) for one ONNX graph (no external data loaded)."""
    import onnx

    graph = onnx.load(str(onnx_path), load_external_data=False).graph
    consumers = {}
    for node in graph.node:
        for position, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, position))

    def gather_only(name, depth=0):
        """True when every reader of `name` is a gather on its data input (through pass-through ops)."""
        readers = consumers.get(name, [])
        if not readers or depth > 8:
            return False
        for node, position in readers:
            # input 1 of a gather is the indices; the others (data, and for GatherBlockQuantized
            # its scales and zero points) are read one row per index
            if node.op_type in GATHER_OPS and position != 1:
                continue
            if node.op_type in PASS_THROUGH_OPS and position == 0:
                if all(gather_only(output, depth + 1) for output in node.output):
                    continue
            return False
        return True

    read, total = 0, 0
    for initializer in graph.initializer:
        size = _tensor_bytes(initializer)
        total += size
        if gather_only(initializer.name) and initializer.dims:
            read += size // initializer.dims[0]  # one row of the table (rows are the first dimension)
        else:
            read += size
    return read, total


def gguf_weight_bytes_per_token(gguf_path):
    """(bytes read per decoded token, bytes of all tensors) for a GGUF model.

    token_embd is a lookup table unless the model has no separate output.weight, in which
    case llama.cpp uses token_embd as the LM head too and reads it in full.
    """
    from gguf import GGUFReader

    tensors = {t.name: int(t.n_bytes) for t in GGUFReader(str(gguf_path)).tensors}
    total = sum(tensors.values())
    read = total
    if "output.weight" in tensors and "token_embd.weight" in tensors:
        rows = 1
        for t in GGUFReader(str(gguf_path)).tensors:
            if t.name == "token_embd.weight":
                rows = int(t.shape[-1])  # gguf shapes list the row length first
        read -= tensors["token_embd.weight"] - tensors["token_embd.weight"] // rows
    return read, total


def torch_weight_bytes_per_token(model_dir):
    """(bytes read per decoded token, bytes of all tensors) for a Hugging Face safetensors model."""
    import json

    from safetensors import safe_open

    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    sizes, rows = {}, {}
    for file in sorted(model_dir.glob("*.safetensors")):
        with safe_open(str(file), framework="numpy") as handle:
            for name in handle.keys():
                piece = handle.get_slice(name)
                shape = piece.get_shape()
                count = 1
                for dim in shape:
                    count *= dim
                sizes[name] = count * _safetensors_itemsize(piece.get_dtype())
                rows[name] = shape[0] if shape else 1
    total = sum(sizes.values())
    read = total
    tied = config.get("tie_word_embeddings", False)
    for name, size in sizes.items():
        if name.endswith("embed_tokens.weight") and not tied:
            read -= size - size // rows[name]
    return read, total


def _safetensors_itemsize(dtype):
    return {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}[dtype]


def weight_bytes_per_token(model_path):
    """Dispatch on what model_path holds: an ONNX folder/file, a GGUF folder/file, or a safetensors folder."""
    path = Path(model_path)
    if path.is_file():
        files = [path]
    else:
        files = sorted(path.glob("*.onnx")) or sorted(path.glob("*.gguf")) or sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"no .onnx, .gguf or .safetensors model in {path}")
    if files[0].suffix == ".onnx":
        read = total = 0
        for file in files:
            r, t = onnx_weight_bytes_per_token(file)
            read, total = read + r, total + t
        return read, total
    if files[0].suffix == ".gguf":
        return gguf_weight_bytes_per_token(files[0])
    return torch_weight_bytes_per_token(files[0].parent)


def decode_bandwidth_gbs(bytes_per_token, tokens_per_second):
    """GB/s (10^9 bytes) of weights streamed while decoding."""
    return bytes_per_token * tokens_per_second / 1e9


def probe_memory_bandwidth(megabytes=256, repeats=5):
    """Median GB/s of a large numpy array copy (bytes read + bytes written, over the copy time)."""
    import numpy as np

    source = np.ones(megabytes * 2**20 // 8, dtype=np.float64)
    target = np.empty_like(source)
    np.copyto(target, source)  # touch the pages once
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(target, source)
        seconds = time.perf_counter() - start
        rates.append(2 * source.nbytes / seconds / 1e9)
    return statistics.median(rates)
