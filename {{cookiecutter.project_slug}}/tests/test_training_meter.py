"""The training meter (slm/train/training_meter.py): off unless asked; asked, a Trainer's steps timed and counted."""

import json

import pytest
import torch
import transformers

from slm.train import training_meter


@pytest.fixture
def unmetered_trainer(monkeypatch):
    """transformers.Trainer as it was before the test, whatever the test installs on it."""
    monkeypatch.setattr(transformers.Trainer, "__init__", transformers.Trainer.__init__)
    monkeypatch.setattr(transformers.Trainer, "slm_metered", False, raising=False)


def tiny_training(output_dir, rows=6, length=5, pad=2):
    """Two steps of 3 rows on a tiny Llama, each row `length` tokens and `pad` padding; returns the model."""
    config = transformers.LlamaConfig(
        vocab_size=32, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2
    )
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(config)
    row = {
        "input_ids": torch.arange(1, length + pad + 1),
        "attention_mask": torch.tensor([1] * length + [0] * pad),
        "labels": torch.arange(1, length + pad + 1),
    }
    arguments = transformers.TrainingArguments(
        output_dir=str(output_dir), max_steps=2, per_device_train_batch_size=3, report_to=[], save_strategy="no"
    )
    transformers.Trainer(model=model, args=arguments, train_dataset=[row] * rows).train()
    return model


def test_nothing_is_measured_unless_asked(unmetered_trainer, monkeypatch, tmp_path):
    monkeypatch.delenv(training_meter.METER_VARIABLE, raising=False)
    build = transformers.Trainer.__init__
    training_meter.meter_training_when_asked()
    assert transformers.Trainer.__init__ is build


def test_each_step_is_timed_and_its_tokens_counted_without_padding(unmetered_trainer, monkeypatch, tmp_path):
    meter_file = tmp_path / "meter.json"
    monkeypatch.setenv(training_meter.METER_VARIABLE, str(meter_file))
    training_meter.meter_training_when_asked()
    training_meter.meter_training_when_asked()  # once only, however often Olive imports the data script
    model = tiny_training(tmp_path / "out")
    measured = json.loads(meter_file.read_text())
    assert measured["step_tokens"] == [3 * 5, 3 * 5]
    assert len(measured["step_seconds"]) == 2 and all(seconds > 0 for seconds in measured["step_seconds"])
    assert measured["trainable_parameters"] == sum(p.numel() for p in model.parameters())  # all of it trains here
    assert measured["peak_gpu_bytes"] is None or measured["gpu"]
