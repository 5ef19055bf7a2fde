"""The int4 export one MatMul at a time (slm/export/int4_by_tensor.py) writes what ModelBuilder's whole-model
quantization writes: the same weights file byte for byte, every initializer in the same order, every node, for
each int4 recipe the template offers, with the lm_head quantized in slices (the slice size made small so that
the tiny model's lm_head is cut in three); also with tied embeddings (Phi-4-mini's), where the embedding reads
the quantized lm_head."""

from types import SimpleNamespace

import pytest
from conftest import BakedProject

pytestmark = pytest.mark.stack

RECIPES = {
    "rtn_last": {"int4_algo_config": "rtn_last"},
    "k_quant_mixed": {"int4_algo_config": "k_quant_mixed"},
    "default": {"int4_algo_config": "default"},
    "default asymmetric": {"int4_algo_config": "default", "int4_is_symmetric": False},
}


def built(model_dir, out_dir, options):
    import onnx
    from onnxruntime_genai.models.builder import create_model

    create_model(
        "microsoft/Phi-3-mini-4k-instruct",
        str(model_dir),
        str(out_dir),
        "int4",
        "cpu",
        str(out_dir / "cache"),
        # typed, as Olive's ModelBuilder pass passes them (the builder parses strings only on its command line)
        int4_block_size=32,
        int4_accuracy_level=4,
        **options,
    )
    return onnx.load(str(out_dir / "model.onnx"), load_external_data=True)


def contents(model):
    from onnx import helper, numpy_helper

    nodes = sorted(
        (
            n.name,
            n.op_type,
            n.domain,
            tuple(n.input),
            tuple(n.output),
            str(sorted(helper.printable_attribute(a) for a in n.attribute)),
        )
        for n in model.graph.node
    )
    weights = {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}
    opsets = {o.domain: o.version for o in model.opset_import}
    return nodes, weights, opsets


@pytest.fixture(scope="module")
def tiny_tied_dir(tiny_phi3_dir, tmp_path_factory):
    """The tiny Phi-3 with tied input and output embeddings, as Phi-4-mini has them."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_phi3_dir)
    model.config.tie_word_embeddings = True
    model.tie_weights()
    folder = tmp_path_factory.mktemp("tiny-tied")
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(tiny_phi3_dir).save_pretrained(folder)
    return folder


CASES = [(recipe, False) for recipe in RECIPES] + [("rtn_last", True), ("default", True)]


@pytest.mark.parametrize(("recipe", "tied"), CASES, ids=[f"{r}{' tied' if t else ''}" for r, t in CASES])
def test_one_matmul_at_a_time_writes_the_whole_model_quantization(
    recipe, tied, request, demo_model_dir, tmp_path, monkeypatch
):
    import numpy as np
    from onnxruntime_genai.models.builder import Model  # the copy the builder uses (int4_by_tensor.py)

    model_dir = request.getfixturevalue("tiny_tied_dir" if tied else "tiny_phi3_dir")

    # a baked project's slm package (another project's may be loaded already: BakedProject.module replaces it)
    int4_by_tensor = BakedProject(SimpleNamespace(project_path=demo_model_dir.parents[1])).module(
        "slm.export.int4_by_tensor"
    )
    whole_to_int4 = getattr(Model.to_int4, "__wrapped__", Model.to_int4)  # unpatched, whatever ran before
    monkeypatch.setattr(Model, "to_int4", whole_to_int4)
    whole = built(model_dir, tmp_path / "whole", RECIPES[recipe])

    monkeypatch.setattr(int4_by_tensor, "CHUNK_VALUES", 2**20)  # the tiny lm_head, 64 x 49,152, in three slices
    joined = []
    join = int4_by_tensor._joined
    monkeypatch.setattr(int4_by_tensor, "_joined", lambda pieces: joined.append(len(pieces)) or join(pieces))
    monkeypatch.setattr(
        Model, "to_int4", lambda self: int4_by_tensor.quantize_one_matmul_at_a_time(self, whole_to_int4)
    )
    by_tensor = built(model_dir, tmp_path / "by-tensor", RECIPES[recipe])

    whole_nodes, whole_weights, whole_opsets = contents(whole)
    nodes, weights, opsets = contents(by_tensor)
    assert joined == [3]  # the lm_head, the one weight over the slice size
    assert sum(op == "MatMulNBits" for _, op, *_ in nodes) == 2 * 5 + 1  # qkv, o, gate, up, down per layer; lm_head
    if tied and recipe == "rtn_last":  # the embedding reads lm_head's int8 weight (GatherBlockQuantized)
        assert any(op == "GatherBlockQuantized" for _, op, *_ in nodes)
    assert nodes == whole_nodes
    assert opsets == whole_opsets
    assert list(weights) == list(whole_weights)  # in the same order (the largest weight is quantized first)
    for name, value in whole_weights.items():
        assert weights[name].dtype == value.dtype and np.array_equal(weights[name], value), name
    data = [(tmp_path / run / "model.onnx.data").read_bytes() for run in ("whole", "by-tensor")]
    assert data[0] == data[1]
