"""ModelBuilder's int4 quantization one weight at a time: what makes a full-size Phi export fit a 16 GB machine.

onnxruntime-genai 0.14.1's builder keeps every MatMul weight as a lazy cast of the PyTorch model's tensor and
quantizes at the end (`Model.to_int4`): it turns the whole graph into one protobuf, every weight cast to fp32
(15.2 GB for Phi-3-mini, on top of the 7.6 GB PyTorch model in bfloat16), then hands it to onnxruntime's
MatMulNBitsQuantizer. Measured at full size: the export was killed at 22.1 GiB; one weight at a time, the whole
`olive run` peaks at 11.6 GiB (Phi-4-mini: 13.4 GiB; docs/measurements.md, "The int4 build one weight at a time").

`quantize_one_matmul_at_a_time` gives the same quantizer, with the same settings, one MatMul at a time: a graph
of that one node and its weight, quantized, and the result put where the MatMul was. Only one weight is ever in
fp32; a weight over CHUNK_VALUES (Phi-4-mini's 200,064 x 3,072 lm_head) is quantized in slices of its output
columns and the slices joined, since every recipe the builder offers quantizes each output column's blocks on
their own. The output is the whole-model path's, initializer for initializer (tests/test_int4_by_tensor.py).
Graphs it does not cover (QDQ format, Gather quantization, a weight two nodes share) take the builder's own path.

Installed inside `olive run` by slm/train/olive_data.py (`use_for_modelbuilder`), only on the pinned
onnxruntime-genai: on another, an ERROR line says which to install (the builder may have changed).
"""

import functools
import math
import re
import sys
from importlib import metadata

import numpy as np

from slm.olive_compat import REQUIREMENTS

# the largest weight quantized in one piece, in values (256 MB in fp32): Phi-3-mini's largest, gate_up_proj's
# 3,072 x 16,384, is one piece; Phi-3's lm_head is two, Phi-4-mini's ten
CHUNK_VALUES = 64 * 2**20
GENAI_PIN = re.compile(r"^(onnxruntime-genai(?:-cuda)?)==(\S+)\s*$", re.MULTILINE)


@functools.cache
def check_genai_version() -> None:
    """Stop with one `ERROR:` line when the installed onnxruntime-genai is not the pinned one this adapts."""
    text = REQUIREMENTS.read_text(encoding="utf-8") if REQUIREMENTS.is_file() else ""
    pin = GENAI_PIN.search(text)
    if pin is None:
        return
    tested = pin.group(2)
    # the CPU and the CUDA build install the same module under two names (a cuda project's pin may be the other's)
    for package in ("onnxruntime-genai", "onnxruntime-genai-cuda"):
        try:
            installed = metadata.version(package)
            break
        except metadata.PackageNotFoundError:
            continue
    else:
        return  # no builder to patch: importing it says so
    if installed != tested:
        sys.exit(
            f"ERROR: {package} {installed} is installed, but this project's int4 export "
            f"(slm/export/int4_by_tensor.py) was tested with {package} {tested} only: run "
            f"`pip install {package}=={tested}` in .venv (or `python setup/install.py`)"
        )


def _quantizer_settings(builder) -> dict:
    """The keyword arguments the builder's own to_int4 gives MatMulNBitsQuantizer."""
    from onnxruntime.quantization.matmul_nbits_quantizer import QuantFormat

    attrs = builder.quant_attrs["int4"]
    return {
        "block_size": attrs["qdq_block_size"],
        "is_symmetric": attrs["is_symmetric"],
        "accuracy_level": attrs["accuracy_level"],
        "nodes_to_exclude": attrs["nodes_to_exclude"],
        "quant_format": QuantFormat.QDQ if builder.quant_attrs["use_qdq"] else QuantFormat.QOperator,
        "op_types_to_quantize": attrs["op_types_to_quantize"],
        "algo_config": attrs["algo_config"],
    }


def _matmuls_to_quantize(graph, settings: dict) -> list | None:
    """The MatMul nodes whose weight is an initializer of their own; None when the graph needs the whole-model
    path (another op type to quantize, QDQ format, or a weight shared by two nodes)."""
    from onnxruntime.quantization.matmul_nbits_quantizer import QuantFormat

    if tuple(settings["op_types_to_quantize"]) != ("MatMul",) or settings["quant_format"] != QuantFormat.QOperator:
        return None
    nodes = []
    for node in graph:
        if node.op_type != "MatMul" or node.name in settings["nodes_to_exclude"]:
            continue
        weight = node.inputs[1]
        if weight is None or not weight.is_initializer():
            continue
        if len(weight.uses()) != 1:
            return None
        nodes.append(node)
    return nodes


def _quantize_alone(node, weight: np.ndarray, settings: dict, opset_imports: dict, ir_version: int):
    """`node` with `weight` as its whole graph, through MatMulNBitsQuantizer: the quantized graph."""
    import onnx
    import onnx_ir as ir
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    source, output = node.inputs[0], node.outputs[0]
    rows = ir.Value(name=source.name, type=source.type, shape=source.shape)
    weights = ir.Value(name=node.inputs[1].name, const_value=ir.tensor(weight, name=node.inputs[1].name))
    matmul = ir.Node("", "MatMul", [rows, weights], name=node.name, num_outputs=1)
    result = matmul.outputs[0]
    result.name = output.name
    result.type, result.shape = output.type, output.shape
    graph = ir.Graph([rows], [result], nodes=[matmul], initializers=[weights], opset_imports=dict(opset_imports))
    quantizer = MatMulNBitsQuantizer(model=ir.to_proto(ir.Model(graph, ir_version=ir_version)), **settings)
    quantizer.process()
    # the quantized graph's tensors keep their protobuf alive, and a protobuf message frees nothing it dropped
    # until it dies (its arena): read back from bytes, it holds the int4 weight alone, not the float32 one
    # too (without this, a float32 copy of every weight stayed in memory: 5.8 GiB at 4 layers of Phi-3-mini)
    return ir.from_proto(onnx.ModelProto.FromString(quantizer.model.model.SerializeToString())).graph


