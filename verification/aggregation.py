"""Agreement scoring: combine volunteers' redundant answers into a consensus with calibrated confidence.

Pure numpy, no Django import, so it can be used, tested and benchmarked alone.

Single-choice answers arrive as three flat integer arrays (task, worker, label), one entry per answer.
Every method below is a per-answer likelihood model: a (n_workers, n_classes, n_classes) table
``log_pi[w, true, answered]`` and a class prior.  A task's posterior is

    P(true = k | answers) ∝ prior[k] * exp(tau * Σ_answers log_pi[w, k, l])

where ``tau`` (the temperature) is fitted after the model, without the truth, so that the posterior is a
calibrated probability that the consensus label is right (see ``_fit_temperature``).

Methods (``METHODS``):

- ``majority``: plain vote counts (ties are reported in ``AggregationResult.tied``); the confidence is
  that of a one-coin model in which every volunteer has the same accuracy.
- ``weighted``: each volunteer's vote is weighted by the log-odds of their agreement with the majority.
- ``dawid_skene``: Dawid & Skene (1979), one full confusion matrix per volunteer, fitted by EM.
- ``one_coin``: one accuracy per volunteer, errors spread evenly over the other classes, fitted by EM.
- ``auto`` (default): hierarchical Dawid-Skene.  Each volunteer's confusion matrix gets a Dirichlet prior
  centred on a one-coin matrix built from their own (shrunk) accuracy; the prior's strength is chosen by
  leave-one-answer-out predictive likelihood, so volunteers with a handful of answers behave like the
  one-coin model and volunteers with many answers get their own confusion matrix only when the data
  support it.  Class priors are smoothed.  When the crowd's volunteers look indistinguishable, the model
  in which they all have the crowd's accuracy is kept instead: with a handful of answers each, EM's
  reliabilities spread where the volunteers do not differ (``_prefers_common_accuracy``).  The
  confidence (not the label) scores each answer with its
  volunteer's matrix refitted without that task (``_leave_task_out_ll``), and is averaged over the
  temperatures the held-out answers allow (``_fit_temperature``), or tempered more when a refit on half of
  the tasks asks for it: both matter when volunteers have few answers each, and fade as they get more.

Gold tasks (expert labels) are clamped to their label during EM, which anchors volunteers' reliability.

Other answer types: ``aggregate_multiple`` (one binary consensus per option), ``cluster_points`` (points
marked on an image, in metres), ``combine_locations`` (map guesses, geometric median).  Free text is kept,
not aggregated.  ``task_consensus`` is the fast incremental path used on every new answer, and
``retirement_decision`` the retirement rule, with ``label_change_probability``.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

METHODS = ("majority", "weighted", "dawid_skene", "one_coin", "auto")

_EPS = 1e-12
# Smallest and largest temperatures considered; a temperature above 1 would say the model is
# under-confident, which does not happen with conditionally-independent-answer models in practice.
_TAU_RANGE = (0.02, 1.5)
# Candidate Dirichlet strengths (pseudo-answers per true class) for the `auto` model.
_AUTO_STRENGTHS = (1.0, 3.0, 10.0, 30.0, 100.0, 1000.0)
# Pseudo-answers that pull a volunteer's accuracy towards the crowd's.
_ACCURACY_PSEUDO_ANSWERS = 4.0
# `auto` with volunteers who look indistinguishable (``_prefers_common_accuracy``): the Dirichlet strength
# that makes every volunteer's matrix the crowd's one-coin matrix; the task folds of the comparison, its
# repeats with other folds (fewer once the call is this many standard errors clear), the standard errors
# by which `auto` must lead, the screen that skips it (nats per volunteer, ``_common_accuracy_close``),
# and the answers of the tasks it samples (``_task_sample``).
_COMMON_STRENGTH = 1000.0
_COMMON_FOLDS = 3
_COMMON_REPEATS = 3
_COMMON_SE = 0.5
_COMMON_DECIDED = 2.0
_COMMON_GATE = 4.0
_COMMON_SAMPLE = 100_000
# Answers used to fit the temperature and the prior strength (a fixed-seed sample above this size).
_FIT_SAMPLE = 200_000
# Temperatures (equally spaced in log) over which `auto`'s confidence is averaged (``_fit_temperature``).
_TAU_GRID = 48
# EM steps of each cross-fitting refit, warm-started from the full fit.
_CROSS_FIT_ITERATIONS = 10
# Gold tasks needed before the temperature is fitted on gold rather than on held-out answers, and before
# `auto` adds a two-parameter (Platt) correction of its confidence fitted on the same gold tasks.
_MIN_GOLD_FOR_CALIBRATION = 30
# Gaussian penalty (precision) pulling the Platt correction logit(c') = a * logit(c) + b toward the
# identity (a = 1, b = 0): equivalent to about one pseudo-observation, so 30 gold tasks cannot fit
# something wild, while hundreds of gold tasks speak for themselves.
_PLATT_PENALTY = 1.0
# A volunteer is at chance on gold when their gold answers are this many times likelier from someone
# answering at random with their own answer frequencies than from the crowd's typical volunteer
# (``_chance_on_gold``): a sequential test, so a typical volunteer is flagged with probability at most
# 1 / 19 however many gold answers they give (much less at any fixed number).
_GOLD_CHANCE_ODDS = 19.0


@dataclass
class AggregationResult:
    """Consensus of every task and reliability of every volunteer.

    ``labels`` is -1 for a task with no voting answers (no answers, or only ``ignore_label`` answers).
    ``confidence`` is the calibrated probability that the label is right (0 when there is no label).
    ``agreement`` is the share of the task's answers (including ignored ones) on the top label.
    ``worker_reliability`` is the probability that the volunteer answers correctly (class-prior weighted
    diagonal of their confusion matrix); ``worker_chance`` is the accuracy they would reach by answering
    at random with their own answer frequencies, so reliability <= chance means no information.
    ``temperature`` is the fitted tempering of the log-posterior (class prior included);
    ``incremental_temperature`` is the one to pass to ``task_consensus`` together with
    ``worker_reliability`` and ``class_prior``.
    ``platt`` is the (a, b) of the gold-fitted correction logit(c') = a * logit(c) + b applied to the
    tempered confidence of `auto` (identity (1, 0) without enough gold tasks).
    ``worker_confusion[w, k, l]`` is P(volunteer w answers l | true class k) (zero rows and columns for
    an ignored class); pass rows of it to ``task_consensus`` as ``confusions`` with ``temperature``.
    """

    labels: np.ndarray
    confidence: np.ndarray
    agreement: np.ndarray
    entropy: np.ndarray
    n_answers: np.ndarray
    posteriors: np.ndarray
    worker_reliability: np.ndarray
    worker_n_answers: np.ndarray
    method: str
    iterations: int
    tied: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))
    worker_chance: np.ndarray = field(default_factory=lambda: np.zeros(0))
    class_prior: np.ndarray = field(default_factory=lambda: np.zeros(0))
    temperature: float = 1.0
    incremental_temperature: float = 1.0
    platt: tuple[float, float] = (1.0, 0.0)
    prior_strength: float | None = None
    # `auto` kept one accuracy shared by every volunteer (``_prefers_common_accuracy``): they could not be
    # told apart, so each one's reliability is the crowd's and the labels are the majority's.
    common_accuracy: bool = False
    worker_confusion: np.ndarray = field(default_factory=lambda: np.zeros((0, 0, 0)))
    # Volunteers whose gold answers say they answer at chance (``_chance_on_gold``), whatever the model:
    # flagged by ``flag_unreliable``, and held at chance when every volunteer shares one accuracy.
    worker_chance_on_gold: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=bool))


# --------------------------------------------------------------------------------------------- helpers


def _logsumexp(x: np.ndarray, axis: int = -1) -> np.ndarray:
    if x.ndim == 2 and axis in (-1, 1) and x.shape[1] <= 16:
        # Column by column: numpy's reductions along a short last axis are ten times slower.
        columns = [x[:, k] for k in range(x.shape[1])]
        peak = columns[0].copy()
        for column in columns[1:]:
            np.maximum(peak, column, out=peak)
        peak[~np.isfinite(peak)] = 0.0
        total = np.zeros_like(peak)
        for column in columns:
            total += np.exp(column - peak)
        return np.log(total) + peak
    peak = np.max(x, axis=axis, keepdims=True)
    peak = np.where(np.isfinite(peak), peak, 0.0)
    return np.log(np.sum(np.exp(x - peak), axis=axis)) + np.squeeze(peak, axis=axis)


def _softmax(x: np.ndarray) -> np.ndarray:
    z = x - _logsumexp(x)[:, None]
    np.exp(z, out=z)
    return z


def _task_sums(task: np.ndarray, values: np.ndarray, n_tasks: int) -> np.ndarray:
    """Sum per-answer rows (n_answers, K) into per-task rows (n_tasks, K) with one bincount."""
    n_classes = values.shape[1]
    cells = (task[:, None] * n_classes + np.arange(n_classes)).ravel()
    sums = np.bincount(cells, weights=np.ascontiguousarray(values).ravel(), minlength=n_tasks * n_classes)
    return sums.reshape(n_tasks, n_classes)


def _one_coin_log_pi(accuracy: np.ndarray, n_classes: int) -> np.ndarray:
    acc = np.clip(accuracy, 1e-6, 1 - 1e-6)
    off = np.log((1 - acc) / max(n_classes - 1, 1))
    log_pi = np.repeat(off[:, None, None], n_classes, axis=1).repeat(n_classes, axis=2)
    idx = np.arange(n_classes)
    log_pi[:, idx, idx] = np.log(acc)[:, None]
    return log_pi


def _validate(
    task_idx: Any, worker_idx: Any, label_idx: Any, n_tasks: int, n_workers: int, n_classes: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    task = np.asarray(task_idx, dtype=np.int64).ravel()
    worker = np.asarray(worker_idx, dtype=np.int64).ravel()
    label = np.asarray(label_idx, dtype=np.int64).ravel()
    if not (len(task) == len(worker) == len(label)):
        raise ValueError("task_idx, worker_idx and label_idx must have the same length")
    if n_classes < 1:
        raise ValueError("n_classes must be at least 1")
    for name, arr, bound in (
        ("task", task, n_tasks),
        ("worker", worker, n_workers),
        ("label", label, n_classes),
    ):
        if len(arr) and (arr.min() < 0 or arr.max() >= bound):
            raise ValueError(f"{name} index out of range [0, {bound})")
    return task, worker, label


# ------------------------------------------------------------------------------------------------ models


class _Answers:
    """One fit's answers with the flat index arrays that every EM step reuses, built once.

    Every sum is a single ``np.bincount`` over flat cells and every lookup a row ``np.take``: numpy's
    two-array fancy indexing (``table[worker, :, label]``) and per-class loops cost several times more.
    """

    def __init__(
        self,
        task: np.ndarray,
        worker: np.ndarray,
        label: np.ndarray,
        n_tasks: int,
        n_workers: int,
        n_classes: int,
    ) -> None:
        self.task, self.worker, self.label = task, worker, label
        self.n_tasks, self.n_workers, self.n_classes = n_tasks, n_workers, n_classes
        classes = np.arange(n_classes)
        # Each answer's (volunteer, answered label) pair, the row of a (W * K, K) table.
        self.pair = worker * n_classes + label
        self._task_cells = (task[:, None] * n_classes + classes).ravel()
        self._pair_cells = (self.pair[:, None] * n_classes + classes).ravel()
        self._answered_cell = task * n_classes + label  # post.flat[...] = post[task, label]
        self.task_n = np.bincount(task, minlength=n_tasks)
        self.has_votes = self.task_n > 0
        self.all_have_votes = bool(self.has_votes.all())
        self.n_single = int((self.task_n == 1).sum())
        self.worker_n = np.bincount(worker, minlength=n_workers).astype(float)

    def __len__(self) -> int:
        return len(self.task)

    def vote_counts(self) -> np.ndarray:
        """votes[t, k]: the answers of class k on task t (integers)."""
        cells = np.bincount(self._answered_cell, minlength=self.n_tasks * self.n_classes)
        return cells.reshape(self.n_tasks, self.n_classes)

    def subset(self, keep: np.ndarray) -> _Answers:
        return _Answers(
            self.task[keep], self.worker[keep], self.label[keep], self.n_tasks, self.n_workers, self.n_classes
        )

    def task_sums(self, values: np.ndarray) -> np.ndarray:
        """Per-answer rows (n, K) summed into per-task rows (n_tasks, K)."""
        sums = np.bincount(self._task_cells, weights=values.ravel(), minlength=self.n_tasks * self.n_classes)
        return sums.reshape(self.n_tasks, self.n_classes)

    def per_answer(self, table: np.ndarray) -> np.ndarray:
        """``table[worker, :, label]`` for every answer, (n, K), from a (W, K, K) table."""
        k = self.n_classes
        rows = table.transpose(0, 2, 1).reshape(self.n_workers * k, k)
        return np.take(rows, self.pair, axis=0)

    def per_task(self, post: np.ndarray) -> np.ndarray:
        """Each answer's task row, (n, K)."""
        return np.take(post, self.task, axis=0)

    def answered(self, post: np.ndarray) -> np.ndarray:
        """``post[task, label]``: the probability that each answer is right."""
        return np.take(post, self._answered_cell)

    def confusion_counts(self, post: np.ndarray) -> np.ndarray:
        """counts[w, k, l] = Σ over w's answers l of P(task's true class = k)."""
        k = self.n_classes
        flat = np.bincount(
            self._pair_cells, weights=self.per_task(post).ravel(), minlength=self.n_workers * k * k
        )
        return flat.reshape(self.n_workers, k, k).transpose(0, 2, 1)

    def log_likelihood(self, log_pi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        per_answer = self.per_answer(log_pi)
        return self.task_sums(per_answer), per_answer


class _Fit(NamedTuple):
    log_pi: np.ndarray  # (W, K, K)
    log_prior: np.ndarray  # (K,)
    iterations: int
    strength: float | None
    pseudo: float = _ACCURACY_PSEUDO_ANSWERS  # `auto`: pseudo-answers toward the crowd's accuracy
    first_strength: float | None = None  # `auto`: the strength of the first EM steps, before it is re-chosen
    silenced: np.ndarray | None = None  # `auto`: volunteers held at chance (their answers carry no weight)


def _vote_shares(task: np.ndarray, label: np.ndarray, n_tasks: int, n_classes: int) -> np.ndarray:
    votes = _task_sums(task, np.eye(n_classes)[label], n_tasks)
    total = votes.sum(axis=1, keepdims=True)
    return np.divide(votes, total, out=np.full_like(votes, 1.0 / n_classes), where=total > 0)


def _class_prior(post: np.ndarray, answers: _Answers) -> np.ndarray:
    # Add-one smoothing keeps a rare class possible.  Each task with a single answer also adds one
    # pseudo-task spread evenly over the classes: its posterior is only its one volunteer's word, and
    # early in a campaign, when most tasks have one answer, EM could otherwise explain every answer by
    # one class and chance-level volunteers (the prior went to 0.99 on the first tenth of RTE's
    # answers, and retirement then closed tasks against their votes).
    # A product with ones: numpy's sum over the long first axis of an (n, K) array is much slower.
    voted = post if answers.all_have_votes else post[answers.has_votes]
    mass = np.ones(len(voted)) @ voted + 1.0 + answers.n_single / answers.n_classes
    return np.log(mass / mass.sum())


def _crowd_accuracy(correct: np.ndarray, n: np.ndarray, silenced: np.ndarray | None) -> float:
    """The crowd's share of right answers (volunteers' soft right counts over their answer counts), the
    ``silenced`` ones left out."""
    counted = slice(None) if silenced is None else ~silenced
    return float(correct[counted].sum() / max(n[counted].sum(), 1.0))


def _accuracy_from_post(
    answers: _Answers, post: np.ndarray, pseudo: float, silenced: np.ndarray | None = None
) -> np.ndarray:
    """Each volunteer's accuracy, shrunk toward the crowd's by ``pseudo`` answers (all the crowd's when
    infinite); ``silenced`` volunteers are held at 1 / K, which gives their answers no weight, and left out
    of the crowd's accuracy."""
    correct = np.bincount(answers.worker, weights=answers.answered(post), minlength=answers.n_workers)
    n = answers.worker_n
    crowd = _crowd_accuracy(correct, n, silenced)
    if math.isinf(pseudo):
        accuracy = np.full(answers.n_workers, crowd)
    else:
        accuracy = (correct + pseudo * crowd) / (n + pseudo)
    if silenced is not None:
        accuracy[silenced] = 1.0 / answers.n_classes
    return accuracy


def _choose_strength(
    answers: _Answers,
    post: np.ndarray,
    counts: np.ndarray,
    prior_mean: np.ndarray,
    log_prior: np.ndarray,
) -> float:
    """The Dirichlet strength whose model best predicts each answer from everything else.

    Leave-one-answer-out: the answer's own soft count is removed from its volunteer's confusion matrix
    and its own log-likelihood from its task's total.  Scored on a fixed-seed sample of answers when
    there are many; the task totals use every answer.  The per-answer lookups are shared by every
    candidate strength.
    """
    row_counts = counts.sum(axis=2)  # (W, K)
    answer_counts = answers.per_answer(counts)  # counts[worker, :, label]
    answer_rows = np.take(row_counts, answers.worker, axis=0)
    answer_means = answers.per_answer(prior_mean)
    pick = _sample(len(answers), _FIT_SAMPLE // 4)
    task_s = answers.task[pick]
    own_post = answers.per_task(post)[pick]  # the answer's soft contribution to its volunteer's counts
    counts_s, rows_s, means_s = answer_counts[pick], answer_rows[pick], answer_means[pick]
    best, best_ll = _AUTO_STRENGTHS[0], -math.inf
    for strength in _AUTO_STRENGTHS:
        full = np.log((answer_counts + strength * answer_means) / (answer_rows + strength))  # (n, K)
        task_ll = answers.task_sums(full)
        numer = counts_s - own_post + strength * means_s
        log_pi_loo = np.log(np.maximum(numer, _EPS) / (rows_s - own_post + strength))
        z = log_prior + np.take(task_ll, task_s, axis=0) - full[pick]
        z -= _logsumexp(z)[:, None]
        ll = float(_logsumexp(z + log_pi_loo).sum())
        if ll > best_ll:
            best, best_ll = strength, ll
    return best


def _leave_task_out_ll(
    answers: _Answers,
    post: np.ndarray,
    strength: float,
    pseudo: float = _ACCURACY_PSEUDO_ANSWERS,
    silenced: np.ndarray | None = None,
) -> np.ndarray:
    """Each answer's log-likelihood table under its volunteer's `auto` matrix without the answer's task.

    One M-step at the final posteriors, with the answer's own soft count taken out of its volunteer's
    confusion counts and out of their shrunk accuracy (a volunteer answers a task once, so this leaves
    the whole task out of that volunteer's parameters).  In-sample, a volunteer's answer on a task has
    already pulled the task's posterior toward itself and so counts as one more right answer: with a
    handful of answers per volunteer this inflates everyone who sides with the consensus, most of all on
    a split task, whose winners are all credited for it.  This is the posterior-mean (Dirichlet
    predictive) probability of the answer given the volunteer's other answers; with hundreds of answers
    per volunteer it is the in-sample matrix.  ``silenced`` volunteers stay at chance
    (``_accuracy_from_post``).
    """
    k = answers.n_classes
    counts = answers.confusion_counts(post)
    own = answers.per_task(post)  # the answer's soft contribution to counts[w, :, l]
    column = answers.per_answer(counts)  # counts[w, :, l]
    rows = np.take(counts.sum(axis=2), answers.worker, axis=0)  # counts[w, :, :].sum(-1)
    right = answers.answered(post)
    correct = np.bincount(answers.worker, weights=right, minlength=answers.n_workers)
    n = answers.worker_n
    crowd = _crowd_accuracy(correct, n, silenced)
    if math.isinf(pseudo):
        accuracy = np.full(len(answers), crowd)
    else:
        accuracy = (correct[answers.worker] - right + pseudo * crowd) / (n[answers.worker] - 1.0 + pseudo)
    if silenced is not None:
        accuracy[silenced[answers.worker]] = 1.0 / k
    accuracy = np.clip(accuracy, 1e-6, 1 - 1e-6)
    mean = np.repeat(((1 - accuracy) / max(k - 1, 1))[:, None], k, axis=1)  # prior_mean[w, :, l]
    mean[np.arange(len(answers)), answers.label] = accuracy
    numer = np.maximum(column - own + strength * mean, _EPS)
    return np.log(numer / np.maximum(rows - own + strength, _EPS))


def _fit_em(
    answers: _Answers,
    *,
    model: str,
    gold_tasks: np.ndarray,
    gold_labels: np.ndarray,
    max_iter: int = 100,
    tol: float = 1e-6,
    init_post: np.ndarray | None = None,
    fixed_strength: float | None = None,
    fixed_pseudo: float | None = None,
    fixed_schedule: tuple[float, float] | None = None,
    silenced: np.ndarray | None = None,
) -> _Fit:
    n_tasks, n_workers, n_classes = answers.n_tasks, answers.n_workers, answers.n_classes
    if init_post is None:
        post = _vote_shares(answers.task, answers.label, n_tasks, n_classes)
    else:
        post = init_post.copy()
    gold_rows = np.eye(n_classes)[gold_labels]
    post[gold_tasks] = gold_rows
    strength: float | None = fixed_strength
    first_strength = fixed_strength
    pseudo = _ACCURACY_PSEUDO_ANSWERS if fixed_pseudo is None else fixed_pseudo
    iterations = 0
    prev_loglik = -math.inf
    log_pi = np.zeros((n_workers, n_classes, n_classes))
    log_prior = np.full(n_classes, -math.log(n_classes))
    for iterations in range(1, max_iter + 1):
        # M-step
        log_prior = _class_prior(post, answers)
        if model == "one_coin":
            log_pi = _one_coin_log_pi(_accuracy_from_post(answers, post, pseudo=1.0), n_classes)
        else:
            counts = answers.confusion_counts(post)
            if model == "dawid_skene":
                smoothed = counts + 0.01
                log_pi = np.log(smoothed / smoothed.sum(axis=2, keepdims=True))
            else:  # auto: Dirichlet prior centred on the volunteer's shrunk one-coin matrix
                accuracy = _accuracy_from_post(answers, post, pseudo=pseudo, silenced=silenced)
                prior_mean = np.exp(_one_coin_log_pi(accuracy, n_classes))
                if fixed_schedule is not None:
                    strength = fixed_schedule[0] if iterations < 5 else fixed_schedule[1]
                elif fixed_strength is None and iterations in (1, 5):
                    strength = _choose_strength(answers, post, counts, prior_mean, log_prior)
                if iterations == 1:
                    first_strength = strength
                assert strength is not None
                row = counts.sum(axis=2, keepdims=True)
                log_pi = np.log((counts + strength * prior_mean) / (row + strength))
        # E-step
        task_ll, _ = answers.log_likelihood(log_pi)
        z = log_prior + task_ll
        norm = _logsumexp(z)
        z -= norm[:, None]
        post = np.exp(z, out=z)
        post[gold_tasks] = gold_rows
        # Stop on the relative change of the log-likelihood: the labels settle long before the
        # posteriors stop moving in their fifth decimal.
        loglik = float((norm if answers.all_have_votes else norm[answers.has_votes]).sum())
        if abs(loglik - prev_loglik) <= tol * abs(loglik):
            break
        prev_loglik = loglik
    return _Fit(log_pi, log_prior, iterations, strength, pseudo, first_strength, silenced)


def _sample(n: int, size: int = _FIT_SAMPLE) -> np.ndarray | slice:
    """A fixed-seed sample of ``size`` answer positions (all of them when there are fewer)."""
    if n <= size:
        return slice(None)
    return np.sort(np.random.default_rng(20240601).choice(n, size, replace=False))


def _fit_majority(answers: _Answers) -> _Fit:
    shares = _vote_shares(answers.task, answers.label, answers.n_tasks, answers.n_classes)
    # One common accuracy: how often an answer agrees with its task's majority.
    agree = float(answers.answered(shares).mean()) if len(answers) else 0.5
    log_pi = _one_coin_log_pi(np.full(answers.n_workers, agree), answers.n_classes)
    return _Fit(log_pi, np.full(answers.n_classes, -math.log(answers.n_classes)), 1, None)


def _fit_weighted(answers: _Answers) -> _Fit:
    shares = _vote_shares(answers.task, answers.label, answers.n_tasks, answers.n_classes)
    accuracy = _accuracy_from_post(answers, shares, pseudo=2.0)
    log_pi = _one_coin_log_pi(accuracy, answers.n_classes)
    return _Fit(log_pi, np.full(answers.n_classes, -math.log(answers.n_classes)), 1, None)


# ----------------------------------------------------------------------------------------- calibration


def _golden_max(fn: Any, lo: float, hi: float, iters: int = 14) -> float:
    """Maximise a unimodal function of one variable on [lo, hi].

    Fourteen steps narrow a log-temperature range of 4.3 to 0.005: half a per cent of temperature, far
    below what moves a calibration error.
    """
    ratio = (math.sqrt(5) - 1) / 2
    a, b = lo, hi
    c, d = b - ratio * (b - a), a + ratio * (b - a)
    fc, fd = fn(c), fn(d)
    for _ in range(iters):
        if fc >= fd:
            b, d, fd = d, c, fc
            c = b - ratio * (b - a)
            fc = fn(c)
        else:
            a, c, fc = c, d, fd
            d = a + ratio * (b - a)
            fd = fn(d)
    return (a + b) / 2


def _fit_temperature(
    answers: _Answers,
    own_ll: np.ndarray,
    log_prior: np.ndarray,
    gold_tasks: np.ndarray,
    gold_labels: np.ndarray,
) -> float:
    """Temperature of the log-likelihood, fitted without the truth unless gold is available.

    ``own_ll[a, k]`` is answer a's log-likelihood under true class k, ideally from a model fitted without
    the answer's task (see ``_cross_fitted_answer_ll``).  Without gold: maximise the predictive likelihood
    of each answer given the task's other answers (``_heldout_objective``).  Correlated errors (hard tasks,
    shared misreadings) make the model count the same evidence several times; held-out answers then
    disagree with confident posteriors more often than the model expects, and the best temperature falls
    below 1.  With enough gold tasks: maximise the likelihood of the gold labels under the (unclamped)
    tempered posterior.  The temperature scales the whole log-posterior, class prior included: EM's prior is
    the sum of its own posteriors and as over-confident as they are, and tempering the evidence alone let
    it outweigh the answers (early on product, a prior of .95 for the commoner class overruled two votes of
    three with confidence .92; those tasks were right 58% of the time).
    """
    if len(answers) == 0:
        return 1.0
    answered = answers.task_n
    gold_with_votes = gold_tasks[answered[gold_tasks] > 0]
    lo, hi = math.log(_TAU_RANGE[0]), math.log(_TAU_RANGE[1])
    if len(gold_with_votes) >= _MIN_GOLD_FOR_CALIBRATION:
        gold_of = dict(zip(gold_tasks.tolist(), gold_labels.tolist(), strict=True))
        target = np.array([gold_of[t] for t in gold_with_votes.tolist()])
        gold_ll = answers.task_sums(own_ll)[gold_with_votes]

        def gold_fn(log_tau: float) -> float:
            z = math.exp(log_tau) * (log_prior + gold_ll)
            z = z - _logsumexp(z)[:, None]
            return float(z[np.arange(len(target)), target].sum())

        return math.exp(_golden_max(gold_fn, lo, hi))
    objective = _heldout_objective(answers, own_ll, log_prior)
    if objective is None:
        return 1.0
    return math.exp(_golden_max(objective[0], lo, hi))


def _heldout_grid(
    answers: _Answers, own_ll: np.ndarray, log_prior: np.ndarray
) -> tuple[np.ndarray, np.ndarray] | None:
    """``_heldout_objective`` on the grid of ``_TAU_GRID`` log-temperatures, with the answer count of each
    held-out answer's task (None when no task has two answers)."""
    objective = _heldout_objective(answers, own_ll, log_prior) if len(answers) else None
    if objective is None:
        return None
    heldout_fn, n_answers = objective
    grid = np.linspace(math.log(_TAU_RANGE[0]), math.log(_TAU_RANGE[1]), _TAU_GRID)
    return np.array([heldout_fn(g) for g in grid]), n_answers


def _temperature_weights(
    answers: _Answers,
    own_ll: np.ndarray,
    log_prior: np.ndarray,
    heldout: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Temperatures and their weights: the held-out log-likelihood of ``_fit_temperature`` on a grid, as a
    posterior over the log-temperature with a flat prior (no gold).

    Each answer is predicted from its task's other answers, which are in turn predicted from it, so the sum
    counts a task's information about the temperature about (answers - 1) times; it is divided by that (the
    harmonic mean over answers) before exponentiating.  Early in a campaign a few hundred answers leave the
    temperature uncertain, and a single best value, often at the top of the range, overstates the
    confidence; the average over the plausible temperatures does not.  With thousands of answers the
    weights gather on one temperature.  ``heldout`` is ``_heldout_grid`` of the same evidence, if computed.
    """
    if heldout is None:
        heldout = _heldout_grid(answers, own_ll, log_prior)
    if heldout is None:
        return np.ones(1), np.ones(1)
    values, n_answers = heldout
    grid = np.linspace(math.log(_TAU_RANGE[0]), math.log(_TAU_RANGE[1]), _TAU_GRID)
    repeats = len(n_answers) / float((1.0 / (n_answers - 1.0)).sum())
    ll = values / repeats
    weights = np.exp(ll - ll.max())
    keep = weights > 1e-4 * weights.sum()
    return np.exp(grid[keep]), weights[keep] / weights[keep].sum()


def _heldout_objective(
    answers: _Answers, own_ll: np.ndarray, log_prior: np.ndarray
) -> tuple[Callable[[float], float], np.ndarray] | None:
    """The held-out log-likelihood of each answer given its task's other answers, as a function of the
    log-temperature, and the answer count of each held-out answer's task (None when no task has two)."""
    task = answers.task
    task_ll = answers.task_sums(own_ll)
    answered = answers.task_n
    pick = _sample(len(task))
    # Only answers on tasks with at least one other answer carry information about the temperature.
    rest = task_ll[task[pick]] - own_ll[pick]
    own = own_ll[pick]
    multi = answered[task[pick]] > 1
    rest, own = rest[multi], own[multi]
    if len(rest) == 0:
        return None

    # log Σ_k softmax(z)_k exp(own_k) = log Σ_k exp(z_k) exp(own_k) - log Σ_k exp(z_k); the own factors
    # are exponentiated once, each evaluation then costs one exp of the tempered rest.
    # Class-major (K, n) copies: numpy reduces over a short leading axis far faster than a short last one.
    rest_t = np.ascontiguousarray(rest.T)
    own_peak = own.max(axis=1)
    own_exp_t = np.exp(own - own_peak[:, None]).T.copy()
    base = float(own_peak.sum())
    prior_col = log_prior[:, None]

    def heldout_fn(log_tau: float) -> float:
        z = math.exp(log_tau) * (prior_col + rest_t)
        z -= z.max(axis=0)
        np.exp(z, out=z)
        return base + float(np.log((z * own_exp_t).sum(axis=0)).sum() - np.log(z.sum(axis=0)).sum())

    return heldout_fn, answered[task[pick]][multi].astype(float)


def _cross_fitted_answer_ll(
    answers: _Answers,
    *,
    method: str,
    fit: _Fit,
    init_post: np.ndarray,
    gold_tasks: np.ndarray,
    gold_labels: np.ndarray,
    folds: int = 2,
) -> np.ndarray:
    """Each answer's log-likelihood table from a model refitted without the answer's task.

    In-sample confusion matrices have already seen the answer they are asked to predict, which makes
    the crowd look more consistent than it is; refitting on the other half of the tasks (warm-started
    from the full fit) removes that optimism from the temperature.
    """
    fold = np.random.default_rng(7).integers(0, folds, answers.n_tasks)
    own = np.empty((len(answers), answers.n_classes))
    for f in range(folds):
        held = fold[answers.task] == f
        keep_gold = fold[gold_tasks] != f
        refit = _fit_em(
            answers.subset(~held),
            model=method,
            gold_tasks=gold_tasks[keep_gold],
            gold_labels=gold_labels[keep_gold],
            max_iter=_CROSS_FIT_ITERATIONS,  # warm-started from the full fit: a few steps suffice
            init_post=init_post,
            fixed_strength=fit.strength,
            fixed_pseudo=fit.pseudo,
            silenced=fit.silenced,
        )
        own[held] = answers.per_answer(refit.log_pi)[held]
    return own


def _fit_common_accuracy(
    answers: _Answers, gold_tasks: np.ndarray, gold_labels: np.ndarray, max_iter: int = 100
) -> tuple[float, np.ndarray, np.ndarray]:
    """EM of the one-coin model in which every volunteer has the same accuracy: (accuracy, log class
    prior, posteriors).  A task's posterior depends only on its vote counts, so EM runs over the distinct
    vote counts (a few dozen), each weighted by its number of tasks; gold tasks are held to their label."""
    k = answers.n_classes
    votes = answers.vote_counts()
    free = answers.has_votes.copy()
    free[gold_tasks] = False
    base = int(votes.max(initial=0)) + 1
    if k * math.log2(base) < 62:  # each task's counts as one integer: a 1-d unique is much faster
        key = votes[free] @ (base ** np.arange(k, dtype=np.int64))
        _, first, inverse, weight = np.unique(key, return_index=True, return_inverse=True, return_counts=True)
        patterns = votes[free][first]
    else:
        patterns, inverse, weight = np.unique(votes[free], axis=0, return_inverse=True, return_counts=True)
    patterns, weight = patterns.astype(float), weight.astype(float)
    gold_rows = np.eye(k)[gold_labels]
    gold_mass = gold_rows[answers.has_votes[gold_tasks]].sum(axis=0)  # as in ``_class_prior``
    gold_right = float(votes[gold_tasks, gold_labels].sum())
    smoothing = 1.0 + answers.n_single / k
    total = max(float(len(answers)), 1.0)
    post = patterns / np.maximum(patterns.sum(axis=1, keepdims=True), 1.0)  # vote shares
    accuracy, log_prior, previous = 1.0 / k, np.full(k, -math.log(k)), -math.inf
    for _ in range(max_iter):
        mass = weight @ post + gold_mass + smoothing
        log_prior = np.log(mass / mass.sum())
        right = float(weight @ (post * patterns).sum(axis=1)) + gold_right
        accuracy = min(max(right / total, 1e-6), 1 - 1e-6)
        z = log_prior + (math.log(accuracy) - math.log((1 - accuracy) / max(k - 1, 1))) * patterns
        norm = _logsumexp(z) if len(z) else np.zeros(0)
        post = np.exp(z - norm[:, None])
        loglik = float(weight @ norm)
        if abs(loglik - previous) <= 1e-6 * abs(loglik):
            break
        previous = loglik
    full = np.repeat(np.exp(log_prior)[None, :], answers.n_tasks, axis=0)  # tasks without votes
    full[free] = post[inverse.reshape(-1)]
    full[gold_tasks] = gold_rows
    return accuracy, log_prior, full


def _common_answer_ll(answers: _Answers, accuracy: float | np.ndarray) -> np.ndarray:
    """Each answer's log-likelihood table, (n, K), when its volunteer has ``accuracy`` (one for all, or
    one per answer) and spreads their mistakes evenly over the other classes."""
    accuracy = np.broadcast_to(np.asarray(accuracy, dtype=float), (len(answers),))
    k = answers.n_classes
    table = np.repeat(np.log((1 - accuracy) / max(k - 1, 1))[:, None], k, axis=1)
    table[np.arange(len(answers)), answers.label] = np.log(accuracy)
    return table


def _expert_by_task(answers: _Answers, gold_tasks: np.ndarray, gold_labels: np.ndarray) -> np.ndarray:
    """Each task's expert label, -1 where it has none."""
    expert = np.full(answers.n_tasks, -1)
    expert[gold_tasks] = gold_labels
    return expert


def _chance_on_gold(answers: _Answers, gold_tasks: np.ndarray, gold_labels: np.ndarray) -> np.ndarray:
    """Volunteers whose gold answers say they answer at chance (boolean array over volunteers).

    A likelihood-ratio test of each volunteer's gold answers, ``_GOLD_CHANCE_ODDS`` to one: answering at
    random with their own answer frequencies (on a gold task of label g they are right with the share of
    their answers that are g) against the crowd's typical volunteer (right with the crowd's share of right
    gold answers).  It reads nothing but gold, so it holds when the consensus cannot tell volunteers apart
    (three answers a task: ``_prefers_common_accuracy``), and it never flags someone for a few unlucky
    answers: a typical volunteer reaches these odds with probability at most 1 / ``_GOLD_CHANCE_ODDS``.
    """
    flagged = np.zeros(answers.n_workers, dtype=bool)
    if len(gold_tasks) == 0 or len(answers) == 0:
        return flagged
    k = answers.n_classes
    truth = _expert_by_task(answers, gold_tasks, gold_labels)[answers.task]
    on_gold = truth >= 0
    if not on_gold.any():
        return flagged
    right = answers.label[on_gold] == truth[on_gold]
    typical = float(right.mean())
    if typical <= 1.0 / k:
        return flagged  # the crowd itself is at chance on gold: nobody stands out
    worker = answers.worker[on_gold]
    # Their answer frequencies, smoothed by one answer spread over the classes.
    given = np.bincount(answers.pair, minlength=answers.n_workers * k).reshape(answers.n_workers, k)
    frequency = (given + 1.0 / k) / (answers.worker_n[:, None] + 1.0)
    at_random = np.clip(frequency[worker, truth[on_gold]], 1e-3, 1 - 1e-3)
    typical = min(max(typical, 1e-3), 1 - 1e-3)
    log_ratio = np.where(right, np.log(at_random / typical), np.log((1 - at_random) / (1 - typical)))
    evidence = np.bincount(worker, weights=log_ratio, minlength=answers.n_workers)
    return evidence >= math.log(_GOLD_CHANCE_ODDS)


def _mix64(x: np.ndarray) -> np.ndarray:
    """SplitMix64's finaliser: a well-spread 64-bit hash of each unsigned integer."""
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return x ^ (x >> np.uint64(31))


def _task_hash(answers: _Answers) -> np.ndarray:
    """A pseudo-random 64-bit number per task computed from its answers alone, unchanged when tasks,
    volunteers or classes are renamed or the answers reordered: it assigns the folds and the sample of
    ``_prefers_common_accuracy``, so the consensus does not depend on the names (a fixed-seed draw over
    task indices would).  Each answer contributes a hash of its volunteer's answer count, how often they
    give that label, and the votes for it on the task; the contributions are summed exactly."""
    k = answers.n_classes
    on_label = np.take(answers.vote_counts(), answers._answered_cell).astype(np.uint64)
    pair_n = np.bincount(answers.pair, minlength=answers.n_workers * k)[answers.pair].astype(np.uint64)
    worker_n = answers.worker_n[answers.worker].astype(np.uint64)
    key = (worker_n * np.uint64(1_000_003) + pair_n) * np.uint64(1_000_033) + on_label
    # 24-bit contributions: their sums are exact in floating point however many answers a task has.
    part = (_mix64(key) >> np.uint64(40)).astype(float)
    return _mix64(np.bincount(answers.task, weights=part, minlength=answers.n_tasks).astype(np.uint64))


def _task_sample(
    answers: _Answers, gold_tasks: np.ndarray, gold_labels: np.ndarray
) -> tuple[_Answers, np.ndarray | slice, np.ndarray, np.ndarray, np.ndarray]:
    """The answers of a sample of tasks, about ``_COMMON_SAMPLE`` answers, the sampled tasks numbered
    afresh (all of them when there are fewer answers): (answers, their rows in the original, each
    sampled task's ``_task_hash``, gold tasks and labels)."""
    task_hash = _task_hash(answers)
    if len(answers) <= _COMMON_SAMPLE:
        return answers, slice(None), task_hash, gold_tasks, gold_labels
    picked = (task_hash >> np.uint64(11)).astype(float) / 2.0**53 < _COMMON_SAMPLE / len(answers)
    index = np.cumsum(picked) - 1
    rows = picked[answers.task]
    sample = _Answers(
        index[answers.task[rows]],
        answers.worker[rows],
        answers.label[rows],
        int(picked.sum()),
        answers.n_workers,
        answers.n_classes,
    )
    keep = picked[gold_tasks]
    return sample, rows, task_hash[picked], index[gold_tasks[keep]], gold_labels[keep]


def _common_accuracy_close(
    answers: _Answers, left_out: tuple[np.ndarray, np.ndarray], common: tuple[float, np.ndarray, np.ndarray]
) -> bool:
    """Whether the common-accuracy model comes within ``_COMMON_GATE`` nats per volunteer of `auto` in the
    held-out likelihood of ``_heldout_objective``, `auto` scored with its leave-task-out evidence
    (``left_out``: ``_heldout_grid`` of it, the best temperature of the grid taken); ``common`` is
    ``_fit_common_accuracy`` of the same answers.

    A cheap screen before ``_prefers_common_accuracy``.  The leave-task-out evidence still flatters
    `auto`: EM's posteriors on a volunteer's other tasks have followed them, by about the same few nats
    for each volunteer whatever their number of answers.  Where the refits chose the common model `auto`
    led by at most 1.8 nats per volunteer (early cuts of zencrowd_in); on the full public crowds it leads
    by 7 (rte) to 29 (product), except cf (0.1, screened in; the refits keep `auto`), and on a million
    generated answers of volunteers right 45-95% by about 10.  Screening out only ever keeps `auto`.
    """
    accuracy, common_prior, _ = common
    objective = _heldout_objective(answers, _common_answer_ll(answers, accuracy), common_prior)
    if objective is None:
        return False
    heldout_fn, n_answers = objective  # the same sample of answers as ``left_out``
    # Eight steps narrow the log-temperature to 0.1: close enough for a screen with this much room.
    common_best = heldout_fn(_golden_max(heldout_fn, math.log(_TAU_RANGE[0]), math.log(_TAU_RANGE[1]), 8))
    per_answer = (common_best - float(left_out[0].max())) / len(n_answers)
    answers_per_volunteer = len(answers) / max(int((answers.worker_n > 0).sum()), 1)
    return per_answer * answers_per_volunteer > -_COMMON_GATE


def _heldout_by_task(answers: _Answers, own_ll: np.ndarray, log_prior: np.ndarray) -> np.ndarray:
    """Each task's share of the held-out log-likelihood of ``_heldout_objective`` at its best temperature
    (every answer scored; 0 for tasks with fewer than two answers)."""
    task_ll = answers.task_sums(own_ll)
    rest = np.take(task_ll, answers.task, axis=0) - own_ll
    multi = answers.task_n[answers.task] > 1

    def terms(log_tau: float) -> np.ndarray:
        z = log_prior + math.exp(log_tau) * rest
        return _logsumexp(z + own_ll) - _logsumexp(z)

    def total(log_tau: float) -> float:
        return float(terms(log_tau)[multi].sum())

    best = _golden_max(total, math.log(_TAU_RANGE[0]), math.log(_TAU_RANGE[1]))
    return np.bincount(answers.task[multi], weights=terms(best)[multi], minlength=answers.n_tasks)


def _prefers_common_accuracy(
    answers: _Answers,
    fit: _Fit,
    gold_tasks: np.ndarray,
    gold_labels: np.ndarray,
    common: tuple[float, np.ndarray, np.ndarray],
) -> bool:
    """Whether one accuracy shared by every volunteer predicts held-out answers better than `auto`.

    With a handful of answers per volunteer EM reinforces itself: a volunteer who happens to agree with
    the consensus pulls it toward their answers and is credited for it, so the reliabilities spread where
    the volunteers do not differ (all right 70%, three answers a task: estimates from .50 to .87), and a
    confident lone dissenter overrules two others.  The prior strength, chosen on the same fit, does not
    see it.  Both models are fitted afresh on all but one of ``_COMMON_FOLDS`` folds of the tasks (`auto`
    with the full fit's strengths), score each answer of the held-out fold, and are compared by the
    likelihood of each answer given its task's other answers at their best temperatures
    (``_heldout_objective``), summed over ``_COMMON_REPEATS`` draws of the folds (the later draws are
    skipped when the first are ``_COMMON_DECIDED`` standard errors clear).  `auto` is kept only when
    it leads by more than ``_COMMON_SE`` standard errors of that sum (from the spread of the per-task
    differences): within the comparison's noise the simpler model is kept, as in the one-standard-error
    rule.  A warm start from the full fit would carry its self-reinforcement into the refits.  Fitting on
    two thirds of the tasks costs the many-parameter model more than the one-parameter one; two folds cost
    so much that `auto` lost a tenth of early web cuts (five classes, four answers a volunteer) it wins
    with three.  Above ``_COMMON_SAMPLE`` answers the comparison runs on a sample of tasks.  Folds and
    sample come from ``_task_hash``, so renaming cannot change the decision.  ``common`` is
    ``_fit_common_accuracy`` of all the answers.
    """
    answers, rows, task_hash, gold_tasks, gold_labels = _task_sample(answers, gold_tasks, gold_labels)
    if not (answers.task_n > 1).any():
        return False
    k = answers.n_classes
    sampled = not isinstance(rows, slice)
    common_prior = _fit_common_accuracy(answers, gold_tasks, gold_labels)[1] if sampled else common[1]
    margin = np.zeros(answers.n_tasks)  # common minus `auto`, each task's held-out answers
    expert = _expert_by_task(answers, gold_tasks, gold_labels)
    on_gold = expert[answers.task] >= 0
    gold_cells = (np.flatnonzero(on_gold), expert[answers.task[on_gold]])
    scored = (answers.task_n > 1) | ((expert >= 0) & answers.has_votes)
    n_scored = int(scored.sum())
    z = 0.0
    for repeat in range(_COMMON_REPEATS):
        # Each repeat draws other folds: the comparison's noise, not the crowd, decides close calls.
        salted = _mix64(task_hash + np.uint64(repeat)) if repeat else task_hash
        fold = (salted % np.uint64(_COMMON_FOLDS)).astype(np.int64)
        auto_ll = np.empty((len(answers), k))
        common_accuracy = np.empty(len(answers))
        for f in range(_COMMON_FOLDS):
            held = fold[answers.task] == f
            if held.all():
                return False  # too few tasks to leave any out
            train = answers.subset(~held)
            keep_gold = fold[gold_tasks] != f
            refit = _fit_em(
                train,
                model="auto",
                gold_tasks=gold_tasks[keep_gold],
                gold_labels=gold_labels[keep_gold],
                fixed_schedule=(fit.first_strength or fit.strength or 1.0, fit.strength or 1.0),
            )
            auto_ll[held] = answers.per_answer(refit.log_pi)[held]
            common_accuracy[held] = _fit_common_accuracy(
                train, gold_tasks[keep_gold], gold_labels[keep_gold]
            )[0]
        common_ll = _common_answer_ll(answers, common_accuracy)
        by_task = _heldout_by_task(answers, common_ll, common_prior) - _heldout_by_task(
            answers, auto_ll, fit.log_prior
        )
        # A task with an expert label scores each held-out answer against that label: how likely each
        # model finds the volunteer's answer to the true class is direct evidence of their accuracy.
        by_task[expert >= 0] = 0.0
        by_task += np.bincount(
            answers.task[on_gold],
            weights=common_ll[gold_cells] - auto_ll[gold_cells],
            minlength=answers.n_tasks,
        )
        margin += by_task
        z = float(margin.sum()) / max(float(margin[scored].std()) * math.sqrt(n_scored), 1e-12)
        if abs(z + _COMMON_SE) > _COMMON_DECIDED:
            break  # further draws of the folds would not change a call this clear
    return z > -_COMMON_SE


def _match_mean_confidence(task_ll: np.ndarray, log_prior: np.ndarray, target: float) -> float:
    """Temperature at which the tempered posterior's mean top probability equals ``target``."""
    if len(task_ll) == 0:
        return 1.0

    task_ll_t = np.ascontiguousarray(task_ll.T)  # class-major: fast reductions over classes
    prior_col = log_prior[:, None]

    def gap(log_tau: float) -> float:
        z = math.exp(log_tau) * (prior_col + task_ll_t)
        z -= z.max(axis=0)
        np.exp(z, out=z)
        mean_top = float((1.0 / z.sum(axis=0)).mean())  # the top class's exp is 1 after the shift
        return -abs(mean_top - target)

    return math.exp(_golden_max(gap, math.log(_TAU_RANGE[0]), math.log(4.0)))


def _label_logit(z: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Log-odds of each row's ``labels`` class under softmax(z), computed without rounding at 0 or 1.

    Returns the log-odds, the log-odds at which the label would tie with its strongest rival when the
    other classes keep their proportions, and the log-sum-exp of the other classes (needs >= 2 classes).
    """
    rows = np.arange(len(z))
    others = z.copy()
    others[rows, labels] = -np.inf
    lse_others = _logsumexp(others)
    return z[rows, labels] - lse_others, others.max(axis=1) - lse_others, lse_others


def _fit_platt(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(a, b) maximising the likelihood of ``y`` (label right or not) under sigmoid(a * x + b).

    A Gaussian penalty of precision ``_PLATT_PENALTY`` pulls (a, b) toward the identity (1, 0); the
    penalised log-likelihood is concave, so a damped Newton iteration converges in a few steps.
    """
    features = np.stack([x, np.ones_like(x)], axis=1)
    identity = np.array([1.0, 0.0])

    def loss(theta: np.ndarray) -> float:
        z = features @ theta
        penalty = 0.5 * _PLATT_PENALTY * float(((theta - identity) ** 2).sum())
        return float((np.logaddexp(0.0, z) - y * z).sum()) + penalty

    theta = identity.copy()
    current = loss(theta)
    for _ in range(50):
        p = 0.5 * (1.0 + np.tanh(0.5 * (features @ theta)))  # sigmoid without overflow
        grad = features.T @ (p - y) + _PLATT_PENALTY * (theta - identity)
        hess = (features * (p * (1.0 - p))[:, None]).T @ features + _PLATT_PENALTY * np.eye(2)
        step = np.linalg.solve(hess, grad)
        scale = 1.0
        while scale > 1e-4:
            trial = theta - scale * step
            trial_loss = loss(trial)
            if trial_loss <= current:
                break
            scale /= 2
        else:
            break
        theta, improvement, current = trial, current - trial_loss, trial_loss
        if improvement < 1e-10:
            break
    # A correction that reverses the order of confidences would be no calibration; keep it increasing.
    return max(float(theta[0]), 0.05), float(theta[1])


def _moderated_platt(x: np.ndarray, gold_x: np.ndarray, platt: tuple[float, float]) -> np.ndarray:
    """Posterior-predictive log-odds of the Platt correction at ``x``, not its plug-in ``a * x + b``.

    (a, b) is fitted on a few dozen gold tasks, most of them right and confident, so it is uncertain, and
    most uncertain far out in x, where the confident tasks are.  With a Laplace approximation N((a, b), S)
    of its posterior (S the inverse Hessian of the penalised loss ``_fit_platt`` minimises), the predictive
    probability ∫ sigmoid(a x + b) is approximately sigmoid(mu / sqrt(1 + pi s² / 8)) (MacKay 1992), with
    mu = a x + b and s² = (x, 1) S (x, 1)ᵀ: the correction is trusted as far as the gold supports it.
    """
    # The Hessian of the logistic loss depends on the fitted probabilities only, not on the outcomes.
    features = np.stack([gold_x, np.ones_like(gold_x)], axis=1)
    p = 0.5 * (1.0 + np.tanh(0.5 * (features @ np.asarray(platt))))
    hess = (features * (p * (1.0 - p))[:, None]).T @ features + _PLATT_PENALTY * np.eye(2)
    cov = np.linalg.inv(hess)
    a, b = platt
    k = math.pi / 8.0
    # mu / sqrt(1 + k s²) rises with x only on one side of a turning point (its derivative is linear in x:
    # a (1 + k S11) - b k S01 + k x (a S01 - b S00)); beyond it, x is held at the turning point, so a more
    # confident task is never given a lower confidence than a less confident one.
    slope = a * cov[0, 1] - b * cov[0, 0]
    if abs(slope) > 1e-12:
        turn = (a * (1.0 + k * cov[1, 1]) - b * k * cov[0, 1]) / (-k * slope)
        x = np.minimum(x, turn) if slope < 0 else np.maximum(x, turn)
    mu = a * x + b
    var = cov[0, 0] * x * x + 2.0 * cov[0, 1] * x + cov[1, 1]
    return mu / np.sqrt(1.0 + k * np.maximum(var, 0.0))


# ------------------------------------------------------------------------------------------- aggregate


def aggregate(
    task_idx: np.ndarray,
    worker_idx: np.ndarray,
    label_idx: np.ndarray,
    *,
    n_tasks: int,
    n_workers: int,
    n_classes: int,
    method: str = "auto",
    gold: Mapping[int, int] | None = None,
    anchors: Mapping[int, int] | None = None,
    ignore_label: int | None = None,
    calibrate: bool = True,
) -> AggregationResult:
    """Consensus label, calibrated confidence and figures for every task; reliability for every volunteer.

    Answers are three aligned integer arrays.  ``gold`` maps task index to expert class index; gold tasks
    are clamped to their label during EM (their reported label is the expert's, with confidence 1).
    ``anchors`` maps task index to an expert class index too (a reviewer's decision on a disputed task):
    clamped like gold, so they anchor volunteers' reliability, but never used to calibrate confidence,
    because the tasks experts are asked to settle are the hard ones, not a sample of the campaign's.
    A task in both keeps its ``gold`` label.
    ``ignore_label`` is a class such as "unsure": its answers count in ``n_answers`` but carry no vote and
    never count against the volunteer; it is never a consensus label.
    ``calibrate=False`` keeps the raw model posterior (temperature 1).  With at least
    ``_MIN_GOLD_FOR_CALIBRATION`` gold tasks, `auto` also corrects every other task's confidence by a
    Platt step fitted on the gold tasks (``AggregationResult.platt``); labels are unchanged.
    """
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {', '.join(METHODS)}")
    task, worker, label = _validate(task_idx, worker_idx, label_idx, n_tasks, n_workers, n_classes)
    n_answers = np.bincount(task, minlength=n_tasks)
    worker_n_answers = np.bincount(worker, minlength=n_workers)

    # Work in the space of voting classes.
    if ignore_label is not None and 0 <= ignore_label < n_classes:
        keep_classes = np.array([c for c in range(n_classes) if c != ignore_label], dtype=np.int64)
    else:
        ignore_label = None
        keep_classes = np.arange(n_classes)
    remap = np.full(n_classes, -1, dtype=np.int64)
    remap[keep_classes] = np.arange(len(keep_classes))
    voting = remap[label] >= 0
    task_v, worker_v, label_v = task[voting], worker[voting], remap[label[voting]]
    k_vote = len(keep_classes)

    gold_items = [(int(t), int(remap[g])) for t, g in (gold or {}).items() if 0 <= g < n_classes]
    gold_items = [(t, g) for t, g in gold_items if g >= 0 and 0 <= t < n_tasks]
    gold_tasks = np.array([t for t, _ in gold_items], dtype=np.int64)
    gold_labels = np.array([g for _, g in gold_items], dtype=np.int64)
    # Every expert label clamps EM (gold and anchors); only gold calibrates.
    gold_set = set(gold_tasks.tolist())
    anchor_items = [(int(t), int(remap[a])) for t, a in (anchors or {}).items() if 0 <= a < n_classes]
    anchor_items = [(t, a) for t, a in anchor_items if a >= 0 and 0 <= t < n_tasks and t not in gold_set]
    clamp_tasks = np.array([t for t, _ in gold_items + anchor_items], dtype=np.int64)
    clamp_labels = np.array([g for _, g in gold_items + anchor_items], dtype=np.int64)

    if k_vote == 0:
        raise ValueError("there must be at least one class besides ignore_label")

    answers = _Answers(task_v, worker_v, label_v, n_tasks, n_workers, k_vote)
    if method == "majority":
        fit = _fit_majority(answers)
    elif method == "weighted":
        fit = _fit_weighted(answers)
    else:
        fit = _fit_em(
            answers,
            model=method,
            gold_tasks=clamp_tasks,
            gold_labels=clamp_labels,
        )

    def fit_posterior(fit: _Fit) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(task log-likelihoods, per-answer ones, posteriors with expert labels held) of a fit."""
        task_ll, own_ll = answers.log_likelihood(fit.log_pi)
        post = _softmax(fit.log_prior + task_ll)
        post[clamp_tasks] = np.eye(k_vote)[clamp_labels]
        return task_ll, own_ll, post

    task_ll, own_ll, raw_post = fit_posterior(fit)
    gold_chance = _chance_on_gold(answers, gold_tasks, gold_labels)
    left_out_ll = None  # `auto`'s leave-task-out evidence, when computed for the fit kept
    left_out_grid = None  # and its ``_heldout_grid``
    common = False  # whether `auto` kept one accuracy shared by every volunteer
    if method == "auto" and k_vote > 1 and len(task_v) and fit.strength is not None:
        left_out_ll = _leave_task_out_ll(answers, raw_post, fit.strength, fit.pseudo)
        left_out_grid = _heldout_grid(answers, left_out_ll, fit.log_prior)
        if left_out_grid is not None:
            common_fit = _fit_common_accuracy(answers, clamp_tasks, clamp_labels)
            if _common_accuracy_close(answers, left_out_grid, common_fit) and _prefers_common_accuracy(
                answers, fit, clamp_tasks, clamp_labels, common_fit
            ):
                # Volunteers indistinguishable: every one gets the crowd's accuracy, except those whose gold
                # answers are at chance, who are held there (the crowd's accuracy would give their votes as
                # much weight as anyone's); the confidence is then calibrated as for any `auto` fit.
                at_chance = gold_chance if gold_chance.any() else None
                fit = _fit_em(
                    answers,
                    model=method,
                    gold_tasks=clamp_tasks,
                    gold_labels=clamp_labels,
                    init_post=common_fit[2],
                    fixed_strength=_COMMON_STRENGTH,
                    fixed_pseudo=math.inf,
                    silenced=at_chance,
                )
                task_ll, own_ll, raw_post = fit_posterior(fit)
                left_out_ll = left_out_grid = None
                common = True

    def cross_fitted_ll() -> Any:
        """Each answer's evidence from a refit on the other half of the tasks (gold unclamped)."""
        return _cross_fitted_answer_ll(
            answers,
            method=method,
            fit=fit,
            init_post=raw_post,
            gold_tasks=clamp_tasks,
            gold_labels=clamp_labels,
        )

    tau = 1.0
    taus, tau_weights = np.ones(1), np.ones(1)
    enough_gold = len(gold_tasks) >= _MIN_GOLD_FOR_CALIBRATION
    loo_ll = None
    if calibrate and method == "auto" and len(task_v) and fit.strength is not None and not enough_gold:
        # Without enough gold to calibrate on, `auto`'s confidence rests on leave-task-out evidence; with
        # enough, the temperature and the Platt correction are fitted on gold, for the in-sample evidence.
        loo_ll = left_out_ll
        if loo_ll is None:
            loo_ll = _leave_task_out_ll(answers, raw_post, fit.strength, fit.pseudo, fit.silenced)
    if calibrate and loo_ll is not None:
        # `auto` without enough gold: the temperatures are fitted on the evidence they will temper, each
        # answer scored by its volunteer's parameters fitted without the answer's task.
        taus, tau_weights = _temperature_weights(
            answers, loo_ll, fit.log_prior, left_out_grid if loo_ll is left_out_ll else None
        )
        tau = float(np.exp((tau_weights * np.log(taus)).sum()))
        # The leave-task-out evidence removes a volunteer's credit for the task at hand, not for the other
        # tasks their answers helped decide; with a handful of answers each (three answers a task, volunteers
        # near chance) that is still too confident.  The temperature refitted on the other half of the tasks
        # sees that optimism: the less confident of the two honest estimates is kept.
        tau_cross = _fit_temperature(answers, cross_fitted_ll(), fit.log_prior, gold_tasks, gold_labels)
        if tau_cross < tau:
            taus, tau = taus * (tau_cross / tau), tau_cross
    elif calibrate:
        heldout_ll = own_ll
        if method in ("auto", "dawid_skene", "one_coin") and not enough_gold and len(task_v):
            heldout_ll = cross_fitted_ll()
        tau = _fit_temperature(answers, heldout_ll, fit.log_prior, gold_tasks, gold_labels)
        taus = np.array([tau])
    if loo_ll is not None:
        # The confidence scores each answer with its volunteer's parameters fitted without the task.
        task_ll = answers.task_sums(loo_ll)
    # The label comes from the fitted model; the temperature only tempers its confidence (it scales the
    # whole log-posterior, so it never changes which class is on top).
    if len(taus) == 1:
        post_v = _softmax(float(taus[0]) * (fit.log_prior + task_ll))
    else:
        post_v = np.zeros_like(task_ll)
        for tau_j, weight in zip(taus.tolist(), tau_weights.tolist(), strict=True):
            post_v += weight * _softmax(tau_j * (fit.log_prior + task_ll))
    post_v[clamp_tasks] = np.eye(k_vote)[clamp_labels]

    votes = answers.task_sums(np.eye(k_vote)[label_v])
    has_votes = votes.sum(axis=1) > 0
    if method == "majority":
        # The label is the plain vote; ties are explicit and broken towards the lowest class index.
        top_votes = votes.max(axis=1)
        tied = has_votes & ((votes == top_votes[:, None]).sum(axis=1) > 1)
        labels_v = np.argmax(votes, axis=1)
        labels_v[clamp_tasks] = clamp_labels
        tied[clamp_tasks] = False
    else:
        labels_v = np.argmax(raw_post, axis=1)
        top = raw_post.max(axis=1)
        tied = has_votes & ((raw_post >= top[:, None] - 1e-12).sum(axis=1) > 1)
    platt = (1.0, 0.0)
    gold_with_votes = gold_tasks[has_votes[gold_tasks]]
    if calibrate and method == "auto" and k_vote > 1 and len(gold_with_votes) >= _MIN_GOLD_FOR_CALIBRATION:
        # Platt correction on gold: the temperature scales the log-posterior, (a, b) then corrects the
        # confidence itself (a shift the temperature cannot make), fitted on whether each gold task's
        # label would have been right.
        z = tau * (fit.log_prior + task_ll)
        gold_of = dict(zip(gold_tasks.tolist(), gold_labels.tolist(), strict=True))
        gold_target = np.array([gold_of[t] for t in gold_with_votes.tolist()], dtype=np.int64)
        # Gold tasks are clamped during EM, so their in-sample evidence was scored by volunteers' confusion
        # matrices fitted on those very labels and looks more reliable than the other tasks'; the fit
        # uses each gold task's evidence from a refit on the other half of the tasks, gold unclamped.
        gold_ll = answers.task_sums(cross_fitted_ll())[gold_with_votes]
        gold_pred = np.argmax(fit.log_prior + gold_ll, axis=1)  # the unclamped label
        gold_x, _, _ = _label_logit(tau * (fit.log_prior + gold_ll), gold_pred)
        platt = _fit_platt(gold_x, (gold_pred == gold_target).astype(float))
        target_rows = has_votes.copy()
        target_rows[clamp_tasks] = False
        rows = np.flatnonzero(target_rows)
        x, tie_x, lse_others = _label_logit(z[rows], labels_v[rows])
        # Never push the label below its strongest rival (unless the tempered posterior already did).  Where
        # the label leads, the correction is averaged over its own uncertainty (``_moderated_platt``); that
        # pulls log-odds toward 0, so it is not used where the label trails, which it could lift to the top.
        leads = x >= tie_x
        x = np.where(
            leads,
            np.maximum(_moderated_platt(x, gold_x, platt), tie_x),
            np.maximum(platt[0] * x + platt[1], x),
        )
        # Label gets sigmoid(x); the other classes share the rest in their tempered proportions.
        adjusted = z[rows] - lse_others[:, None] - np.logaddexp(0.0, x)[:, None]
        adjusted[np.arange(len(rows)), labels_v[rows]] = -np.logaddexp(0.0, -x)
        post_v[rows] = np.exp(adjusted)
    # The label stays the most probable class of the distribution reported with it.  The leave-task-out
    # evidence can leave the fitted label behind a rival on a close task (at most 1.5% of the tasks of a
    # public crowd, web's 41; 4% when the prior was not tempered with the evidence); such a task is a
    # toss-up between the two, so the label is lifted to tie with its rival, the other classes keeping
    # their proportions.
    if k_vote > 1:
        all_rows = np.arange(n_tasks)
        rivals = post_v.copy()
        rivals[all_rows, labels_v] = -1.0
        rival = rivals.max(axis=1)
        behind = has_votes & (post_v[all_rows, labels_v] < rival)
        if behind.any():
            post_v[behind, labels_v[behind]] = rival[behind]
            post_v[behind] /= post_v[behind].sum(axis=1, keepdims=True)
    confidence = np.where(has_votes, post_v[np.arange(n_tasks), labels_v], 0.0)
    agreement = np.divide(
        votes[np.arange(n_tasks), labels_v],
        n_answers,
        out=np.zeros(n_tasks),
        where=(n_answers > 0) & has_votes,
    )
    entropy = -np.sum(post_v * np.log(np.maximum(post_v, _EPS)), axis=1)
    labels = np.where(has_votes, keep_classes[labels_v], -1)

    posteriors = np.zeros((n_tasks, n_classes))
    posteriors[:, keep_classes] = post_v

    prior = np.exp(fit.log_prior)
    pi = np.exp(fit.log_pi)
    reliability = np.einsum("k,wkk->w", prior, pi)
    answer_freq = np.einsum("k,wkl->wl", prior, pi)
    chance = answer_freq @ prior
    class_prior = np.zeros(n_classes)
    class_prior[keep_classes] = prior
    confusion = np.zeros((n_workers, n_classes, n_classes))
    confusion[:, keep_classes[:, None], keep_classes[None, :]] = pi

    incremental_tau = tau
    if calibrate and method in ("auto", "dawid_skene"):
        # The one-coin summary of the fit, as used by task_consensus, is less over-confident than the
        # full model, so it gets its own temperature: the one that gives the same mean confidence.
        one_coin_ll = answers.per_answer(_one_coin_log_pi(reliability, k_vote))
        incremental_tau = _match_mean_confidence(
            answers.task_sums(one_coin_ll)[has_votes],
            fit.log_prior,
            float(confidence[has_votes].mean()) if has_votes.any() else 1.0,
        )

    return AggregationResult(
        labels=labels,
        confidence=confidence,
        agreement=agreement,
        entropy=entropy,
        n_answers=n_answers,
        posteriors=posteriors,
        worker_reliability=reliability,
        worker_n_answers=worker_n_answers,
        method=method,
        iterations=fit.iterations,
        tied=tied,
        worker_chance=chance,
        class_prior=class_prior,
        temperature=tau,
        incremental_temperature=incremental_tau,
        platt=platt,
        prior_strength=fit.strength,
        common_accuracy=common,
        worker_confusion=confusion,
        worker_chance_on_gold=gold_chance,
    )


# ------------------------------------------------------------------------------------ string-level table


class ConsensusTable(list):  # type: ignore[type-arg]
    """The rows of ``aggregate_table`` (a list of dicts), with the fit attached.

    ``worker_reliability`` maps volunteer id to P(answers correctly); ``flagged`` lists the volunteers
    whose reliability is at chance or below; ``result`` is the underlying ``AggregationResult``;
    ``classes``, ``tasks`` and ``workers`` give the string of each index.
    """

    worker_reliability: dict[str, float]
    flagged: list[str]
    result: AggregationResult
    classes: list[str]
    tasks: list[str]
    workers: list[str]


def aggregate_table(
    rows: Iterable[tuple[str, str, str]],
    *,
    method: str = "auto",
    gold: Mapping[str, str] | None = None,
    unsure_label: str | None = "unsure",
) -> ConsensusTable:
    """Consensus of string-labelled answers ``(task, worker, label)``.

    Returns a ``ConsensusTable``: a list with one dict per task, in order of first appearance, with keys
    ``task, label, confidence, n_answers, agreement, entropy`` (``label`` is None when a task has only
    ``unsure_label`` answers), plus ``.worker_reliability`` and ``.flagged`` attributes.
    """
    task_ids: dict[str, int] = {}
    worker_ids: dict[str, int] = {}
    task_col: list[int] = []
    worker_col: list[int] = []
    label_col: list[str] = []
    for task, worker, label in rows:
        task_col.append(task_ids.setdefault(str(task), len(task_ids)))
        worker_col.append(worker_ids.setdefault(str(worker), len(worker_ids)))
        label_col.append(str(label))
    gold = {str(k): str(v) for k, v in (gold or {}).items()}
    classes = sorted(set(label_col) | {v for k, v in gold.items() if k in task_ids})
    if unsure_label is not None and unsure_label not in classes and label_col:
        classes.append(unsure_label)
    class_ids = {c: i for i, c in enumerate(classes)}
    labels_arr = np.array([class_ids[c] for c in label_col], dtype=np.int64)
    ignore = class_ids.get(unsure_label) if unsure_label is not None else None
    result = aggregate(
        np.array(task_col, dtype=np.int64),
        np.array(worker_col, dtype=np.int64),
        labels_arr,
        n_tasks=len(task_ids),
        n_workers=len(worker_ids),
        n_classes=max(len(classes), 1),
        method=method,
        gold={task_ids[k]: class_ids[v] for k, v in gold.items() if k in task_ids},
        ignore_label=ignore,
    )
    table = ConsensusTable(
        {
            "task": task,
            "label": classes[result.labels[i]] if result.labels[i] >= 0 else None,
            "confidence": float(result.confidence[i]),
            "n_answers": int(result.n_answers[i]),
            "agreement": float(result.agreement[i]),
            "entropy": float(result.entropy[i]),
        }
        for task, i in task_ids.items()
    )
    worker_names = list(worker_ids)
    flags = flag_unreliable(result)
    table.worker_reliability = {w: float(result.worker_reliability[i]) for w, i in worker_ids.items()}
    table.flagged = [worker_names[i] for i in np.flatnonzero(flags)]
    table.result = result
    table.classes = classes
    table.tasks = list(task_ids)
    table.workers = worker_names
    return table


def flag_unreliable(
    result: AggregationResult | np.ndarray,
    worker_n_answers: np.ndarray | None = None,
    *,
    chance: np.ndarray | float | None = None,
    min_answers: int = 5,
    tolerance: float = 0.02,
) -> np.ndarray:
    """Volunteers whose reliability is at chance level or below (boolean array over volunteers).

    Chance is, per volunteer, the accuracy of answering at random with their own answer frequencies
    (so a volunteer who always gives the commonest answer is flagged too).  Volunteers with fewer than
    ``min_answers`` answers are never flagged on their reliability: it is mostly the crowd's prior.  An
    ``AggregationResult`` also flags the volunteers its gold answers put at chance (``_chance_on_gold``),
    which holds when the volunteers share one accuracy.
    """
    on_gold = None
    if isinstance(result, AggregationResult):
        reliability = result.worker_reliability
        counts = result.worker_n_answers if worker_n_answers is None else worker_n_answers
        chance = result.worker_chance if chance is None else chance
        if len(result.worker_chance_on_gold) == len(reliability):
            on_gold = result.worker_chance_on_gold
    else:
        reliability = np.asarray(result, dtype=float)
        counts = (
            np.asarray(worker_n_answers) if worker_n_answers is not None else np.full(len(reliability), 10**9)
        )
        if chance is None:
            raise ValueError("chance (e.g. 1 / n_classes) is required when passing a reliability array")
    flagged = (np.asarray(counts) >= min_answers) & (reliability <= np.asarray(chance) + tolerance)
    return flagged if on_gold is None else flagged | on_gold


# ------------------------------------------------------------------------------------- incremental path


class Consensus(NamedTuple):
    """One task's consensus: unpacks as ``(label, confidence, agreement, entropy, posterior)``."""

    label: str | int | None
    confidence: float
    agreement: float
    entropy: float
    posterior: dict[Any, float]


def task_consensus(
    labels: Sequence[Any],
    weights: Sequence[float] | None = None,
    classes: Sequence[Any] | int | None = None,
    prior: Sequence[float] | None = None,
    *,
    temperature: float = 1.0,
    default_reliability: float = 0.75,
    ignore_label: Any = "unsure",
) -> Consensus:
    """One task's consensus from its answers, for use on every new answer (tens of microseconds).

    ``labels`` are the answers given; ``weights`` the reliability P(correct) of the volunteer behind each
    answer (``AggregationResult.worker_reliability``; ``default_reliability`` when None); ``classes`` the
    possible labels (a list, or a count for labels 0..n-1; default: the labels seen); ``prior`` the class
    prior in the order of ``classes`` (``AggregationResult.class_prior``); ``temperature`` the
    ``AggregationResult.incremental_temperature`` of the last full fit.  One-coin model: an answer with
    reliability r says its label with probability r and each other class with (1 - r) / (K - 1).
    Answers equal to ``ignore_label`` count in agreement's denominator but carry no vote.  A plain Python
    loop: a task has tens of answers, and numpy's per-call overhead would dominate.
    """
    if isinstance(classes, int):
        class_list: list[Any] = list(range(classes))
    elif classes is None:
        class_list = sorted({label for label in labels if label != ignore_label}, key=str)
    else:
        class_list = [c for c in classes if c != ignore_label]
    n_classes = len(class_list)
    index = {c: i for i, c in enumerate(class_list)}
    if (
        prior is not None
        and len(prior) == n_classes + 1
        and classes is not None
        and not isinstance(classes, int)
    ):
        # A prior given over classes including the ignored one: drop its entry.
        prior = [p for c, p in zip(classes, prior, strict=True) if c != ignore_label]  # type: ignore[arg-type]
    if prior is None:
        log_post = [0.0] * n_classes
    else:
        if len(prior) != n_classes:
            raise ValueError("prior must have one entry per class")
        log_post = [math.log(max(float(p), 1e-12)) for p in prior]
    votes = [0] * n_classes
    if weights is not None and len(weights) != len(labels):
        raise ValueError("weights must have one entry per answer")
    off_share = 1.0 / max(n_classes - 1, 1)
    for position, label in enumerate(labels):
        k = index.get(label)
        if k is None:
            if label == ignore_label:
                continue
            raise ValueError(f"answer {label!r} is not one of the classes")
        votes[k] += 1
        r = default_reliability if weights is None else float(weights[position])
        r = min(max(r, 1e-6), 1 - 1e-6)
        # Only the difference between the answered class and the others matters for the posterior.
        log_post[k] += math.log(r) - math.log((1 - r) * off_share)
    # The temperature scales the whole log-posterior, prior included (as the full fit's does): it tempers
    # the confidence and never changes the label.
    log_post = [temperature * v for v in log_post]
    n_answers = len(labels)
    if n_classes == 0 or sum(votes) == 0:
        posterior = {c: (1.0 / n_classes if n_classes else 0.0) for c in class_list}
        return Consensus(None, 0.0, 0.0, math.log(n_classes) if n_classes else 0.0, posterior)
    peak = max(log_post)
    exps = [math.exp(v - peak) for v in log_post]
    total = sum(exps)
    probs = [e / total for e in exps]
    best = max(range(n_classes), key=lambda i: (probs[i], votes[i], -i))
    entropy = -sum(p * math.log(p) for p in probs if p > 0)
    return Consensus(
        class_list[best],
        probs[best],
        votes[best] / n_answers,
        entropy,
        dict(zip(class_list, probs, strict=True)),
    )


# Votes the top label must lead the runner-up by before a task closes short of its maximum.
RETIREMENT_MIN_MARGIN = 2
# A task's label is settled when the answers it may still get would change it with at most this probability
# (0.03 lost 0.65 accuracy points in the replay of public crowds, against 0.39 at 0.01).
RETIREMENT_SETTLED = 0.01
# Pseudo-answers of the Dirichlet that spreads a task's future answers (see ``label_change_probability``).
RETIREMENT_DISPERSION = 3.0
# More answers to come than this and a label is never called settled (the grid of counts grows with the
# square of them; the campaign form allows 200 answers a task).
_MAX_FUTURE_ANSWERS = 400


@functools.lru_cache(maxsize=256)  # the shares change only with a campaign's refit: reused by every answer
def _future_counts(m: int, shares: tuple[float, float, float], dispersion: float) -> np.ndarray:
    """P(U = u, D = d) on an (m+1, m+1) grid, where m future answers split into U for a rival label, D for
    the current one and the rest for other labels, Dirichlet-multinomial around ``shares`` with
    ``dispersion`` pseudo-answers: the answers to one task share its difficulty, so they split more often
    than independent draws would."""
    counts = np.arange(m + 1, dtype=float)
    u, d = counts[:, None], counts[None, :]
    rest = m - u - d
    possible = rest >= 0
    if shares[2] <= 1e-12:  # two classes: every answer is the rival or the current label
        possible &= rest == 0
    rest_i = np.where(possible, rest, 0.0).astype(int)
    log_factorial = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, m + 1)))])
    log_p = log_factorial[m] - log_factorial[:, None] - log_factorial[None, :] - log_factorial[rest_i]

    def rising(a: float) -> np.ndarray:  # log Γ(a + c) - log Γ(a) for c = 0..m
        return np.concatenate([[0.0], np.cumsum(np.log(a + counts[:-1]))])

    alpha = [dispersion * max(x, 1e-12) for x in shares]
    log_p = log_p + rising(alpha[0])[:, None] + rising(alpha[1])[None, :] + rising(alpha[2])[rest_i]
    log_p -= math.lgamma(dispersion + m) - math.lgamma(dispersion)
    grid = np.where(possible, np.exp(log_p), 0.0)
    grid.flags.writeable = False  # cached: shared by every caller
    return grid


