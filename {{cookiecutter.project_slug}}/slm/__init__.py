"""This project's code, installed into .venv by `python setup/install.py` (editable).

The scripts in datasets/, fine-tuning/, inferences/ and setup/ are thin entry points into it.
Every module, by what it is for:

Shared
- errors:          UserError, and `cli` which prints it as one `ERROR:` line with an exit code
- project:         the only reader of fine-tuning/olive-config.json (paths, task, device, data format),
                   and of Olive's footprint of the models on the way to the ONNX model
- data:            reading and checking rows, in both data formats (prepare, eval, benchmark)
- prompts:         prompts built exactly as in training; label tables
- metrics:         scoring answers (labels, token F1) and percentiles
- engines:         token generation on ONNX Runtime GenAI or PyTorch, one interface
- progress:        progress bars that do not flood a log
- generation:      the generation layer: input or a row into the trained prompt, streamed text, and the one
                   rule for what of the generated text is the answer (AnswerText)

Training
- schedule:        how many steps a data set gets, from its row count; the validation split's size
- footprint:       the measured CPU time per step and peak memory of each stage, and the guard that
                   refuses a run this machine's memory cannot hold
- olive_data:      the answer-only pre-processing Olive runs during `olive run`: rows in training order,
                   the adapter's seed
- checkpoints:     the Trainer's checkpoint folder, resumed from only by the run that wrote it
- early_stopping:  training ends after N evaluations without a lower validation loss (a Trainer callback
                   Olive's config cannot pass)
- olive_eval:      the export search's evaluator: each int4 recipe scored on the validation rows
                   against the fine-tune in fp32, during `olive run`
- olive_compat:    fixes to Olive 0.13.0: what the export search needs, memory handed back between
                   passes, and a failed pass ending `olive run` with exit status 1 (Olive's own is 0);
                   on any other Olive than the pinned one, an ERROR line instead
- search_metrics:  the export search's metric schema, one definition (the template reads it too)
- export_report:   the int4 recipes `olive run` tried and the one it kept, from Olive's footprint
- report:          the loss curve and summary line of a training run, and the export table
                   (fine-tuning/report.py)
- olive_check:     the strict check of the Olive config
- model_source:    getting the base model into model-cache/
- azureml:         submitting the same `olive run` to Azure ML (compute=azureml projects only)

Command-line tools
- prepare:         checking and splitting a dataset (datasets/prepare.py)
- data_report:     what prepare finds: repeats, conflicts, labels, lengths; the leak-free stratified split
- infer:           prompting, chatting with and evaluating the model (inferences/infer.py)
- benchmark:       ONNX Runtime GenAI against PyTorch and llama.cpp (inferences/benchmark.py)
- measure:         one engine's measurement in a child process (the benchmark, the search's decode speed)
- bandwidth:       the weight bytes read per token and a memory-bandwidth probe, for the benchmark
- llama_peer:      llama.cpp as an optional peer in the benchmark (GGUF conversion, LlamaCppEngine)
- export_prompt:   the trained prompt as other runtimes read it (Jinja chat template, {Content}, Go
                   template) and the tokens generation stops at
- foundry:         a Foundry Local model folder (inferences/export_foundry.py)
- gguf_export:     a GGUF file with the trained prompt and an Ollama Modelfile (inferences/export_gguf.py)
- serve_load:      load figures against a running server (inferences/serve_load.py)

The server (inferences/serve.py)
- serve:           its command line: arguments, opening the backend, uvicorn
- serve_app:       the FastAPI app: routes and the API-key check
- serve_backends:  the Backend protocol the app talks to, and its onnxruntime-genai implementations
- serve_text:      a job's token stream as the text the client sees (both routes)
- serve_protocol:  the request models and the error family (OpenAI's shapes)
- serve_page:      the web chat page served at /
"""
