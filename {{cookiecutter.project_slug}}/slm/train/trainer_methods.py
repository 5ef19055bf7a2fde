"""How this project changes transformers.Trainer inside `olive run`: Olive 0.13's LoRA pass builds its Trainer
itself and takes no callbacks or subclass from the config, so early stopping (slm/train/early_stopping.py) and the
loss from the labelled logits (slm/train/labelled_logits.py) replace a method on the class, installed by the
training data's pre-processing (slm/train/olive_data.py) before the pass builds its Trainer."""

import transformers


def replace_trainer_method(name: str, wrap) -> None:
    """Set `transformers.Trainer.<name>` to `wrap(method)`, where `method` is transformers' own: installing again
    (Olive imports the pre-processing again for the validation data) wraps transformers' method, not the last
    wrapper. The class changes, so Trainers that exist already are changed too."""
    current = getattr(transformers.Trainer, name)
    original = getattr(current, "transformers_method", current)
    replacement = wrap(original)
    replacement.transformers_method = original
    setattr(transformers.Trainer, name, replacement)