def label_change_probability(
    posterior: Sequence[float],
    remaining: int,
    *,
    crowd_reliability: float,
    temperature: float = 1.0,
    dispersion: float = RETIREMENT_DISPERSION,
) -> float:
    """An upper bound on the probability that ``remaining`` more answers would change a task's label.

    ``posterior`` is the task's posterior over the voting classes now (``task_consensus``).  The true
    class is drawn from it; each future answer comes from a typical volunteer of the campaign, right with
    ``crowd_reliability`` (the answer-weighted mean of ``AggregationResult.worker_reliability``) and
    otherwise any other class evenly, and moves the log-posterior by
    ``temperature * log(r (K - 1) / (1 - r))`` toward its label, as ``task_consensus`` does.  A task's
    future answers are over-dispersed (``_future_counts``).  Exact on the grid of counts for each rival,
    summed over the rivals (a union bound).  Tens of microseconds for ten answers to come.
    """
    n_classes = len(posterior)
    if remaining <= 0 or n_classes < 2:
        return 0.0
    if remaining > _MAX_FUTURE_ANSWERS:
        return 1.0
    r = min(max(crowd_reliability, 1e-6), 1 - 1e-6)
    off = (1 - r) / (n_classes - 1)
    step = temperature * (math.log(r) - math.log(off))
    if step <= 0:
        # A typical volunteer at chance or below: the model cannot say what more answers would do, and a
        # campaign whose crowd looks like that (or an early refit that makes it look so) keeps collecting.
        return 1.0
    current = max(range(n_classes), key=lambda i: posterior[i])
    gain = np.arange(remaining + 1)[:, None] - np.arange(remaining + 1)[None, :]  # rival's votes gained
    other = max(1 - r - off, 0.0)
    if_current = _future_counts(remaining, (off, r, other), dispersion)  # truth is the current label
    if_rival = _future_counts(remaining, (r, off, other), dispersion)  # truth is the rival
    if_other = _future_counts(remaining, (off, off, 1 - 2 * off), dispersion) if n_classes > 2 else None
    log_current = math.log(max(posterior[current], 1e-300))
    change = 0.0
    for rival in range(n_classes):
        if rival == current:
            continue
        overtakes = gain >= (log_current - math.log(max(posterior[rival], 1e-300))) / step - 1e-9
        change += (
            posterior[current] * if_current[overtakes].sum() + posterior[rival] * if_rival[overtakes].sum()
        )
        p_other = max(0.0, 1.0 - posterior[current] - posterior[rival])
        if if_other is not None and p_other > 0:
            change += p_other * if_other[overtakes].sum()
    return float(min(1.0, change))


