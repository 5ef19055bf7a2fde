"""slm/train/answer_accuracy.py: a row counts as answered exactly when greedy decoding writes its answer, from the
whole logits or from the labelled positions' logits the training's evaluation computes."""

import torch
import transformers

from slm.train.answer_accuracy import answer_choices, answered_rows
from slm.train.labelled_logits import IGNORE_INDEX, labelled_positions_only

TINY = {"vocab_size": 300, "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2}
TINY |= {"num_attention_heads": 4, "num_key_value_heads": 4, "pad_token_id": 0, "bos_token_id": 1, "eos_token_id": 2}
PROMPT, ANSWER = 6, 3


def greedy_answers(model, prompts):
    """The model's greedy continuation of each prompt, ANSWER tokens long."""
    ids = prompts
    for _ in range(ANSWER):
        with torch.no_grad():
            ids = torch.cat([ids, model(input_ids=ids).logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return ids[:, PROMPT:]


def test_a_row_is_answered_exactly_when_greedy_decoding_writes_its_answer():
    torch.manual_seed(0)
    model = transformers.LlamaForCausalLM(transformers.LlamaConfig(**TINY)).eval()
    prompts = torch.randint(3, TINY["vocab_size"], (4, PROMPT))
    answers = greedy_answers(model, prompts)
    answers[1, -1] = (answers[1, -1] + 1) % TINY["vocab_size"]  # the last answer token is not the greedy one
    answers[2, 0] = (answers[2, 0] + 1) % TINY["vocab_size"]  # nor the first
    ids = torch.cat([prompts, answers, torch.zeros(4, 2, dtype=torch.long)], dim=1)  # two pad positions
    attention = torch.ones_like(ids)
    attention[:, -2:] = 0
    labels = torch.full_like(ids, IGNORE_INDEX)
    labels[:, PROMPT : PROMPT + ANSWER] = answers
    labels[3] = IGNORE_INDEX  # a row with no answer left (cut at max_seq_len) is never answered
    with torch.no_grad():
        whole = model(input_ids=ids, attention_mask=attention).logits
        inputs = labelled_positions_only({"input_ids": ids, "attention_mask": attention, "labels": labels})
        kept = model(input_ids=ids, attention_mask=attention, logits_to_keep=inputs["logits_to_keep"]).logits
    keep = inputs["logits_to_keep"]
    assert kept.reshape(-1, TINY["vocab_size"]).shape[0] == int(keep.sum()) == 3 * ANSWER
    expected = [True, False, False, False]
    assert answered_rows(whole[keep], labels).tolist() == expected
    assert answered_rows(kept, labels).tolist() == expected


def test_among_the_labels_a_row_is_answered_when_its_label_beats_the_other_labels():
    """infer.py --eval decodes a label task constrained to the labels: a row whose unconstrained argmax is no label
    still counts when its own label's tokens beat the other labels' at each step."""
    vocabulary = 10
    labels = torch.full((2, 5), IGNORE_INDEX)
    labels[:, 2:4] = torch.tensor([[4, 2], [5, 2]])  # two labels, one token each, then the end token 2
    logits = torch.zeros(4, vocabulary)  # the positions predicting (4, 2) and (5, 2), row after row
    logits[0, [7, 4, 5]] = torch.tensor([9.0, 3.0, 1.0])  # token 7, no label's, is the argmax; label 4 beats 5
    logits[1, [7, 2]] = torch.tensor([9.0, 1.0])  # after a whole label only the end token may follow
    logits[2, [4, 5]] = torch.tensor([3.0, 1.0])  # the other label is likelier: wrong either way
    logits[3, 2] = 1.0
    choices = answer_choices([[4, 2], [5, 2], [4, 2]])
    assert choices == {(): [4, 5], (4,): [2], (5,): [2]}
    assert answered_rows(logits, labels).tolist() == [False, False]
    assert answered_rows(logits, labels, choices).tolist() == [True, False]
