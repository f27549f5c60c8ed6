"""Chat formatting, the assistant-only loss mask, packing, splits and dataset validation."""

from __future__ import annotations

import json

import pytest

from llmops_ray.config import UserError
from llmops_ray.train.data import (
    IGNORE_INDEX,
    collate,
    pack_rows,
    record_to_messages,
    split_counts,
    tokenize_chat,
    validate_dataset,
)


@pytest.fixture(scope="module")
def tokenizer():
    from llmops_ray.models.base import train_tokenizer

    texts = ["The quick brown fox jumps over the lazy dog. " * 20, "Ray Train runs DeepSpeed on workers. " * 20,
             "知识库中的文本也需要分词。" * 20]
    return train_tokenizer(texts, vocab_size=400)


def test_alpaca_record_becomes_user_assistant_turns():
    msgs = record_to_messages({"instruction": "Add", "input": "2 and 3", "output": "5"}, "auto", "x")
    assert msgs == [{"role": "user", "content": "Add\n\n2 and 3"}, {"role": "assistant", "content": "5"}]
    msgs = record_to_messages({"instruction": "Say hi", "output": "hi"}, "alpaca", "x", system_prompt="Be brief.")
    assert msgs[0] == {"role": "system", "content": "Be brief."}


@pytest.mark.parametrize(
    "record, fragment",
    [
        ({"messages": [{"role": "user", "content": "q"}]}, "no non-empty assistant"),
        ({"messages": [{"role": "user"}]}, "messages[0] needs"),
        ({"messages": [{"role": "robot", "content": "x"}]}, "unknown role"),
        ({"instruction": "x"}, "missing 'output'"),
        ({"prompt": "x"}, "neither 'messages'"),
        (["not", "an", "object"], "expected a JSON object"),
    ],
)
def test_bad_records_name_the_problem(record, fragment):
    with pytest.raises(UserError, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        record_to_messages(record, "auto", "f.jsonl:3")


def test_validate_dataset_reports_file_and_line(tmp_path):
    path = tmp_path / "d.jsonl"
    good = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    path.write_text(json.dumps(good) + "\n\n" + json.dumps({"instruction": "x"}) + "\n")
    with pytest.raises(UserError, match=r"d\.jsonl:3: missing 'output'"):
        validate_dataset(str(path))
    path.write_text(json.dumps(good) + "\n{not json\n")
    with pytest.raises(UserError, match=r"d\.jsonl:2: invalid JSON"):
        validate_dataset(str(path))
    path.write_text("\n")
    with pytest.raises(UserError, match="is empty"):
        validate_dataset(str(path))
    with pytest.raises(UserError, match="does not exist"):
        validate_dataset(str(tmp_path / "missing.jsonl"))
    path.write_text(json.dumps(good) + "\n")
    assert validate_dataset(str(path))["records"] == 1


def test_loss_mask_covers_exactly_the_assistant_turns(tokenizer):
    messages = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "What runs DeepSpeed?"},
        {"role": "assistant", "content": "Ray Train workers."},
        {"role": "user", "content": "中文呢？"},
        {"role": "assistant", "content": "知识库分词。"},
    ]
    row = tokenize_chat(tokenizer, messages, max_len=512)
    ids, labels = row["input_ids"], row["labels"]
    assert len(ids) == len(labels)
    # The full sequence is the chat template's rendering.
    assert tokenizer.decode(ids) == tokenizer.apply_chat_template(messages, tokenize=False)
    # Labelled tokens, decoded run by run, are the assistant contents each followed by <|im_end|>.
    runs, current = [], []
    for tok, lab in zip(ids, labels):
        if lab == IGNORE_INDEX:
            if current:
                runs.append(current)
                current = []
        else:
            assert lab == tok
            current.append(tok)
    if current:
        runs.append(current)
    assert [tokenizer.decode(r) for r in runs] == ["Ray Train workers.<|im_end|>", "知识库分词。<|im_end|>"]
    # No prompt token carries a label: the user/system text is entirely masked.
    masked_text = tokenizer.decode([t for t, lab in zip(ids, labels) if lab == IGNORE_INDEX])
    assert "What runs DeepSpeed?" in masked_text and "Ray Train workers." not in masked_text


def test_truncation_keeps_labels_aligned(tokenizer):
    messages = [{"role": "user", "content": "hello " * 50}, {"role": "assistant", "content": "fox"}]
    row = tokenize_chat(tokenizer, messages, max_len=16)
    assert len(row["input_ids"]) == 16 and all(lab == IGNORE_INDEX for lab in row["labels"])


def test_packing_and_collate():
    rows = [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}, {"input_ids": [4, 5, 6, 7], "labels": [-100, -100, 6, 7]}]
    packed = pack_rows(rows, 3)
    assert packed == [{"input_ids": [1, 2, 3], "labels": [-100, 2, 3]}, {"input_ids": [4, 5, 6], "labels": [-100, -100, 6]}]
    import numpy as np

    batch = collate({"input_ids": np.array([[1, 2, 3], [4]], dtype=object), "labels": np.array([[-100, 2, 3], [4]], dtype=object)}, pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["labels"].tolist() == [[-100, 2, 3], [4, -100, -100]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]


def test_split_counts_give_each_worker_validation_rows():
    assert split_counts(100, 0.1, 2) == (90, 10)
    assert split_counts(10, 0.05, 2) == (8, 2)
    assert split_counts(10, 0.0, 2) == (10, 0)
    with pytest.raises(UserError, match="fewer than the 2 workers"):
        split_counts(1, 0.1, 2)
    with pytest.raises(UserError, match="too few"):
        split_counts(3, 0.5, 2)