# How fast the doubt a task may retire with shrinks as its answers grow (see ``retirement_threshold``).
RETIREMENT_DOUBT_DECAY = 2.0


def retirement_threshold(
    n_answers: int,
    *,
    min_answers: int = 3,
    threshold: float = 0.95,
    doubt_decay: float = RETIREMENT_DOUBT_DECAY,
) -> float:
    """Confidence a task needs to retire after ``n_answers``: ``threshold`` at ``min_answers``, then
    ``1 - (1 - threshold) * (min_answers / n_answers) ** doubt_decay`` (0.95 at 3 answers, 0.98 at 5,
    0.9955 at 10 with the defaults).

    Two reasons to ask more of a task the longer it takes.  A task that needs many answers to reach the
    threshold is a hard one, and on hard tasks volunteers' errors are correlated (the same misreading),
    which a model of independent answers does not see, so its confidence there is too high.  And the
    rule looks again after every answer: a confidence that wanders around the threshold crosses it by
    chance sooner or later.  In a replay of seven public crowds (benchmarks/retirement_replay.py, five
    answer orders) this cut the accuracy lost to retirement from 0.98 to 0.36 points on average, for
    12.5% fewer answers instead of 18.0%; retiring at the minimum is unchanged.
    """
    if n_answers <= min_answers:
        return threshold
    return 1.0 - (1.0 - threshold) * (min_answers / n_answers) ** doubt_decay


