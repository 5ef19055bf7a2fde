"""Answer-only loss inside `olive run`: a pre-processing component for Olive 0.13.

Olive's own text-generation pre-processing (`text_generation_huggingface_pre_process`)
trains on the whole text: the user's phrase, the template and the answer. This
component builds the same rows (line by line, unpadded, `input_ids` / `attention_mask`
/ `labels`) but sets the label of every prompt token to -100, so the loss only covers
what the model must learn to say:

- `data_format="columns"`: the text is `f"{bos} {text_template filled} {eos}"`, exactly
  what Olive builds with `add_special_tokens=true`; the answer is everything from the
  template's last placeholder on (the answer and the end-of-sequence token).
- `data_format="messages"`: the text is the chat template (the tokenizer's, or `chat_template`)
  applied to the row's `messages`; the answer is the content of every assistant turn and its
  end-of-turn marker (`<|im_end|>`, `<|end|>`, ...).

Both texts are built by slm.prompts, the same code that builds the prompt infer.py and the
server send, so the trained prefix is the served prompt.

`answer_only=false` restores Olive's whole-text loss (labels = input ids).

The training data config also carries the schedule (`epochs`, `min_steps`, `step_cap`, `seed`:
see slm/train/schedule.py): its rows come out laid in the order and number of the steps the row count
calls for, and the checkpoint folder of the Trainer is checked to belong to this data and these
settings before Olive resumes from it (`guard_checkpoints`); its `early_stopping_patience` ends training after that
many evaluations without a lower validation loss (slm/train/early_stopping.py). The validation data config uses the
same component without a schedule, so its loss is on the answer tokens, as trained.

It is used from the data config of fine-tuning/olive-config.json:

    "user_script": "slm/train/olive_data.py",
    "pre_process_data_config": {"type": "answer_only_pre_process", "data_format": "columns",
                                "text_template": "...", "max_seq_len": 128}

Olive fills in `model_name` (the input model folder) and `task` itself. Rows are not
padded: Olive's LoRA collator pads `input_ids` with the pad token, `labels` with -100
and `attention_mask` with 0 per batch.
"""

import logging

import torch
from olive.data.constants import IGNORE_INDEX  # the label PyTorch's loss skips
from olive.data.registry import Registry

from slm.errors import UserError
from slm.export.int4_by_tensor import use_for_modelbuilder
from slm.olive_compat import (
    fail_when_no_model_is_produced,
    map_large_blocks_apart,
    release_memory_after_each_step,
)
from slm.progress import quiet_trainer_bar_in_logs
from slm.project import Project
from slm.prompts import ChatTask, ColumnsTask, common_prefix
from slm.train.checkpoints import check_project_at_start, guard_checkpoints
from slm.train.early_stopping import check_patience, stop_early_after
from slm.train.labelled_logits import logits_only_where_labelled
from slm.train.schedule import ORDER_SEED, Schedule, row_order
from slm.train.training_meter import meter_training_when_asked

# a child of Olive's logger, so these lines show at the config's log_severity_level like Olive's own
logger = logging.getLogger("olive.slm")


def _training_args() -> dict:
    try:
        return Project.load().training_args
    except UserError:  # not run from a project folder (Olive reading another config)
        return {}


# Olive 0.13's LoRA pass draws the adapter's starting weights (PEFT's LoRA A matrices) from torch's
# global generator before transformers.Trainer applies `training_args.seed`, and torch 2.13 seeds that
# generator from the OS at start-up: two runs of one config started from different weights and ended
# with different LoRA weights and accuracies 5-9 points apart. Olive imports this module while it reads
# the config, before any pass runs, so seeding here makes the starting weights the same on every run.
ADAPTER_INIT_SEED = 0
torch.manual_seed(ADAPTER_INIT_SEED)
# Before any pass runs: refuse data the recorded data_version does not match (Olive's cache would reuse the
# model trained on the old data), and get the checkpoint folder ready (slm/train/checkpoints.py)
check_project_at_start()
fail_when_no_model_is_produced()

