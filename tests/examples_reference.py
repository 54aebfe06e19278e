"""Independent NumPy implementations of the example models, with random inputs:
the expectations the compiled examples are tested against."""

from __future__ import annotations

import math

import numpy as np


def _lse(a, axis=None):
    m = np.max(a, axis=axis, keepdims=True)
    out = np.log(np.sum(np.exp(a - m), axis=axis, keepdims=True)) + m
    return out.squeeze() if axis is None else np.squeeze(out, axis)


def _softmax(a, axis):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def logistic_predict(w, b, X):
    return 1 / (1 + np.exp(-(X @ w + b)))


def logistic_loss(w, b, X, y):
    p = logistic_predict(w, b, X)
    return -np.mean(y * np.log(p) + (1 - y) * np.log(1 - p))


def mlp(W1, b1, W2, b2, X):
    return np.tanh(X @ W1.T + b1) @ W2.T + b2


def mlp_loss(W1, b1, W2, b2, X, Y):
    logits = mlp(W1, b1, W2, b2, X)
    logp = logits - _lse(logits, axis=1)[:, None]
    return -np.mean(np.sum(Y * logp, axis=1))


def attention(Wq, Wk, Wv, X):
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    return _softmax(Q @ K.T / np.sqrt(Wq.shape[1]), axis=1) @ V


def causal_attention(Wq, Wk, Wv, X):
    Q, K, V = X @ Wq, X @ Wk, X @ Wv
    s = Q @ K.T / np.sqrt(Wq.shape[1])
    t = X.shape[0]
    s = np.where(np.tril(np.ones((t, t), bool)), s, -1.0e30)
    return _softmax(s, axis=1) @ V


def gmm(alphas, means, icf, x, gamma, wm):
    """ADBench's GMM objective without its parameter-free constant, written with loops."""
    n, d = x.shape
    k = alphas.shape[0]
    total = 0.0
    for i in range(n):
        terms = []
        for c in range(k):
            q, l = icf[c, :d], icf[c, d:]
            Q = np.diag(np.exp(q))
            pos = 0
            for j in range(d):
                for r in range(j + 1, d):
                    Q[r, j] = l[pos]
                    pos += 1
            v = Q @ (x[i] - means[c])
            terms.append(alphas[c] + q.sum() - 0.5 * v @ v)
        total += _lse(np.array(terms))
    prior = sum(0.5 * gamma**2 * (np.sum(np.exp(icf[c, :d]) ** 2) + np.sum(icf[c, d:] ** 2))
                - wm * np.sum(icf[c, :d]) for c in range(k))
    return total - n * _lse(alphas) + prior - 0.5 * n * d * np.log(2 * np.pi)


def rnn_states(Wx, Wh, b, xs):
    h = np.zeros(Wh.shape[0])
    out = []
    for x in xs:
        h = np.tanh(Wx @ x + Wh @ h + b)
        out.append(h)
    return np.array(out)


def rnn_last(Wx, Wh, b, xs):
    return rnn_states(Wx, Wh, b, xs)[-1]


def _layer_norm(x, gain, bias):
    centred = x - x.mean(axis=1, keepdims=True)
    return gain * centred / np.sqrt((centred**2).mean(axis=1, keepdims=True) + 1e-5) + bias


def _gelu(x):
    return x * 0.5 * (1 + np.vectorize(math.erf)(x / np.sqrt(2)))


def transformer_logits(E, P, Wq, Wk, Wv, Wo, g1, b1, g2, b2, W1, c1, W2, c2, U, X):
    x = X @ E + P
    a = _layer_norm(x, g1, b1)
    x = x + _softmax((a @ Wq) @ (a @ Wk).T / np.sqrt(E.shape[1]), axis=1) @ (a @ Wv) @ Wo
    x = x + _gelu(_layer_norm(x, g2, b2) @ W1 + c1) @ W2 + c2
    return x @ U


def transformer_loss(*args):
    *params, Xs, Ys = args
    total = 0.0
    for X, Y in zip(Xs, Ys):
        z = transformer_logits(*params, X)
        total += np.sum(_lse(z, axis=1) - np.sum(Y * z, axis=1))
    return total / (Xs.shape[0] * Xs.shape[1])


def _sign(a):
    return np.where(a >= 0, 1.0, -1.0)


