"""Tasks with exact verifiers: built-in synthetic ones (no download) and user data as JSONL.

A task draws ``Example(prompt, answer)`` items and scores a completion: reward 1.0 for a correct
answer, 0.0 otherwise. The completion is the decoded text after the prompt, up to <eos>; surrounding
whitespace is ignored.

- ``copy``: "copy:abc=" → "abc" (letters, length ``n``).
- ``addition``: "12+34=" → "46" (two ``n``-digit operands).
- ``countdown``: "3,5,7:22=" → any expression of + − * and parentheses over the given numbers, each
  used at most once, whose value is the target (e.g. "3*5+7"); the stored answer is one solution.
- ``jsonl``: one ``{"prompt": ..., "answer": ...}`` object per line, scored by exact match; a malformed
  line is reported as ``file:line: what is wrong``.
"""

from __future__ import annotations

import ast
import itertools
import json
import operator
import re
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class Example:
    prompt: str
    answer: str


class Task:
    name = "task"

    def sample(self, rng: np.random.Generator, n: int) -> list[Example]:  # pragma: no cover - abstract
        raise NotImplementedError

    def score(self, completion: str, example: Example) -> float:
        return float(completion.strip() == example.answer)

    def answer_key(self, completion: str, example: Example) -> str:
        """The completion's final answer, normalised the way ``score`` reads it: two completions with the
        same key give the same answer (the clusters of semantic entropy: SEED-GRPO, the curriculum)."""
        return completion.strip()


def _positive(name: str, value, lo: int = 1, hi: int = 12) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise ValueError(f"{name}: got {value!r}; allowed: an integer in [{lo}, {hi}]")
    return value


class Copy(Task):
    name = "copy"

    def __init__(self, n: int = 3):
        self.n = _positive("n", n)

    def sample(self, rng, n):
        letters = np.asarray(list(string.ascii_lowercase[:8]))
        words = ["".join(rng.choice(letters, self.n)) for _ in range(n)]
        return [Example(f"copy:{w}=", w) for w in words]


class Addition(Task):
    name = "addition"

    def __init__(self, n: int = 2):
        self.n = _positive("n", n)

    def sample(self, rng, n):
        lo, hi = 10 ** (self.n - 1) if self.n > 1 else 0, 10**self.n
        a, b = rng.integers(lo, hi, n), rng.integers(lo, hi, n)
        return [Example(f"{x}+{y}=", str(x + y)) for x, y in zip(a.tolist(), b.tolist(), strict=True)]


_OPS = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul}


def _evaluate(node) -> tuple[int, list[int]]:
    """Value and the literals used of an expression tree of + − * over integer literals."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return node.value, [node.value]
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        (a, ua), (b, ub) = _evaluate(node.left), _evaluate(node.right)
        return _OPS[type(node.op)](a, b), ua + ub
    raise ValueError("not an expression of + - * over integers")


class Countdown(Task):
    name = "countdown"

    def __init__(self, n: int = 3, max_number: int = 9):
        self.n = _positive("n", n, 2, 5)
        self.max_number = _positive("max_number", max_number, 2, 99)

    def sample(self, rng, n):
        out = []
        for _ in range(n):
            nums = rng.integers(1, self.max_number + 1, self.n).tolist()
            ops = rng.choice(["+", "-", "*"], self.n - 1).tolist()
            expr = "".join(itertools.chain.from_iterable(zip(map(str, nums), [*ops, ""], strict=True)))
            target = _evaluate(ast.parse(expr, mode="eval").body)[0]
            order = rng.permutation(self.n).tolist()
            out.append(Example(f"{','.join(str(nums[i]) for i in order)}:{target}=", expr))
        return out

    def score(self, completion, example):
        text = completion.strip()
        if not text or len(text) > 64 or any(c not in "0123456789+-*() " for c in text):
            return 0.0
        try:
            value, used = _evaluate(ast.parse(text, mode="eval").body)
        except (SyntaxError, ValueError, RecursionError):
            return 0.0
        head, target = example.prompt.rstrip("=").split(":")
        pool = [int(x) for x in head.split(",")]
        for u in used:  # each given number at most once
            if u not in pool:
                return 0.0
            pool.remove(u)
        return float(value == int(target))

    def answer_key(self, completion, example):
        """The expression's value when it is a valid expression over the given numbers, else the text."""
        text = completion.strip()
        if text and len(text) <= 64 and all(c in "0123456789+-*() " for c in text):
            try:
                return f"={_evaluate(ast.parse(text, mode='eval').body)[0]}"
            except (SyntaxError, ValueError, RecursionError, ZeroDivisionError):
                pass
        return text