# `olive run > log` or a CI log: the Trainer's log lines, not thousands of bar redraws (slm/progress.py)
quiet_trainer_bar_in_logs(_training_args())
release_memory_after_each_step()
map_large_blocks_apart()
# the loss from the labelled positions' logits, not the vocabulary at every prompt token (slm/train/labelled_logits.py)
logits_only_where_labelled()
# ModelBuilder quantizes one weight at a time: a full-size Phi export fits 16 GB (slm/export/int4_by_tensor.py)
use_for_modelbuilder()
# SLM_TRAINING_METER=FILE.json: each step's seconds and tokens and the peak GPU memory, measured in this process
meter_training_when_asked()
# training_args.log_level "info" shows the Trainer's plan, its evaluations and the checkpoint it keeps;
# without this, every checkpoint save also prints the base model's whole config.json
logging.getLogger("transformers.configuration_utils").setLevel(logging.WARNING)

DATA_FORMATS = ("columns", "messages")


def tokenize_columns(row, task, tokenizer):
    """input_ids and labels (prompt tokens -100) of one columns-format row, not truncated.

    The prompt length is the common prefix of the full text's and the prompt's token ids,
    so a token the tokenizer merges across the prompt/answer boundary counts as answer.
    """
    full, prompt = task.training_text(row, tokenizer)
    input_ids = tokenizer(full, add_special_tokens=False)["input_ids"]
    prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
    n_prompt = common_prefix(input_ids, prompt_ids)
    labels = [IGNORE_INDEX] * n_prompt + input_ids[n_prompt:]
    return input_ids, labels


def tokenize_messages(messages, task, tokenizer):
    """input_ids and labels (real only on assistant turns) of one chat row, not truncated."""
    full, spans = task.assistant_spans(messages, tokenizer)
    encoding = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
    input_ids = encoding["input_ids"]
    labels = []
    for token_id, (token_start, token_end) in zip(input_ids, encoding["offset_mapping"], strict=True):
        # a token belongs to the answer if it overlaps an assistant span
        in_answer = any(token_start < end and token_end > start for start, end in spans)
        labels.append(token_id if in_answer else IGNORE_INDEX)
    return input_ids, labels


def build_rows(
    rows,
    tokenizer,
    data_format="columns",
    text_template=None,
    message_col="messages",
    chat_template=None,
    answer_only=True,
    max_seq_len=1024,
):
    """Tokenise rows into {"input_ids", "attention_mask", "labels"} lists (python ints) plus counts.

    Returns (examples, stats); stats = {"rows", "kept", "answer_cut", "answer_truncated"}.
    A row whose answer lies entirely beyond max_seq_len is dropped (counted in answer_cut),
    never trained with all labels -100; a row whose answer is partly cut is kept and counted.
    """
    if data_format not in DATA_FORMATS:
        raise ValueError(f"data_format must be one of {DATA_FORMATS}, got {data_format!r}")
    if data_format == "columns" and not text_template:
        raise ValueError("data_format 'columns' needs a text_template")
    task = (
        ColumnsTask.from_template(text_template) if data_format == "columns" else ChatTask(message_col, chat_template)
    )
    examples = {"input_ids": [], "attention_mask": [], "labels": []}
    stats = {"rows": 0, "kept": 0, "answer_cut": 0, "answer_truncated": 0}
    for row in rows:
        stats["rows"] += 1
        if data_format == "columns":
            input_ids, labels = tokenize_columns(row, task, tokenizer)
        else:
            input_ids, labels = tokenize_messages(row[message_col], task, tokenizer)
        n_answer = sum(label != IGNORE_INDEX for label in labels)
        input_ids, labels = input_ids[:max_seq_len], labels[:max_seq_len]
        kept_answer = sum(label != IGNORE_INDEX for label in labels)
        if kept_answer == 0:
            stats["answer_cut"] += 1
            continue
        if kept_answer < n_answer:
            stats["answer_truncated"] += 1
        if not answer_only:
            labels = list(input_ids)
        examples["input_ids"].append(input_ids)
        examples["attention_mask"].append([1] * len(input_ids))
        examples["labels"].append(labels)
        stats["kept"] += 1
    return examples, stats


def scheduled(examples, schedule, seed):
    """The examples laid out as the schedule's steps: shuffled whole passes, the last one cut short."""
    order = row_order(schedule.rows, schedule.steps, schedule.batch_size, seed)
    return {column: [values[index] for index in order] for column, values in examples.items()}


