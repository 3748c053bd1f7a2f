"""The seed's linear SVC, trained by scikit-learn in a child process and applied here in numpy.

scikit-learn (with the SciPy it imports) holds about 80 MB of a door's memory for as long as the process
lives, and the door only needs it for the seconds a roster takes to train. So the door trains in a short-lived
child (`python -m edge.identity.svc`, arrays in and out as .npz over pipes) and keeps only what the trained
classifier is: its support vectors, their dual coefficients and the intercepts. `LinearOvo.predict` applies
them the way libsvm does (one-vs-one votes, ties to the lower class), so it names the same person as the
fitted SVC's own `predict` (tests/test_identity.py checks it on real embeddings).
"""

from __future__ import annotations

import io
import subprocess
import sys
import warnings
from dataclasses import dataclass

import numpy as np

from edge.errors import FaceCheckError

FIT_TIMEOUT_S = 600  # a 2000-person roster trains in well under a minute here


class SvcTrainingError(FaceCheckError):
    """The child that trains the SVC failed (exit 1, one line); the message carries its own error output."""


@dataclass(frozen=True)
class LinearOvo:
    """A trained multi-class linear SVC in libsvm's one-vs-one form."""

    support_vectors: np.ndarray  # n_sv x dim, float64, grouped by class in class order
    dual_coef: np.ndarray  # (n_classes - 1) x n_sv
    intercept: np.ndarray  # one per class pair (i, j), i < j, in libsvm's order
    n_support: np.ndarray  # support vectors per class
    classes: np.ndarray  # the label each class index stands for

    def __post_init__(self) -> None:
        n = len(self.classes)
        first, second = np.triu_indices(n, 1)  # (0,1), (0,2), ..., (1,2), ...: libsvm's pair order
        object.__setattr__(self, "_pairs", (first, second))
        object.__setattr__(self, "_starts", np.concatenate([[0], np.cumsum(self.n_support)[:-1]]))

    def predict(self, embedding: np.ndarray) -> int:
        """The label with the most one-vs-one votes (the first of the tied ones)."""
        first, second = self._pairs  # type: ignore[attr-defined]
        kernel = self.support_vectors @ embedding.astype(np.float64)
        # weighted[r, c]: class c's support vectors, weighted by their coefficients in row r, summed.
        weighted = np.add.reduceat(self.dual_coef * kernel[None, :], self._starts, axis=1)  # type: ignore[attr-defined]
        decision = weighted[second - 1, first] + weighted[first, second] + self.intercept
        votes = np.bincount(np.where(decision > 0, first, second), minlength=len(self.classes))
        return int(self.classes[int(np.argmax(votes))])

    def arrays(self) -> dict[str, np.ndarray]:
        return {"support_vectors": self.support_vectors, "dual_coef": self.dual_coef, "intercept": self.intercept,
                "n_support": self.n_support, "classes": self.classes}


def fit_here(x: np.ndarray, y: np.ndarray) -> LinearOvo:
    """Train in this process (the child's job; a benchmark that trains hundreds of rosters and has scikit-learn
    loaded anyway may call it directly)."""
    from sklearn.svm import SVC

    svc = SVC(kernel="linear", class_weight="balanced", decision_function_shape="ovr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        svc.fit(x.astype(np.float64), y)
    # libsvm's own signs: scikit-learn flips both only for two classes, where its attributes follow its own
    # binary convention (positive = the second class).
    flip = -1.0 if len(svc.classes_) == 2 else 1.0
    return LinearOvo(np.asarray(svc.support_vectors_, np.float64), flip * np.asarray(svc.dual_coef_, np.float64),
                     flip * np.asarray(svc.intercept_, np.float64), np.asarray(svc.n_support_, np.int64),
                     np.asarray(svc.classes_))


def fit_in_child(x: np.ndarray, y: np.ndarray) -> LinearOvo:
    """Train in a child process that exits when done, so scikit-learn never stays in this one."""
    sent = io.BytesIO()
    np.savez(sent, x=x.astype(np.float64), y=y)
    try:
        done = subprocess.run([sys.executable, "-m", "edge.identity.svc"], input=sent.getvalue(),
                              capture_output=True, timeout=FIT_TIMEOUT_S, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise SvcTrainingError(f"training the SVC in a child process failed ({exc}); matcher.kind: nearest needs no "
                               "training") from None
    if done.returncode != 0:
        tail = done.stderr.decode(errors="replace").strip().splitlines()[-3:]
        raise SvcTrainingError(f"training the SVC in a child process failed (exit {done.returncode}): "
                               + " | ".join(tail) + "; matcher.kind: nearest needs no training")
    with np.load(io.BytesIO(done.stdout)) as data:
        return LinearOvo(**{name: data[name] for name in data.files})


def _child() -> None:
    with np.load(io.BytesIO(sys.stdin.buffer.read())) as data:
        trained = fit_here(data["x"], data["y"])
    out = io.BytesIO()
    np.savez(out, **trained.arrays())
    sys.stdout.buffer.write(out.getvalue())


if __name__ == "__main__":
    _child()