class Jsonl(Task):
    name = "jsonl"

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise ValueError(f"path: got {str(path)!r}; allowed: an existing JSONL file")
        self.examples, self.lines = load_jsonl(self.path, with_lines=True)

    def sample(self, rng, n):
        idx = rng.integers(0, len(self.examples), n)
        return [self.examples[i] for i in idx.tolist()]


def load_jsonl(path: str | Path, with_lines: bool = False):
    """``{"prompt": str, "answer": str}`` per line (blank lines skipped); errors name file and line.
    With ``with_lines``: (examples, their line numbers)."""
    path = Path(path)
    out, lines = [], []
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise ValueError(
            f"{path}:{line}: byte {raw[e.start]:#04x} is not UTF-8; allowed: a UTF-8 text file"
        ) from None
    for i, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}:{i}: not JSON ({e.msg}); allowed: one JSON object per line") from None
        if not isinstance(obj, dict) or not isinstance(obj.get("prompt"), str) or "answer" not in obj:
            raise ValueError(
                f"{path}:{i}: got {line[:80]!r}; allowed: an object with a string 'prompt' and an 'answer'"
            )
        out.append(Example(obj["prompt"], str(obj["answer"])))
        lines.append(i)
    if not out:
        raise ValueError(f"{path}: no examples; allowed: at least one line")
    return (out, lines) if with_lines else out


def check_prompts(task: Task, examples: list[Example], tok, context: int | None, max_new_tokens: int) -> int:
    """Before any work: every prompt is spelled by the tokenizer and fits the model's context with
    ``max_new_tokens`` after it. A data file's prompts are all checked and named ``FILE:LINE``; for other
    tasks, ``examples`` (the held-out split and a draw of training prompts) are. Returns the longest
    prompt's tokens."""
    inner = getattr(task, "inner", task)  # a rescoring wrapper keeps its task
    if isinstance(inner, Jsonl):
        items = [(f"{inner.path}:{n}", e) for n, e in zip(inner.lines, inner.examples, strict=True)]
    else:
        items = [(f"task {task.name}", e) for e in examples]
    if context is not None and max_new_tokens >= context:
        raise ValueError(
            f"max_new_tokens: got {max_new_tokens}; allowed: at most {context - 1} (the model's context is "
            f"{context} tokens, and a prompt needs at least one)"
        )
    longest = 0
    for where, e in items:
        try:
            _, attn = tok.batch([e.prompt])  # exactly as the rollout encodes it (chat template included)
        except ValueError as err:
            raise ValueError(f"{where}: {err}") from None
        n = int(attn.sum())
        longest = max(longest, n)
        if context is not None and n + max_new_tokens > context:
            raise ValueError(
                f"{where}: a prompt of {n} tokens + max_new_tokens {max_new_tokens} exceeds the model's context "
                f"of {context} tokens; allowed: prompts of at most {context - max_new_tokens} tokens, or a smaller "
                "max_new_tokens"
            )
    return longest


TASKS = {"copy": Copy, "addition": Addition, "countdown": Countdown, "jsonl": Jsonl}


def get_task(name: str, **kwargs) -> Task:
    if name not in TASKS:
        raise ValueError(f"task: got {name!r}; allowed: {', '.join(TASKS)}")
    return TASKS[name](**kwargs)


