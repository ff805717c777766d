"""One way to write a pipeline, read by every host: ``NAME [KEY=VALUE ...] NAME [KEY=VALUE ...] ...``.

    grpo ppo_clip eps_hi=0.28 clip_cov frac=2e-4

A bare word is a controller name (``controllers.names()``); each ``KEY=VALUE`` after it is one of that
controller's hyperparameters. ``--hp NAME.KEY=VALUE`` entries (``hp_items``) set the same hyperparameters
from outside the list and win over inline ones. Values are Python literals (``0.28``, ``True``, ``'k3'``,
``(0.1, 0.5)``, ``{'coef': 0.01}``) or, when they do not parse as one, the text itself (``estimator=k3``).

The simulator's ``--controllers``/``--hp``, the trainer's, verl's ``ENTROLAB_PIPELINE`` and the TRL
adapter's ``pipeline="..."`` all go through ``parse`` and ``build``, so a spec means the same in every host.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from controllers.base import Pipeline, get, names
from entrolab.common.cli import value  # a hyperparameter's value: the Python literal it spells, or its text

Entry = tuple[str, dict]
"""one controller of a spec: its name and its hyperparameters"""


def tokens(spec: str | Iterable[str]) -> list[str]:
    """The words of a spec: a string is split on white space; a sequence is taken as its words (each may
    itself hold several, as one shell argument ``"grpo ppo_clip"`` does)."""
    words = [spec] if isinstance(spec, str) else list(spec)
    return [w for item in words for w in str(item).split()]


def parse(spec: str | Iterable[str], option: str = "controllers") -> list[Entry]:
    """[(name, {key: value})] in pipeline order; a one-line ValueError naming ``option`` for an unknown name
    or a KEY=VALUE before any name."""
    out: list[Entry] = []
    known = names()
    for word in tokens(spec):
        key, sep, text = word.partition("=")
        if sep:
            if not out:
                raise ValueError(
                    f"{option}: got {word!r} before any controller name; allowed: NAME [KEY=VALUE ...] ..."
                )
            if not key:
                raise ValueError(f"{option}: got {word!r}; allowed: KEY=VALUE after a controller name")
            out[-1][1][key] = value(text)
        elif word not in known:
            raise ValueError(f"{option}: unknown controller {word!r}; allowed: {', '.join(known)}")
        else:
            out.append((word, {}))
    return out


def hp_items(
    items: Iterable[str], chosen: Sequence[str] | None = None, option: str = "hp"
) -> dict[str, dict]:
    """``NAME.KEY=VALUE`` entries as {name: {key: value}}; with ``chosen`` (the pipeline's names) a NAME
    outside it is refused, naming what is allowed."""
    out: dict[str, dict] = {}
    for item in items:
        head, sep, text = str(item).partition("=")
        name, dot, key = head.strip().partition(".")
        if not sep or not dot or not name or not key.strip():
            raise ValueError(f"{option}: got {item!r}; allowed: NAME.KEY=VALUE, e.g. ppo_clip.eps_hi=0.28")
        if chosen is not None and name not in chosen:
            raise ValueError(
                f"{option}: got {item!r}; allowed: hyperparameters of the chosen controllers "
                f"({', '.join(chosen) or 'none'})"
            )
        out.setdefault(name, {})[key.strip()] = value(text)
    return out


def merged(entries: Sequence[Entry], hp: Mapping[str, Mapping] | None = None) -> list[Entry]:
    """``entries`` with ``hp`` ({name: {key: value}}, e.g. from ``hp_items``) laid over each name's own."""
    hp = hp or {}
    return [(name, {**kw, **hp.get(name, {})}) for name, kw in entries]


def build(spec: str | Iterable[str] | Sequence[Entry], hp: Mapping[str, Mapping] | None = None) -> Pipeline:
    """The pipeline of a spec (text, words, or parsed entries), with ``hp`` laid over it."""
    entries = spec if _is_entries(spec) else parse(spec)  # type: ignore[arg-type]
    return Pipeline([get(name, **kw) for name, kw in merged(entries, hp)])  # type: ignore[arg-type]


def text(entries: Sequence[Entry]) -> str:
    """The spec that ``parse`` reads back as ``entries`` (values by ``repr``, without spaces); a value that
    cannot be written without white space is a ValueError."""
    words = []
    for name, kw in entries:
        words.append(name)
        for k, v in kw.items():
            bare = isinstance(v, str) and v.isidentifier() and value(v) == v  # estimator=k3, not 'k3'
            r = v if bare else repr(v).replace(", ", ",").replace(": ", ":")
            if any(c.isspace() for c in r) or value(r) != v:
                raise ValueError(f"{name}.{k}: got {v!r}; allowed: a value a spec can write without spaces")
            words.append(f"{k}={r}")
    return " ".join(words)


def _is_entries(spec) -> bool:
    return (
        not isinstance(spec, str)
        and isinstance(spec, Sequence)
        and all(isinstance(e, tuple) and len(e) == 2 and isinstance(e[1], Mapping) for e in spec)
        and len(spec) > 0
    )