def retirement_decision(
    confidence: float,
    n_answers: int,
    *,
    min_answers: int = 3,
    max_answers: int = 10,
    threshold: float = 0.95,
    vote_margin: int | None = None,
    min_margin: int = RETIREMENT_MIN_MARGIN,
    doubt_decay: float = RETIREMENT_DOUBT_DECAY,
    label_change: float | None = None,
    settled_below: float = RETIREMENT_SETTLED,
) -> str:
    """``"retire"``, ``"needs_review"`` or ``"continue"`` (keep serving the task).

    From ``min_answers`` on, a task retires when its confidence reaches ``threshold`` at ``min_answers``
    answers and more with every further answer (``retirement_threshold``; ``doubt_decay=0`` keeps the plain
    threshold).  ``vote_margin`` (answers for the top label minus answers for the runner-up), when given,
    must also reach ``min_margin``: a task is never retired on one volunteer's word against another's,
    however reliable the model thinks the first one is (in a replay of public crowds this halves the
    accuracy lost to early retirement for a few per cent more answers).

    ``label_change``, when given, is the probability that the answers the task may still get, up to
    ``max_answers``, would change its label (``label_change_probability``).  At most ``settled_below``,
    with the vote margin, the label is settled: the task retires if its confidence reaches the plain
    ``threshold``, and goes to expert review at once otherwise, since more answers would not change its
    label, only cost volunteers' time.  At ``max_answers`` the same holds: retire when the plain threshold
    is reached with the margin, else review.  A settled rule only adds closings to the rising threshold:
    it never keeps a task open that the threshold would retire.  In a replay of seven public crowds
    (benchmarks/retirement_replay.py, five answer orders) it used 17.8% fewer answers instead of 12.5% for
    0.39 accuracy points lost instead of 0.36, and sent 30% of tasks to review instead of 43%.
    """
    if n_answers < min_answers:
        return "continue"
    margin_ok = vote_margin is None or vote_margin >= min_margin
    needed = retirement_threshold(
        n_answers, min_answers=min_answers, threshold=threshold, doubt_decay=doubt_decay
    )
    if confidence >= needed and margin_ok:
        return "retire"
    settled = label_change is not None and label_change <= settled_below
    if n_answers >= max_answers or (settled and margin_ok):
        if label_change is not None and confidence >= threshold and margin_ok:
            return "retire"
        return "needs_review"
    return "continue"


