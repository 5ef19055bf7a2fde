"""slm/train/trainer_methods.py: what olive run adds to transformers.Trainer is installed again each time Olive imports
the pre-processing, and each Trainer then carries it once, with the last settings."""

import transformers

from slm.train.early_stopping import StopWhenValidationStalls, stop_early_after
from slm.train.labelled_logits import logits_only_where_labelled


def test_installing_again_wraps_transformers_own_methods_once(tmp_path, monkeypatch):
    for name in ("__init__", "compute_loss"):  # transformers' own, whatever an earlier test installed
        method = getattr(transformers.Trainer, name)
        monkeypatch.setattr(transformers.Trainer, name, getattr(method, "transformers_method", method))
    own_build, own_loss = transformers.Trainer.__init__, transformers.Trainer.compute_loss
    for patience in (3, 2):
        stop_early_after(patience)
        logits_only_where_labelled()
    assert transformers.Trainer.__init__.transformers_method is own_build
    assert transformers.Trainer.compute_loss.transformers_method is own_loss
    model = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(
            vocab_size=16, hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2
        )
    )
    arguments = transformers.TrainingArguments(output_dir=str(tmp_path), report_to=[], use_cpu=True)
    stoppers = [
        callback
        for callback in transformers.Trainer(model=model, args=arguments).callback_handler.callbacks
        if isinstance(callback, StopWhenValidationStalls)
    ]
    assert [stopper.early_stopping_patience for stopper in stoppers] == [2]
