"""Bytes of weights read per decoded token, on tiny hand-built models with known sizes."""

import json

import numpy as np
import pytest

from slm.bench import bandwidth

VOCAB, HIDDEN = 100, 8


def _onnx_model(path, tied, via_reshape=False):
    """input_ids -> Gather(embedding) -> MatMul(lm_head) -> logits; tied: the LM head is the transposed table."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    table = numpy_helper.from_array(np.ones((VOCAB, HIDDEN), np.float32), "embed")
    nodes, inits = [], [table]
    data = "embed"
    if via_reshape:
        inits.append(numpy_helper.from_array(np.array([VOCAB, HIDDEN], np.int64), "shape"))
        nodes.append(helper.make_node("Reshape", ["embed", "shape"], ["embed_r"]))
        data = "embed_r"
    nodes.append(helper.make_node("Gather", [data, "input_ids"], ["hidden"]))
    if tied:
        nodes.append(helper.make_node("Transpose", ["embed"], ["head"], perm=[1, 0]))
    else:
        inits.append(numpy_helper.from_array(np.ones((HIDDEN, VOCAB), np.float32), "head"))
    nodes.append(helper.make_node("MatMul", ["hidden", "head"], ["logits"]))
    graph = helper.make_graph(
        nodes,
        "g",
        [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, [1, VOCAB])],
        inits,
    )
    onnx.save(helper.make_model(graph), str(path))
    return path


def test_untied_onnx_reads_one_embedding_row_and_the_whole_head(tmp_path):
    read, total = bandwidth.weight_bytes_per_token(_onnx_model(tmp_path / "m.onnx", tied=False))
    assert total == 2 * VOCAB * HIDDEN * 4
    assert read == HIDDEN * 4 + VOCAB * HIDDEN * 4


def test_gather_behind_a_reshape_still_reads_one_row(tmp_path):
    read, _ = bandwidth.weight_bytes_per_token(_onnx_model(tmp_path / "m.onnx", tied=False, via_reshape=True))
    assert read == HIDDEN * 4 + VOCAB * HIDDEN * 4 + 2 * 8  # + the shape constant


def test_tied_onnx_reads_the_shared_table_once_in_full(tmp_path):
    read, total = bandwidth.weight_bytes_per_token(_onnx_model(tmp_path / "m.onnx", tied=True))
    assert read == total == VOCAB * HIDDEN * 4


def _gguf(path, with_output):
    import gguf

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("token_embd.weight", np.ones((VOCAB, HIDDEN), np.float32))
    writer.add_tensor("blk.0.attn_q.weight", np.ones((HIDDEN, HIDDEN), np.float32))
    if with_output:
        writer.add_tensor("output.weight", np.ones((VOCAB, HIDDEN), np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def test_gguf_with_separate_output_reads_one_embedding_row(tmp_path):
    read, total = bandwidth.weight_bytes_per_token(_gguf(tmp_path / "m.gguf", with_output=True))
    assert total == (2 * VOCAB * HIDDEN + HIDDEN * HIDDEN) * 4
    assert read == (HIDDEN + VOCAB * HIDDEN + HIDDEN * HIDDEN) * 4


def test_gguf_without_output_uses_the_embedding_as_lm_head(tmp_path):
    read, total = bandwidth.weight_bytes_per_token(_gguf(tmp_path / "m.gguf", with_output=False))
    assert read == total == (VOCAB * HIDDEN + HIDDEN * HIDDEN) * 4


@pytest.mark.parametrize("tied", [True, False])
def test_safetensors_model_counts_the_embedding_by_tying(tmp_path, tied):
    from safetensors.numpy import save_file

    tensors = {"model.embed_tokens.weight": np.ones((VOCAB, HIDDEN), np.float32)}
    if not tied:
        tensors["lm_head.weight"] = np.ones((VOCAB, HIDDEN), np.float32)
    save_file(tensors, str(tmp_path / "model.safetensors"))
    (tmp_path / "config.json").write_text(json.dumps({"tie_word_embeddings": tied}))
    read, total = bandwidth.weight_bytes_per_token(tmp_path)
    assert read == (VOCAB * HIDDEN * 4 if tied else HIDDEN * 4 + VOCAB * HIDDEN * 4)


def test_an_empty_folder_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="no .onnx"):
        bandwidth.weight_bytes_per_token(tmp_path)


def test_bandwidth_arithmetic_and_probe():
    assert bandwidth.decode_bandwidth_gbs(50_000_000, 200) == pytest.approx(10.0)
    assert bandwidth.probe_memory_bandwidth(megabytes=16, repeats=3) > 0.1