def vote_margin(labels: Sequence[Any], *, ignore_label: Any = "unsure") -> int:
    """Answers for the commonest label minus answers for the next one (``ignore_label`` not counted)."""
    counts: dict[Any, int] = {}
    for label in labels:
        if label != ignore_label:
            counts[label] = counts.get(label, 0) + 1
    top = [*sorted(counts.values(), reverse=True), 0, 0]
    return top[0] - top[1]


# ------------------------------------------------------------------------------- campaign-level figures


def krippendorff_alpha_nominal(
    task_idx: np.ndarray, worker_idx: np.ndarray, label_idx: np.ndarray, *, n_classes: int
) -> float:
    """Krippendorff's alpha for nominal data (1 = perfect agreement, 0 = chance, < 0 = systematic
    disagreement); tasks with fewer than two answers are not pairable and are left out.  NaN when there
    is nothing to compare or only one class is ever used."""
    task = np.asarray(task_idx, dtype=np.int64)
    label = np.asarray(label_idx, dtype=np.int64)
    del worker_idx  # alpha depends only on the values per unit; kept for a uniform signature
    if len(task) == 0:
        return float("nan")
    _, task = np.unique(task, return_inverse=True)
    n_units = int(task.max()) + 1
    counts = _task_sums(task, np.eye(n_classes)[label], n_units)
    m = counts.sum(axis=1)
    pairable = m >= 2
    counts, m = counts[pairable], m[pairable]
    if len(m) == 0:
        return float("nan")
    # Coincidence matrix: o[c, k] = Σ_u (n_uc n_uk - [c == k] n_uc) / (m_u - 1)
    scaled = counts / (m - 1)[:, None]
    coincidence = scaled.T @ counts - np.diag(scaled.sum(axis=0))
    n_c = coincidence.sum(axis=1)
    n = n_c.sum()
    observed = coincidence.sum() - np.trace(coincidence)
    expected = (n * n - (n_c**2).sum()) / (n - 1)
    if expected <= 0:
        return float("nan")
    return float(1.0 - observed / expected)


