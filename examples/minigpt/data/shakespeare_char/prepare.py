"""Make the character-level dataset next to this file: input.txt, train.bin, val.bin, meta.pkl.

nanoGPT's version downloads tiny Shakespeare; this one writes a deterministic
pseudo-text of the same shape (no network), so the example runs anywhere.
"""

import os
import pickle
import random

import numpy as np

here = os.path.dirname(os.path.abspath(__file__))
if os.path.exists(os.path.join(here, "val.bin")):
    print("already prepared")
    raise SystemExit(0)
rng = random.Random(0)
words = ["thou", "art", "the", "king", "queen", "of", "night", "and", "day", "my", "lord", "love", "death",
         "sweet", "fair", "speak", "hath", "not", "what", "is", "in", "a", "name", "rose", "would", "smell"]
follow = {w: rng.sample(words, 5) for w in words}  # a little structure for the model to learn
w, lines = "the", []
for _ in range(4000):
    line = []
    for _ in range(rng.randint(4, 9)):
        line.append(w)
        w = rng.choice(follow[w]) if rng.random() < 0.8 else rng.choice(words)
    lines.append(" ".join(line).capitalize() + rng.choice([".", ",", ";", "!", "?"]))
text = "\n".join(lines) + "\n"
with open(os.path.join(here, "input.txt"), "w") as f:
    f.write(text)
chars = sorted(set(text))
stoi = {c: i for i, c in enumerate(chars)}
ids = np.array([stoi[c] for c in text], dtype=np.uint16)
n = int(0.9 * len(ids))
ids[:n].tofile(os.path.join(here, "train.bin"))
ids[n:].tofile(os.path.join(here, "val.bin"))
with open(os.path.join(here, "meta.pkl"), "wb") as f:
    pickle.dump({"vocab_size": len(chars), "itos": dict(enumerate(chars)), "stoi": stoi}, f)
print(f"vocab size {len(chars)}; train has {n:,} tokens, val has {len(ids) - n:,} tokens")
