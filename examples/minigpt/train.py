"""A nanoGPT-shaped training script (numpy, CPU, seconds): globals as config, `--key=value`
overrides through configurator.py, data from data/<dataset>/{train,val}.bin made by its
prepare.py, nanoGPT's own log lines. It knows nothing about overnight: no budget
variable, no seed variable, no `name: value` metric line.

The model is a character-level embedding + output layer (a factored bigram), trained with Adam.
"""

import os
import pickle
import time

import numpy as np

# -----------------------------------------------------------------------------
# default config values
out_dir = "out"
eval_interval = 50
log_interval = 10
eval_iters = 20
always_save_checkpoint = False
dataset = "shakespeare_char"
batch_size = 16
block_size = 32
n_embd = 8
learning_rate = 3e-3
beta1 = 0.9
beta2 = 0.99
weight_decay = 0.0
max_iters = 200
# -----------------------------------------------------------------------------
exec(open("configurator.py").read())  # noqa: SIM115 - nanoGPT style: overrides from the command line
# -----------------------------------------------------------------------------

rng = np.random.default_rng(1337)  # nanoGPT seeds with a constant too
data_dir = os.path.join("data", dataset)
train_data = np.memmap(os.path.join(data_dir, "train.bin"), dtype=np.uint16, mode="r")
val_data = np.memmap(os.path.join(data_dir, "val.bin"), dtype=np.uint16, mode="r")
with open(os.path.join(data_dir, "meta.pkl"), "rb") as f:
    vocab_size = pickle.load(f)["vocab_size"]


def get_batch(split):
    data = train_data if split == "train" else val_data
    ix = rng.integers(0, len(data) - block_size - 1, batch_size)
    x = np.stack([data[i:i + block_size] for i in ix]).astype(np.int64)
    y = np.stack([data[i + 1:i + 1 + block_size] for i in ix]).astype(np.int64)
    return x.ravel(), y.ravel()


params = {"emb": rng.normal(0, 0.1, (vocab_size, n_embd)), "out": rng.normal(0, 0.1, (n_embd, vocab_size)),
          "bias": np.zeros(vocab_size)}
m = {k: np.zeros_like(v) for k, v in params.items()}
v = {k: np.zeros_like(p) for k, p in params.items()}


def forward(x, y):
    h = params["emb"][x]
    logits = h @ params["out"] + params["bias"]
    logits -= logits.max(axis=1, keepdims=True)
    probs = np.exp(logits)
    probs /= probs.sum(axis=1, keepdims=True)
    loss = -np.log(probs[np.arange(len(y)), y] + 1e-12).mean()
    return loss, h, probs


def estimate_loss():
    out = {}
    for split in ("train", "val"):
        out[split] = float(np.mean([forward(*get_batch(split))[0] for _ in range(eval_iters)]))
    return out


iter_num, t0 = 0, time.time()
while True:
    if iter_num % eval_interval == 0:
        losses = estimate_loss()
        print(f"step {iter_num}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
        if always_save_checkpoint:
            os.makedirs(out_dir, exist_ok=True)
            with open(os.path.join(out_dir, "ckpt.pkl"), "wb") as f:
                pickle.dump(params, f)
    if iter_num >= max_iters:
        break
    x, y = get_batch("train")
    loss, h, probs = forward(x, y)
    d = probs
    d[np.arange(len(y)), y] -= 1
    d /= len(y)
    grads = {"out": h.T @ d, "bias": d.sum(axis=0), "emb": np.zeros_like(params["emb"])}
    np.add.at(grads["emb"], x, d @ params["out"].T)
    for k in params:
        g = grads[k] + weight_decay * params[k]
        m[k] = beta1 * m[k] + (1 - beta1) * g
        v[k] = beta2 * v[k] + (1 - beta2) * g * g
        mh, vh = m[k] / (1 - beta1 ** (iter_num + 1)), v[k] / (1 - beta2 ** (iter_num + 1))
        params[k] -= learning_rate * mh / (np.sqrt(vh) + 1e-8)
    t1 = time.time()
    if iter_num % log_interval == 0:
        print(f"iter {iter_num}: loss {loss:.4f}, time {(t1 - t0) * 1000:.2f}ms")
    t0 = t1
    iter_num += 1