def wilson_interval(successes: int, n: int, *, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for a proportion (95% by default): honest at small n and near 0 or 1, where
    the normal approximation gives bounds outside [0, 1]. (0, 1) when there is nothing to measure."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


def expected_calibration_error(confidence: np.ndarray, correct: np.ndarray, n_bins: int = 10) -> float:
    """Expected calibration error: |mean confidence - accuracy| over equal-width bins, weighted by size."""
    conf = np.asarray(confidence, dtype=float)
    ok = np.asarray(correct, dtype=float)
    if len(conf) == 0:
        return 0.0
    bins = np.minimum((conf * n_bins).astype(np.int64), n_bins - 1)
    gap = np.bincount(bins, weights=conf - ok, minlength=n_bins)
    return float(np.abs(gap).sum() / len(conf))


# ------------------------------------------------------------------------------------ other answer types


def aggregate_multiple(
    task_idx: np.ndarray,
    worker_idx: np.ndarray,
    selected: np.ndarray,
    *,
    n_tasks: int,
    n_workers: int,
    method: str = "auto",
    gold: Mapping[int, Iterable[int]] | None = None,
) -> list[AggregationResult]:
    """Multiple-choice answers: one binary consensus per option.

    ``selected`` is a boolean (n_answers, n_options) matrix: row a says which options answer a ticked.
    Returns one ``AggregationResult`` per option, whose label is 1 when the crowd says the option applies.
    ``gold`` maps a task index to the set of options the expert ticked.
    """
    chosen = np.asarray(selected, dtype=bool)
    if chosen.ndim != 2 or chosen.shape[0] != len(task_idx):
        raise ValueError("selected must be an (n_answers, n_options) boolean matrix")
    results = []
    for option in range(chosen.shape[1]):
        option_gold = None
        if gold is not None:
            option_gold = {int(t): int(option in set(opts)) for t, opts in gold.items()}
        results.append(
            aggregate(
                task_idx,
                worker_idx,
                chosen[:, option].astype(np.int64),
                n_tasks=n_tasks,
                n_workers=n_workers,
                n_classes=2,
                method=method,
                gold=option_gold,
            )
        )
    return results


def cluster_points(
    points_m: Sequence[tuple[Any, float, float]],
    *,
    radius_m: float = 10.0,
    min_volunteers: int = 1,
) -> list[dict[str, float]]:
    """Consensus locations of points marked on an image, from ``(volunteer, x_m, y_m)`` in metres.

    DBSCAN-like: points within ``radius_m`` of each other are linked, and linked points form a cluster.
    Within a cluster each volunteer counts once (their points there are averaged first), so one keen
    volunteer clicking five times cannot outvote four others.  Each cluster gives its centre (mean of the
    volunteers' points), ``n_volunteers`` and ``spread_m`` (root-mean-square distance of the volunteers'
    points from the centre).  Clusters with fewer than ``min_volunteers`` volunteers are dropped.  Sorted
    by ``n_volunteers``, most first.  O(n^2) in the points of one task, which number in the hundreds.
    """
    if not points_m:
        return []
    volunteers = [p[0] for p in points_m]
    xy = np.array([[float(p[1]), float(p[2])] for p in points_m])
    if not np.all(np.isfinite(xy)):
        raise ValueError("point coordinates must be finite numbers")
    n = len(xy)
    linked = ((xy[:, None, :] - xy[None, :, :]) ** 2).sum(axis=2) <= radius_m**2
    # Connected components of the link graph by repeated min-label propagation (vectorised).
    component = np.arange(n)
    while True:
        spread = np.where(linked, component[None, :], n).min(axis=1)
        if np.array_equal(spread, component):
            break
        component = spread
    out = []
    for comp in np.unique(component):
        members = np.flatnonzero(component == comp)
        per_volunteer: dict[Any, list[int]] = {}
        for i in members.tolist():
            per_volunteer.setdefault(volunteers[i], []).append(i)
        if len(per_volunteer) < min_volunteers:
            continue
        centres = np.array([xy[idx].mean(axis=0) for idx in per_volunteer.values()])
        centre = centres.mean(axis=0)
        spread_m = float(np.sqrt(((centres - centre) ** 2).sum(axis=1).mean()))
        out.append(
            {
                "x_m": float(centre[0]),
                "y_m": float(centre[1]),
                "n_volunteers": len(per_volunteer),
                "spread_m": spread_m,
            }
        )
    out.sort(key=lambda c: (-c["n_volunteers"], c["x_m"], c["y_m"]))
    return out


_EARTH_RADIUS_M = 6_371_008.8


def combine_locations(lonlats: Sequence[tuple[float, float]], *, max_iter: int = 200) -> dict[str, float]:
    """Robust centre of map guesses ``(lon, lat)``: the geometric median (Weiszfeld) in a local
    equirectangular projection around the coordinate-wise median; ``spread_m`` is the median distance
    of the guesses from the centre, in metres.  Returns ``{lon, lat, spread_m, n}``."""
    pts = np.asarray(lonlats, dtype=float).reshape(-1, 2)
    if len(pts) == 0:
        raise ValueError("no locations to combine")
    if not np.all(np.isfinite(pts)) or np.any(np.abs(pts[:, 1]) > 90):
        raise ValueError("locations must be finite (lon, lat) pairs with |lat| <= 90")
    # Longitudes are unwrapped around their circular mean, so guesses either side of the antimeridian
    # agree, then centred on their median.
    radians = np.radians(pts[:, 0])
    lon_ref = math.degrees(math.atan2(float(np.sin(radians).mean()), float(np.cos(radians).mean())))
    lon0 = lon_ref + float(np.median((pts[:, 0] - lon_ref + 180.0) % 360.0 - 180.0))
    lat0 = float(np.median(pts[:, 1]))
    dlon = (pts[:, 0] - lon0 + 180.0) % 360.0 - 180.0
    scale = math.radians(1) * _EARTH_RADIUS_M
    xy = np.column_stack([dlon * scale * math.cos(math.radians(lat0)), (pts[:, 1] - lat0) * scale])
    centre = np.median(xy, axis=0)
    for _ in range(max_iter):
        dist = np.sqrt(((xy - centre) ** 2).sum(axis=1))
        if np.any(dist < 1e-6):
            # Weiszfeld is undefined at a data point; a data point that is the median stays put.
            close = dist < 1e-6
            weights = 1.0 / np.maximum(dist, 1e-6)
            weights[close] = 0.0
            if weights.sum() == 0:
                break
            pull = (weights[:, None] * (xy - centre)).sum(axis=0)
            if np.sqrt((pull**2).sum()) <= close.sum():
                break
        else:
            weights = 1.0 / dist
        new_centre = (weights[:, None] * xy).sum(axis=0) / weights.sum()
        moved = float(np.sqrt(((new_centre - centre) ** 2).sum()))
        centre = new_centre
        if moved < 1e-3:
            break
    spread = float(np.median(np.sqrt(((xy - centre) ** 2).sum(axis=1))))
    lon = lon0 + centre[0] / (scale * math.cos(math.radians(lat0)))
    lon = (lon + 180.0) % 360.0 - 180.0
    lat = lat0 + centre[1] / scale
    return {"lon": float(lon), "lat": float(lat), "spread_m": spread, "n": len(pts)}
