"""slm/train/labelled_logits.py: the Trainer's loss from the labelled positions' logits only is the loss, and the
gradient, of the whole-vocabulary computation, on a tiny LoRA model (PEFT's, as Olive's LoRA pass builds it) of each
architecture the model table trains."""

import pytest
import torch
import transformers
from peft import LoraConfig, get_peft_model
from torch import nn

from slm.train import labelled_logits

TINY = {"vocab_size": 300, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
TINY |= {"num_attention_heads": 4, "num_key_value_heads": 4, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
ARCHITECTURES = {
    "llama": (transformers.LlamaConfig, transformers.LlamaForCausalLM),  # SmolLM2
    "phi3": (transformers.Phi3Config, transformers.Phi3ForCausalLM),  # Phi-3-mini, Phi-4-mini
}


def answer_only_batch():
    """Three rows, the last one padded, each with a few answer labels after a prompt of -100 (olive_data.py's)."""
    torch.manual_seed(0)
    ids = torch.randint(3, TINY["vocab_size"], (3, 16))
    attention = torch.ones_like(ids)
    attention[2, 12:] = 0
    labels = torch.full_like(ids, labelled_logits.IGNORE_INDEX)
    for row, (start, end) in enumerate([(9, 16), (13, 16), (8, 12)]):
        labels[row, start:end] = ids[row, start:end]
    return {"input_ids": ids, "attention_mask": attention, "labels": labels}


def loss_and_gradient(trainer, model, inputs):
    model.zero_grad()
    loss, outputs = trainer.compute_loss(model, dict(inputs), return_outputs=True, num_items_in_batch=None)
    loss.backward()
    gradient = torch.cat([p.grad.flatten() for p in model.parameters() if p.requires_grad])
    return loss.item(), gradient, outputs.logits.shape


@pytest.mark.parametrize("architecture", ARCHITECTURES)
def test_the_trainer_loss_from_labelled_logits_is_the_whole_vocabulary_loss(architecture, tmp_path, monkeypatch):
    config_class, model_class = ARCHITECTURES[architecture]
    torch.manual_seed(0)
    model = get_peft_model(model_class(config_class(**TINY)), LoraConfig(r=4, target_modules="all-linear"))
    arguments = transformers.TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    inputs = answer_only_batch()
    monkeypatch.setattr(transformers.Trainer, "compute_loss", transformers.Trainer.compute_loss)
    whole = loss_and_gradient(transformers.Trainer(model=model, args=arguments), model, inputs)
    labelled_logits.logits_only_where_labelled()
    labelled_logits.logits_only_where_labelled()  # installed twice (olive_data.py imported again): wrapped once
    assert not hasattr(transformers.Trainer.compute_loss.transformers_method, "transformers_method")
    labelled = loss_and_gradient(transformers.Trainer(model=model, args=arguments), model, inputs)
    labels = int((inputs["labels"][:, 1:] != labelled_logits.IGNORE_INDEX).sum())  # each label after the first token
    assert whole[2] == (3, 16, TINY["vocab_size"]) and labelled[2] == (labels, TINY["vocab_size"])
    assert labelled[0] == pytest.approx(whole[0], rel=1e-6)
    assert torch.allclose(labelled[1], whole[1], atol=1e-6)


class OwnHead(nn.Module):
    """A model whose code does not slice with transformers' slice_logits_to_keep (remote code, an old class)."""

    def forward(self, **inputs):
        raise AssertionError("not called")


def test_a_model_that_does_not_slice_its_logits_by_a_mask_is_trained_as_before(monkeypatch):
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY))
    assert labelled_logits.slices_logits(model)
    assert not labelled_logits.slices_logits(OwnHead())
    # a transformers whose slicing takes positions only
    modeling = transformers.models.llama.modeling_llama
    monkeypatch.setattr(modeling, "slice_logits_to_keep", lambda hidden, keep: hidden[:, keep, :])
    assert not labelled_logits.slices_logits(model)