def _joined(pieces: list):
    """The quantized graphs of a weight's column slices as one: every initializer joined along its first axis
    (the output columns), the node's N the sum. Only for a single MatMulNBits node, which holds nothing else
    that depends on N."""
    import onnx_ir as ir

    first = pieces[0]
    (node,) = list(first)
    if node.op_type != "MatMulNBits":
        raise ValueError(f"a sliced weight quantized to {node.op_type}, not MatMulNBits")
    for name, value in first.initializers.items():
        joined = np.concatenate([piece.initializers[name].const_value.numpy() for piece in pieces], axis=0)
        value.const_value = ir.tensor(joined, name=name)
        value.shape = ir.Shape(joined.shape)
    node.attributes["N"] = ir.AttrInt64("N", sum(piece.node(0).attributes["N"].value for piece in pieces))
    return first


def _quantized(node, settings: dict, opset_imports: dict, ir_version: int):
    weight = node.inputs[1].const_value.numpy()
    if weight.ndim != 2 or weight.size <= CHUNK_VALUES:
        return _quantize_alone(node, weight, settings, opset_imports, ir_version)
    columns = max(1, CHUNK_VALUES // weight.shape[0])
    pieces = [
        _quantize_alone(
            node, np.ascontiguousarray(weight[:, start : start + columns]), settings, opset_imports, ir_version
        )
        for start in range(0, weight.shape[1], columns)
    ]
    return _joined(pieces)


def _put_in_place_of(graph, node, quantized) -> None:
    """Swap `node` for the nodes of `quantized` (a graph of that one node, quantized): its input and output
    values become `node`'s, its initializers the graph's, and `node`'s weight leaves the graph."""
    from onnx_ir import convenience

    (rows,), (result,) = quantized.inputs, quantized.outputs
    new_nodes = list(quantized)
    initializers = list(quantized.initializers.values())
    convenience.replace_all_uses_with(rows, node.inputs[0])
    quantized.outputs.clear()
    quantized.remove(new_nodes)
    quantized.initializers.clear()
    weight = node.inputs[1]
    old_output = node.outputs[0]
    result.type, result.shape = old_output.type, old_output.shape
    convenience.replace_all_uses_with(old_output, result, replace_graph_outputs=True)
    graph.insert_after(node, new_nodes)
    graph.remove(node, safe=True)
    graph.initializers.pop(weight.name)
    # the builder's lazy cast keeps the float32 weight it made once read: without this every quantized weight
    # stays in memory in float32 until the model is saved (7.3 GiB at 4 layers of Phi-3-mini)
    weight.const_value = None
    result.name = old_output.name
    for value in initializers:
        graph.register_initializer(value)


def quantize_one_matmul_at_a_time(builder, whole_model_to_int4):
    """The builder's `to_int4`, one MatMul at a time (the module docstring says why)."""
    settings = _quantizer_settings(builder)
    model = builder.model
    nodes = _matmuls_to_quantize(model.graph, settings)
    if nodes is None:
        return whole_model_to_int4(builder)
    print(f"int4: quantizing {len(nodes)} weights one at a time (slm/export/int4_by_tensor.py)", flush=True)
    opset_imports = dict(model.opset_imports)
    added = {}
    # the largest first (the lm_head): its float32 copy is the largest, and no int4 result is in memory yet
    # (Phi-4-mini's 200,064 x 3,072 lm_head last, the full-size builder peaked at 14.3 GiB; first, 13.0-13.4 GiB:
    # docs/measurements.md, "The int4 build one weight at a time")
    for node in sorted(nodes, key=lambda node: math.prod(node.inputs[1].shape), reverse=True):
        quantized = _quantized(node, settings, opset_imports, model.ir_version)
        for domain, version in quantized.opset_imports.items():
            model.opset_imports[domain] = max(version, model.opset_imports.get(domain, version))
        added[node.name] = list(quantized.initializers)
        _put_in_place_of(model.graph, node, quantized)
    # the weights laid out in graph order, as the whole-model quantizer lays them out
    for node in nodes:
        for name in added[node.name]:
            model.graph.register_initializer(model.graph.initializers.pop(name))
    return model


def use_for_modelbuilder() -> None:
    """Make ModelBuilder (run by Olive's ModelBuilder pass in this process) quantize one MatMul at a time."""
    check_genai_version()
    # the builder imports its classes as the top-level package `builders` (its folder is put on sys.path), a
    # second copy of onnxruntime_genai.models.builders: patch the one it uses, as Olive's ModelBuilder pass does
    from onnxruntime_genai.models.builder import Model

    if getattr(Model.to_int4, "one_matmul_at_a_time", False):
        return
    whole_model_to_int4 = Model.to_int4

    @functools.wraps(whole_model_to_int4)
    def to_int4(self):
        return quantize_one_matmul_at_a_time(self, whole_model_to_int4)

    to_int4.one_matmul_at_a_time = True
    Model.to_int4 = to_int4
