"""This project's code, installed into .venv by `python setup/install.py` (editable).

The scripts in datasets/, fine-tuning/, inferences/ and setup/ are thin entry points into it:

- errors:        UserError, and `cli` which prints it as one `ERROR:` line with an exit code
- project:       the only reader of fine-tuning/olive-config.json (paths, task, device, data format)
- data:          reading and checking rows, in both data formats (prepare, eval, benchmark)
- prompts:       prompts built exactly as in training; label scoring
- engines:       generation on ONNX Runtime GenAI or PyTorch, one interface
- olive_data:    the answer-only pre-processing Olive runs during `olive run`
- olive_check:   the strict check of the Olive config
- model_source:  getting the base model into model-cache/
- prepare, infer, benchmark: the command-line tools
- azureml:       submitting the same `olive run` to Azure ML (compute=azureml projects only)
"""