class Split:
    """A task's held-out evaluation prompts and its training stream, which never yields them.

    ``eval`` is fixed by the seed. Training examples for (step, rank) come from their own generator,
    so a resumed run draws exactly the prompts the uninterrupted run would have drawn.
    """

    def __init__(self, task: Task, eval_prompts: int, seed: int):
        self.task, self.seed = task, seed
        base = getattr(task, "inner", task)
        if isinstance(base, Jsonl):
            n = len(base.examples)
            if eval_prompts >= n:
                raise ValueError(
                    f"eval_prompts: got {eval_prompts}; allowed: fewer than the {n} examples of {base.path}"
                )
            order = np.random.default_rng([seed, 1]).permutation(n)
            self.eval = [base.examples[i] for i in order[:eval_prompts]]
            self._train = [base.examples[i] for i in order[eval_prompts:]]
        else:
            rng = np.random.default_rng([seed, 1])
            seen: dict[str, Example] = {}
            for _ in range(100):
                for e in task.sample(rng, eval_prompts):
                    if len(seen) < eval_prompts:
                        seen.setdefault(e.prompt, e)
                if len(seen) == eval_prompts:
                    break
            else:
                raise ValueError(
                    f"eval_prompts: got {eval_prompts}; allowed: fewer than the distinct prompts of task {task.name!r} ({len(seen)} found)"
                )
            self.eval = list(seen.values())
            self._train = None
        self._held = {e.prompt for e in self.eval}

    def train(self, step: int, rank: int, n: int, stream: int = 2) -> list[Example]:
        """n training examples for this step and process (none of them a held-out prompt); ``stream``
        separates independent uses (2: RL rollouts, 3: supervised warm start)."""
        rng = np.random.default_rng([self.seed, stream, step, rank])
        if self._train is not None:
            return [self._train[i] for i in rng.integers(0, len(self._train), n).tolist()]
        out: list[Example] = []
        for _ in range(1000):
            out += [e for e in self.task.sample(rng, n) if e.prompt not in self._held]
            if len(out) >= n:
                return out[:n]
        raise ValueError(  # pragma: no cover - only for a task with (nearly) all prompts held out
            f"eval_prompts: {len(self.eval)} held-out prompts leave too few for training; allowed: fewer"
        )


class ReasoningGym(Task):
    """A dataset of the optional ``reasoning-gym`` package (``task = "rg:<name>"``, e.g.
    rg:basic_arithmetic, rg:chain_sum, rg:countdown, rg:gsm_symbolic), scored by the dataset's own
    ``score_answer`` (rewards in [0, 1]). Entries are generated on demand from (seed, index)."""

    SIZE = 100_000

    def __init__(self, dataset: str, seed: int = 0, settings: tuple[str, ...] = ()):
        try:
            import reasoning_gym
            from reasoning_gym.factory import DATASETS
        except ImportError:
            raise ValueError(
                f"task: got 'rg:{dataset}' but reasoning-gym is not installed; allowed: pip install reasoning-gym"
            ) from None
        if dataset not in DATASETS:
            raise ValueError(
                f"task: got 'rg:{dataset}'; allowed: rg:<name> with name in {', '.join(sorted(DATASETS))}"
            )
        self.name = f"rg:{dataset}"
        self.settings = rg_settings(dataset, settings)
        self.ds = reasoning_gym.create_dataset(dataset, size=self.SIZE, seed=seed, **self.settings)
        self._entry: dict[str, dict] = {}

    def sample(self, rng, n):
        out = []
        for i in rng.integers(0, self.SIZE, n).tolist():
            entry = self.ds[i]
            self._entry[entry["question"]] = entry
            out.append(Example(entry["question"], str(entry["answer"])))
        return out

    def score(self, completion, example):
        entry = self._entry.get(example.prompt)
        if entry is None:  # pragma: no cover - every scored example was sampled here
            return super().score(completion, example)
        return float(self.ds.score_answer(answer=completion.strip(), entry=entry) or 0.0)


