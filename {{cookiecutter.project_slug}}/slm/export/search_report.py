"""What the export search measured: every ModelBuilder recipe `olive run` tried, and the one it kept.

Read from the footprint Olive writes beside the model (`gen-model/model/footprint.json`): each
candidate's builder settings and the scores slm/export/olive_eval.py gave it on the validation rows.
The kept one is the candidate whose graph file is the one in the model folder. Used by
fine-tuning/report.py (the table), infer.py --eval and benchmark.py (the recipe line, and the
benchmark's int4-against-fp32 line).
"""

import hashlib
from pathlib import Path

from slm.export.search_metrics import footprint_key
from slm.project import read_footprint


def recipe_name(settings: dict) -> str:
    """A builder recipe in a few words: precision, algorithm, block size, symmetry (measured: the k-quant
    graphs carry zero points with int4_is_symmetric true)."""
    if settings.get("precision") != "int4":
        return str(settings.get("precision"))
    algorithm = settings.get("int4_algo_config") or "default"
    block = f"block {settings.get('int4_block_size') or 'default'}"
    if algorithm.startswith("k_quant"):  # llama.cpp's k-quants keep a minimum per block: asymmetric whatever is set
        return f"int4 {algorithm}, {block}"
    symmetry = "symmetric" if settings.get("int4_is_symmetric", True) else "asymmetric"
    return f"int4 {algorithm}, {block}, {symmetry}"


def _graph_digest(folder: Path) -> str | None:
    graph = folder / "model.onnx"
    return hashlib.sha256(graph.read_bytes()).hexdigest() if graph.is_file() else None


def candidates(model_dir: str | Path) -> list[dict]:
    """The scored candidates in the order they were tried, each {recipe, score, fp32_score, tokens_per_second,
    size_mb, model_dir (in Olive's cache), kept}; empty when the footprint has none (no search, or no model yet)."""
    model_dir = Path(model_dir)
    nodes = read_footprint(model_dir)
    kept_digest = _graph_digest(model_dir)
    rows = []
    for node in nodes.values():
        values = ((node.get("metrics") or {}).get("value")) or {}
        if footprint_key("score") not in values:
            continue
        builder = node
        while builder and builder.get("from_pass") != "modelbuilder":  # an adapter export: the builder's child
            builder = nodes.get(builder.get("parent_model_id"))
        config = (node.get("model_config_data") or {}).get("config") or {}
        folder = Path(config["model_path"]) if config.get("model_path") else None
        fp32 = values[footprint_key("fp32_score")]["value"]
        rows.append(
            {
                "recipe": recipe_name((builder or {}).get("pass_run_config") or {}),
                "score": values[footprint_key("score")]["value"],
                "fp32_score": None if fp32 < 0 else fp32,
                "tokens_per_second": values[footprint_key("tokens_per_second")]["value"],
                "size_mb": values[footprint_key("size_mb")]["value"],
                "model_dir": str(folder) if folder else None,
                "kept": folder is not None and kept_digest is not None and _graph_digest(folder) == kept_digest,
            }
        )
    return rows


def kept_line(rows: list[dict]) -> str | None:
    """One line on the kept recipe and what it scored against the fine-tune in fp32, or None."""
    kept = next((row for row in rows if row["kept"]), None)
    if kept is None:
        return None
    against = (
        f" against {kept['fp32_score']:.3f} in fp32 ({100 * (kept['score'] - kept['fp32_score']):+.1f} points)"
        if kept["fp32_score"] is not None
        else ""
    )
    tried = f"the best of {len(rows)} tried" if len(rows) > 1 else "the only one built (search off)"
    return (
        f"export recipe: {kept['recipe']} ({tried}): validation {kept['score']:.3f}{against}, "
        f"{kept['tokens_per_second']:.1f} tokens/s"
    )


def table(rows: list[dict]) -> str:
    lines = [f"{'recipe':<40}{'validation':>11}{'fp32':>8}{'tokens/s':>10}{'MB':>8}  kept"]
    for row in rows:
        fp32 = f"{row['fp32_score']:.3f}" if row["fp32_score"] is not None else "-"
        lines.append(
            f"{row['recipe']:<40}{row['score']:>11.3f}{fp32:>8}{row['tokens_per_second']:>10.1f}"
            f"{row['size_mb']:>8.1f}  {'yes' if row['kept'] else ''}"
        )
    return "\n".join(lines)


def export_cost_lines(model_dir: str | Path, title: str, onnx: dict, torch: dict) -> list[str]:
    """benchmark.py's lines on what the export cost: the kept recipe, and the ONNX model's score on the
    held-out prompts against the same fine-tune in PyTorch (fp32)."""
    recipe = kept_line(candidates(model_dir))
    cost = (
        f"{title} against the fine-tune in PyTorch (fp32) on the {onnx['prompts']} held-out prompts: "
        f"{onnx['metric']} {onnx['score']:.3f} against {torch['score']:.3f} "
        f"({100 * (onnx['score'] - torch['score']):+.1f} points)"
    )
    return [*([recipe] if recipe else []), cost]
