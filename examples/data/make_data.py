"""Regenerate the tiny text corpus and word-vector file the text examples ship with.

`reviews.tsv`: 240 short movie-review sentences built from templates, one per line as
`label<TAB>text` (1 = positive, 0 = negative), balanced and shuffled.
`vectors.16d.txt`: GloVe's text format (`word v1 ... v16`) for every corpus word plus
a few extras. The vectors are synthetic, not real GloVe: sentiment words point along
the first axis (+ for positive, - for negative), every word carries Gaussian noise,
so a frozen embedding of them is useful but imperfect, as pretrained vectors are.

    python examples/data/make_data.py   # rewrites both files next to this script
"""

import os
import random

import numpy as np

POSITIVE = ["good", "great", "wonderful", "brilliant", "moving", "delightful", "superb",
            "charming", "funny", "gripping", "beautiful", "clever"]
NEGATIVE = ["bad", "awful", "boring", "dull", "terrible", "clumsy", "tedious", "weak",
            "predictable", "messy", "painful", "forgettable"]
NOUNS = ["movie", "film", "plot", "acting", "script", "ending", "soundtrack", "cast",
         "dialogue", "story", "director", "camera work"]
INTENSIFIERS = ["very", "really", "truly", "quite", "so", "rather"]
TEMPLATES = [
    "the {noun} was {intens} {adj}.",
    "I thought the {noun} was {adj} and the {noun2} {adj2}.",
    "What a {adj} {noun}!",
    "{Adj} {noun}, {intens} {adj2} {noun2}.",
    "Honestly, a {intens} {adj} {noun}.",
    "The {noun} is {adj}; the {noun2} is {intens} {adj2}.",
    "Not {opp} at all: the {noun} was {adj}.",
    "Everyone said it was {opp}, but the {noun} felt {adj}.",
]
EXTRA_WORDS = ["excellent", "horrible", "popcorn", "theater", "sequel", "trailer"]


def sentence(rng, positive):
    same, other = (POSITIVE, NEGATIVE) if positive else (NEGATIVE, POSITIVE)
    adj, adj2 = rng.sample(same, 2)
    noun, noun2 = rng.sample(NOUNS, 2)
    text = rng.choice(TEMPLATES).format(
        noun=noun, noun2=noun2, adj=adj, adj2=adj2, Adj=adj.capitalize(),
        intens=rng.choice(INTENSIFIERS), opp=rng.choice(other))
    return text[0].upper() + text[1:]


def main(out_dir=os.path.dirname(os.path.abspath(__file__)), n=240, dim=16, seed=0):
    rng = random.Random(seed)
    rows = [(int(i % 2 == 0), sentence(rng, i % 2 == 0)) for i in range(n)]
    rng.shuffle(rows)
    with open(os.path.join(out_dir, "reviews.tsv"), "w", encoding="utf-8") as f:
        for label, text in rows:
            f.write(f"{label}\t{text}\n")

    words = sorted({w.strip(".,;:!").lower() for _, t in rows for w in t.split()}
                   | set(EXTRA_WORDS))
    np_rng = np.random.RandomState(seed)
    sentiment = {w: 1.0 for w in POSITIVE + ["excellent"]}
    sentiment.update({w: -1.0 for w in NEGATIVE + ["horrible"]})
    with open(os.path.join(out_dir, f"vectors.{dim}d.txt"), "w", encoding="utf-8") as f:
        for w in words:
            v = np_rng.normal(0.0, 0.35, dim)
            v[0] += sentiment.get(w, 0.0)
            f.write(w + " " + " ".join(f"{x:.5f}" for x in v) + "\n")


if __name__ == "__main__":
    main()
