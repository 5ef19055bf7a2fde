"""This project's code, installed into .venv by `python setup/install.py` (editable).

The scripts in datasets/, fine-tuning/, inferences/ and setup/ are thin entry points into it: each runs the
`main` of the module named like it. A command-line module is an entry point, never imported by another
module (tests/test_project.py keeps it so). Every module, by folder and job:

Shared (imports nothing from the folders below)
- errors:            UserError, and `cli` which prints it as one `ERROR:` line with an exit code
- project:           the only reader of fine-tuning/olive-config.json (paths, task, devices, data format),
                     and of Olive's footprint of the models on the way to the ONNX model
- data:              reading and checking rows, in both data formats (prepare, eval, benchmark)
- prompts:           prompts built exactly as in training; label tables; the one-line answer rule
- metrics:           scoring answers (labels, token F1) and percentiles
- engines:           token generation on ONNX Runtime GenAI or PyTorch, one interface
- generation:        the generation layer: input or a row into the trained prompt, streamed text, and the
                     one rule for what of the generated text is the answer (AnswerText)
- progress:          progress bars that do not flood a log
- olive_compat:      fixes to Olive 0.13.0 in one place: what the export search needs, memory handed back
                     between passes, a failed pass ending `olive run` with exit status 1 (Olive's own is 0);
                     on any other Olive than the pinned one, an ERROR line instead
- infer:             prompting, chatting with and evaluating the model (inferences/infer.py)
- get_model:         getting the base model into model-cache/ (setup/get_model.py)

train: your data and fine-tuning
- train.prepare:        checking and splitting a dataset (datasets/prepare.py)
- train.data_report:    what prepare finds: repeats, conflicts, labels, lengths; the leak-free stratified split
- train.schedule:       how many steps a data set gets, from its row count; the validation split's size
- train.footprint:      the measured CPU time per step and peak memory of each stage, and the guard that
                        refuses a run this machine's memory cannot hold
- train.olive_data:     the answer-only pre-processing Olive runs during `olive run`: rows in training
                        order, the adapter's seed
- train.checkpoints:    the Trainer's checkpoint folder, resumed from only by the run that wrote it
- train.early_stopping: training ends after N evaluations without a lower validation loss, counted after the
                        first pass over the rows (a Trainer callback Olive's config cannot pass)
- train.answer_accuracy: a validation row's answer under teacher forcing is what greedy decoding writes (among
                        the labels for a label task): the accuracy scripts/measure_kept_step.py reads per checkpoint
- train.labelled_logits: the training loss from the logits of the labelled positions only, not the whole
                        vocabulary at every prompt token (installed inside `olive run`)
- train.trainer_methods: how those two replace a method of transformers.Trainer (Olive builds the Trainer)
- train.training_meter: asked by SLM_TRAINING_METER, each training step's seconds and tokens and the peak GPU
                        memory, measured inside `olive run` (the template's scripts/gpu_check.py)
- train.check_config:   the strict check of the Olive config (fine-tuning/check_config.py)
- train.report:         the loss curve and summary line of a training run, and the export table
                        (fine-tuning/report.py)
- train.azureml:        submitting the same `olive run` to Azure ML (compute=azureml projects only)

export: the ONNX model and the other runtimes
- export.olive_eval:       the export search's evaluator: each int4 recipe scored on the validation rows
                           against the fine-tune in fp32, during `olive run`
- export.int4_by_tensor:   ModelBuilder's int4 quantization one weight at a time (a full-size Phi export in
                           16 GB), installed inside `olive run`
- export.search_metrics:   the export search's metric schema, one definition (the template reads it too)
- export.search_report:    the int4 recipes `olive run` tried and the one it kept, from Olive's footprint
- export.prompt_templates: the trained prompt as other runtimes read it (Jinja chat template, {Content},
                           Go template) and the tokens generation stops at
- export.foundry:          a Foundry Local model folder (inferences/export_foundry.py)
- export.gguf:             a GGUF file with the trained prompt and an Ollama Modelfile
                           (inferences/export_gguf.py; the converter is bench.llama_peer's)

serve: the server (inferences/serve.py)
- serve.cli:       its command line: arguments, opening the backend, uvicorn
- serve.app:       the FastAPI app: routes and the API-key check
- serve.backends:  the Backend protocol the app talks to, and its onnxruntime-genai implementations
- serve.text:      a job's token stream as the text the client sees (both routes)
- serve.protocol:  the request models and the error family (OpenAI's shapes)
- serve.page:      the web chat page served at /

bench: measuring
- bench.benchmark:  ONNX Runtime GenAI against PyTorch and llama.cpp (inferences/benchmark.py)
- bench.measure:    one engine's measurement in a child process (the benchmark, the search's decode speed)
- bench.bandwidth:  the weight bytes read per token and a memory-bandwidth probe, for the benchmark
- bench.llama_peer: llama.cpp as an optional peer in the benchmark (GGUF conversion, LlamaCppEngine)
- bench.serve_load: load figures against a running server (inferences/serve_load.py)
"""