@Registry.register_pre_process()
def answer_only_pre_process(
    dataset,
    model_name: str,
    trust_remote_code: bool | None = None,
    answer_only: bool = True,
    data_format: str = "columns",
    text_template: str | None = None,
    message_col: str = "messages",
    chat_template: str | None = None,
    max_seq_len: int = 1024,
    max_samples: int | None = None,
    epochs: float | None = None,
    min_steps: int = 1,
    step_cap: int = 1_000_000,
    seed: int = ORDER_SEED,
    data_version: str | None = None,
    early_stopping_patience: int | None = None,
    **kwargs,
):
    """Olive pre-processing: line-by-line, unpadded rows with the prompt's labels set to -100.

    Args:
        dataset: the loaded Hugging Face dataset (Olive passes it).
        model_name: the model folder or id (Olive fills it from input_model).
        trust_remote_code: passed to the tokenizer (Olive fills it).
        answer_only: true (default) for loss on the answer only; false for whole-text loss.
        data_format: "columns" (text_template over the row's columns) or "messages" (chat JSONL).
        text_template: the columns-format template; its last placeholder is the answer.
        message_col: the column holding the chat messages (messages format).
        chat_template: a Jinja chat template overriding the tokenizer's (messages format).
        max_seq_len: tokens kept per row; rows whose answer lies beyond it are dropped with a warning.
        max_samples: use only the first max_samples rows.
        epochs: training data only: passes over the rows before min_steps / step_cap apply (slm/train/schedule.py);
            the rows come out in training order, for the Trainer's sequential sampler. None: rows as read.
        min_steps: the fewest optimisation steps, however few the rows.
        step_cap: the most optimisation steps, however many the rows.
        seed: the order of the rows in each pass.
        data_version: the digest prepare.py recorded of the training and validation files; `olive run` stops when
            they no longer match it (Olive's cache is keyed on the config, so the digest is how new data reaches it).
        early_stopping_patience: training data only: training ends after this many evaluations without a lower
            validation loss, counted from the end of the first pass over the rows (0: it runs the whole schedule).
            None: this data config does not set it.
        **kwargs: only Olive's own `task`; any other key is refused, since Olive would not say it is unused.

    """
    from olive.common.hf.utils import get_tokenizer
    from olive.data.component.dataset import ClassificationDataset

    from datasets import Dataset as HFDataset

    kwargs.pop("task", None)
    if kwargs:
        raise ValueError(f"answer_only_pre_process does not take {sorted(kwargs)}")
    if early_stopping_patience is not None:
        # refused before the rows are read and the checkpoint folder is checked; installed once the schedule says
        # where the first pass ends
        check_patience(early_stopping_patience)
    tokenizer = get_tokenizer(model_name, trust_remote_code=trust_remote_code)
    if max_samples is not None:
        dataset = dataset.select(range(min(len(dataset), max_samples)))
    examples, stats = build_rows(
        dataset,
        tokenizer,
        data_format=data_format,
        text_template=text_template,
        message_col=message_col,
        chat_template=chat_template,
        answer_only=answer_only,
        max_seq_len=max_seq_len,
    )
    if stats["answer_cut"]:
        logger.warning(
            "%d of %d training rows dropped: their answer starts after max_seq_len=%d tokens "
            "(raise max_seq_len or shorten the prompts)",
            stats["answer_cut"],
            stats["rows"],
            max_seq_len,
        )
    if stats["answer_truncated"]:
        logger.warning(
            "%d of %d training rows have their answer cut at max_seq_len=%d tokens",
            stats["answer_truncated"],
            stats["rows"],
            max_seq_len,
        )
    if not stats["kept"]:
        raise ValueError(f"no training rows left after pre-processing ({stats['rows']} read)")
    logger.info(
        "answer_only_pre_process: %d rows, format %s, loss on %s",
        stats["kept"],
        data_format,
        "the answer only" if answer_only else "the whole text",
    )
    schedule = None
    if epochs is not None:
        project = Project.load()
        fixed = project.training_args.get("max_steps")
        schedule = Schedule(stats["kept"], project.batch_size, epochs, min_steps, step_cap, fixed)
        logger.info("schedule: %s", schedule.describe())
        guard_checkpoints(project, schedule)
        examples = scheduled(examples, schedule, seed)
    if early_stopping_patience is not None:
        stop_early_after(early_stopping_patience, schedule.stalls_counted_from if schedule else 0)
    hf_dataset = HFDataset.from_dict(examples)
    hf_dataset.set_format("torch", output_all_columns=True)
    return ClassificationDataset(hf_dataset, "labels")