def _parse_setting(text: str, kind):
    """``text`` as a value of the dataclass field type ``kind`` (int, float, bool, str, their Optional)."""
    import typing

    args = [a for a in typing.get_args(kind) if a is not type(None)]
    if args:  # Optional[X] (or a union): the first type that parses
        if text.lower() == "none":
            return None
        for a in args:
            try:
                return _parse_setting(text, a)
            except ValueError:
                continue
        raise ValueError(f"not a {kind}")
    if kind is bool or kind == "bool":
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ValueError("not true or false")
    if kind in (int, "int"):
        return int(text)
    if kind in (float, "float"):
        return float(text)
    return text


def rg_settings(dataset: str, items: tuple[str, ...]) -> dict:
    """``KEY=VALUE`` settings of a reasoning-gym dataset's config (e.g. chain_sum ``max_terms=2``), typed by
    the config's fields and checked by the config's own ``validate()``; one-line errors name the item."""
    if not items:
        return {}
    import dataclasses

    from reasoning_gym.factory import DATASETS

    cfg_cls = DATASETS[dataset][1]
    fields = {f.name: f for f in dataclasses.fields(cfg_cls) if f.name not in ("seed", "size")}
    allowed = ", ".join(f"{n}={f.default!r}" for n, f in fields.items())
    out = {}
    for item in items:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or key not in fields:
            raise ValueError(
                f"task_kw: got {item!r}; allowed: KEY=VALUE with KEY a field of rg:{dataset} ({allowed})"
            )
        try:
            out[key] = _parse_setting(text.strip(), fields[key].type)
        except ValueError as e:
            raise ValueError(
                f"task_kw: got {item!r} ({e}); allowed: {key}={fields[key].default!r}-like values"
            ) from None
    try:
        cfg_cls(**out).validate()
    except (AssertionError, ValueError, TypeError) as e:
        raise ValueError(
            f"task_kw: got {' '.join(items)} (rg:{dataset} says: {e}); allowed: settings its config accepts"
        ) from None
    return out


_INT = re.compile(r"-?\d+")


class Rescored(Task):
    """Another task's examples with a different scorer (subclasses define ``score`` and ``answer_key``)."""

    def __init__(self, inner: Task):
        self.inner, self.name = inner, inner.name

    def sample(self, rng, n):
        return self.inner.sample(rng, n)


class LastNumber(Rescored):
    """A task whose completions are scored on their last integer ("17 + 38 = 55" answers 55)."""

    def score(self, completion, example):
        found = _INT.findall(completion.replace(",", ""))
        return float(bool(found) and found[-1] == example.answer.strip())

    def answer_key(self, completion, example):
        found = _INT.findall(completion.replace(",", ""))
        return found[-1] if found else ""


class MathVerify(Rescored):
    """A task whose completions are scored by ``math_verify`` (optional package): the parsed completion
    is mathematically equal to the parsed answer ("\\frac{1}{2}" = "0.5")."""

    def score(self, completion, example):
        from math_verify import parse, verify

        return float(verify(parse(example.answer), parse(completion)))

    def answer_key(self, completion, example):
        from math_verify import parse

        parsed = parse(completion)
        return str(parsed[0]) if parsed else completion.strip()


SCORERS = {"exact": None, "last_number": LastNumber, "math_verify": MathVerify}


def get_task_for(cfg) -> Task:
    """The task a TrainConfig names (``task``, ``task_n``, ``data``, ``scoring``)."""
    if cfg.task.startswith("rg:"):
        task = ReasoningGym(cfg.task[3:], seed=cfg.seed, settings=tuple(cfg.task_kw))
    elif cfg.task == "jsonl":
        task = Jsonl(cfg.data)
    else:
        task = get_task(cfg.task, n=cfg.task_n)
    wrap = SCORERS[cfg.scoring]
    return task if wrap is None else wrap(task)