def binarized_predict(W, v, b, X):
    H = _sign(X @ _sign(W).T / W.shape[1])
    return 1 / (1 + np.exp(-(H @ v + b)))


def binarized_loss(W, v, b, X, y):
    z = _sign(X @ _sign(W).T / W.shape[1]) @ v + b
    return np.mean(np.logaddexp(0, z) - y * z)


def iris_lut(t, x):
    """Entry x (a 4-bit number, least significant bit first) of each row of the table."""
    return t[:, np.sum(x * 2 ** np.arange(4))]


def iris_predict(t, X):
    return t[:, X @ 2 ** np.arange(4)].T


def pseudo_linear(p, x):
    """Wilson & Zanasi's pseudoLinear: popcount(p & x) <= popcount(p) `div` 4."""
    return np.sum(p & x, axis=-1) <= np.sum(p) // 4


def inputs(rng: np.random.Generator) -> dict[str, tuple[tuple, object]]:
    """For every (file, function): random arguments and the expected result."""
    r = rng.standard_normal
    n, d, h, c, t, e, k = 5, 3, 4, 3, 4, 2, 3
    w, b, X, y = r(d), float(r()), r((n, d)), (rng.random(n) > 0.5).astype(float)
    W1, b1, W2, b2 = r((h, d)), r(h), r((c, h)), r(c)
    Y = np.eye(c)[rng.integers(0, c, n)]
    Wq, Wk, Wv, Xt = r((d, e)), r((d, e)), r((d, e)), r((t, d))
    m = d + d * (d - 1) // 2
    alphas, means, icf, xg = r(k), r((k, d)), 0.3 * r((k, m)), r((n, d))
    Wx, Wh, bh, xs = 0.5 * r((h, d)), 0.5 * r((h, h)), r(h), r((t, d))
    block = [r((c, e)), r((t, e)), r((e, e)), r((e, e)), r((e, e)), r((e, e)), 1 + 0.1 * r(e),
             r(e), 1 + 0.1 * r(e), r(e), r((e, h)), r(h), r((h, e)), r(e), r((e, c))]
    tokens = np.eye(c)[rng.integers(0, c, (2, t))]
    table, bits4, rows4 = rng.random((2, 16)) < 0.5, rng.random(4) < 0.5, rng.random((n, 4)) < 0.5
    mask, image, images = rng.random(9) < 0.7, rng.random(9) < 0.3, rng.random((n, 9)) < 0.3
    return {
        "logistic.predict": ((w, b, X), logistic_predict(w, b, X)),
        "logistic.loss": ((w, b, X, y), logistic_loss(w, b, X, y)),
        "mlp.mlp": ((W1, b1, W2, b2, X), mlp(W1, b1, W2, b2, X)),
        "mlp.loss": ((W1, b1, W2, b2, X, Y), mlp_loss(W1, b1, W2, b2, X, Y)),
        "attention.attention": ((Wq, Wk, Wv, Xt), attention(Wq, Wk, Wv, Xt)),
        "attention.causal_attention": ((Wq, Wk, Wv, Xt), causal_attention(Wq, Wk, Wv, Xt)),
        "gmm.gmm": ((alphas, means, icf, xg, 1.5, 2), gmm(alphas, means, icf, xg, 1.5, 2)),
        "rnn.rnn_last": ((Wx, Wh, bh, xs), rnn_last(Wx, Wh, bh, xs)),
        "rnn.rnn_states": ((Wx, Wh, bh, xs), rnn_states(Wx, Wh, bh, xs)),
        "transformer.logits": ((*block, tokens[0]), transformer_logits(*block, tokens[0])),
        "transformer.loss": ((*block, tokens, tokens[:, ::-1]),
                             transformer_loss(*block, tokens, tokens[:, ::-1])),
        "binarized.predict": ((W1, b1, b, X), binarized_predict(W1, b1, b, X)),
        "binarized.loss": ((W1, b1, b, X, y), binarized_loss(W1, b1, b, X, y)),
        "iris_circuit.lut": ((table, bits4), iris_lut(table, bits4)),
        "iris_circuit.predict": ((table, rows4), iris_predict(table, rows4)),
        "digits_circuit.pseudo_linear": ((mask, image), pseudo_linear(mask, image)),
        "digits_circuit.predict": ((mask, images), pseudo_linear(mask, images)),
    }
