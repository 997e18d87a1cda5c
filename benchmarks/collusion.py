"""Coordinated bad actors against agreement scoring: accuracy with a share of answers from colluding accounts.

Evidence of abuses draws people who want it denied. Volunteers cannot choose their tasks (the platform
assigns them), so an organised group's answers land on tasks at random; what it can choose is how to answer.
Each public crowd in ../shared/datasets/crowd/ gets, on every task, extra answers from a pool of colluding
accounts, so that they make up the given share of all answers, with two strategies:

- ``deny``: always the same label (the class the truth holds least often: "nothing happened");
- ``camouflage``: what an honest volunteer would answer (one of the task's honest answers, at random: the
  accounts look at the images like anybody), except that half of the times it is not that label, they deny.

Printed: accuracy on the tasks whose truth is not the group's label (the ones it tries to flip), for majority
vote and `auto`, without and with 10% of the truth as gold, and the share of colluding accounts `auto`
flags as unreliable (``flag_unreliable``), next to the honest crowd's accuracy on the same tasks, same run.

Run: .venv/bin/python benchmarks/collusion.py [--shares 0.2,0.33] [--accounts 30]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aggregation_accuracy import CROWD, aggregate_data, load

from verification.aggregation import aggregate, flag_unreliable


def with_colluders(data: dict, *, share: float, accounts: int, strategy: str, seed: int = 0) -> tuple:
    """The dataset's answers plus the colluding accounts' (task, worker, label arrays; n_workers; label)."""
    rng = np.random.default_rng(seed)
    truth = data["gold"]
    counts = np.bincount(truth[truth >= 0], minlength=data["n_classes"])
    target = int(np.argmin(np.where(counts > 0, counts, np.iinfo(np.int64).max)))
    per_task = np.bincount(data["task"], minlength=data["n_tasks"])
    extra = np.rint(per_task * share / (1 - share)).astype(int)
    tasks, workers = [], []
    for t in np.flatnonzero(extra):
        tasks.append(np.full(extra[t], t))
        workers.append(data["n_workers"] + rng.choice(accounts, size=min(extra[t], accounts), replace=False))
    task = np.concatenate(tasks)
    worker = np.concatenate(workers)
    task = task[: len(worker)]
    label = np.full(len(task), target)
    if strategy == "camouflage":
        # What the account sees in the task is what one of its honest volunteers saw (a random one of their
        # answers); it reports that, except for half of the times it sees something other than the label.
        order = np.argsort(data["task"], kind="stable")
        starts = np.concatenate([[0], np.cumsum(per_task)[:-1]])
        seen = data["label"][order][starts[task] + rng.integers(0, per_task[task])]
        label = np.where((seen != target) & (rng.random(len(task)) < 0.5), target, seen)
    return (
        np.concatenate([data["task"], task]),
        np.concatenate([data["worker"], worker]),
        np.concatenate([data["label"], label]),
        data["n_workers"] + accounts,
        target,
    )


def majority(task: np.ndarray, label: np.ndarray, n_tasks: int, n_classes: int) -> np.ndarray:
    votes = np.zeros((n_tasks, n_classes))
    np.add.at(votes, (task, label), 1)
    return votes.argmax(axis=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shares", default="0.2,0.33")
    parser.add_argument("--accounts", type=int, default=30)
    args = parser.parse_args()
    shares = [float(s) for s in args.shares.split(",")]
    print(
        f"Colluding accounts ({args.accounts} in the group) answering every task so that they give the share "
        "of answers shown; accuracy on the tasks whose truth is not the group's label"
    )
    print(
        f"{'set':<12}{'strategy':<12}{'share':>6}{'majority':>10}{'(honest)':>10}{'auto':>8}{'(honest)':>10}"
        f"{'auto+gold':>11}{'(honest)':>10}{'flagged':>9}"
    )
    for folder in sorted(p for p in CROWD.iterdir() if (p / "answers.csv").is_file()):
        data = load(folder)
        n_tasks, n_classes, truth = data["n_tasks"], data["n_classes"], data["gold"]
        pick = np.random.default_rng(1).random(n_tasks) < 0.1
        gold = {int(t): int(truth[t]) for t in np.flatnonzero(pick & (truth >= 0))}
        honest_mv = majority(data["task"], data["label"], n_tasks, n_classes)
        honest = aggregate_data(data)
        honest_gold = aggregate_data(data, gold=gold)
        for strategy in ("deny", "camouflage"):
            for share in shares:
                task, worker, label, n_workers, target = with_colluders(
                    data, share=share, accounts=args.accounts, strategy=strategy
                )
                attacked = (truth >= 0) & (truth != target)
                scored = attacked & ~pick
                mv = majority(task, label, n_tasks, n_classes)
                fit = aggregate(
                    task, worker, label, n_tasks=n_tasks, n_workers=n_workers, n_classes=n_classes
                )
                fit_gold = aggregate(
                    task, worker, label, n_tasks=n_tasks, n_workers=n_workers, n_classes=n_classes, gold=gold
                )
                flagged = flag_unreliable(fit)[data["n_workers"] :].mean()

                def acc(labels: np.ndarray, mask: np.ndarray, truth: np.ndarray = truth) -> float:
                    return float((labels == truth)[mask].mean())

                print(
                    f"{folder.name:<12}{strategy:<12}{share:>6.2f}{acc(mv, attacked):>10.3f}"
                    f"{acc(honest_mv, attacked):>10.3f}{acc(fit.labels, attacked):>8.3f}"
                    f"{acc(honest.labels, attacked):>10.3f}{acc(fit_gold.labels, scored):>11.3f}"
                    f"{acc(honest_gold.labels, scored):>10.3f}{flagged:>9.0%}"
                )


if __name__ == "__main__":
    main()
