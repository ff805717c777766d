"""``python -m entrolab.bench trainer``: one GRPO step of entrolab's trainer against TRL's ``GRPOTrainer``.

The same work on both sides:
- the same tiny Llama (same random init, fp32, CPU) and the same character vocabulary (TRL gets it as
  a ``PreTrainedTokenizerFast``);
- the same batch: 8 copy prompts × 8 completions of exactly T tokens, T = 16 and 32. <eos> is suppressed
  in generation on both sides, so every completion is T tokens long;
- sampling at τ = 1 with no top-k or top-p, no vLLM;
- one update per batch (no old-log-prob pass), no reference model, PPO clip ε = 0.2, token-mean
  ("dapo") loss, AdamW at lr 1e-3, gradient clipping at 1.0.

With SmolLM2-135M-Instruct installed (see README), a third case runs the real model the same way (its
own tokenizer, lr 1e-6, 4 steps after 1 of warm-up: about 25 s a step on 2 CPUs).

entrolab also logs its full entropy telemetry each step, including the realised ΔH, which costs one
more no-grad forward pass. Each framework runs in its own child process, so the peak RSS is its own.
Step times are the median over ``steps`` steps after ``warmup`` steps, pooled over alternating rounds
(two for the tiny cases: every variant in ``VARIANTS`` in turn, then again; one for SmolLM2).
``VARIANTS`` says what each entrolab variant changes and why: sampling through ``model.generate`` (the
same tokens; isolates what the trainer's own sampler saves), gradient checkpointing (TRL's ``GRPOConfig``
turns it on by default and the bench leaves TRL at its defaults, so memory is compared like for like),
``share_prompts``, and no realised-ΔH pass (the same passes as TRL, whose telemetry has none), alone and
combined. tokens/s counts completion tokens. Target (issue 7): entrolab ≥ 1.5× TRL's tokens/s at equal or
lower peak memory (1.2× on SmolLM2), by any entrolab setting in ``SETTINGS``. TRL is
optional: ``pip install -e '.[bench]'``.
"""

from __future__ import annotations

import json
import subprocess
import sys

from entrolab.bench import harness
from entrolab.common.runio import peak_rss_mb

PROMPTS, G, LR, LR_SMOLLM2 = 8, 8, 1e-3, 1e-6


def _tiny(seed: int = 0):
    from llm.models import tiny_model
    from llm.tokenizer import CharTokenizer

    tok = CharTokenizer()
    model = tiny_model(tok.vocab_size, seed=seed)
    model.generation_config.suppress_tokens = [tok.eos_token_id]  # exactly T tokens per completion
    return model, tok


def child_ours(
    T: int,
    steps: int,
    warmup: int,
    model: str = "tiny",
    sampler: str = "own",
    gradient_checkpointing: bool = False,
    share_prompts: bool = False,
    measure_dH: bool = True,
    evaluate: bool = False,
) -> dict:
    import dataclasses
    import tempfile

    from llm import memory
    from llm.config import PRESETS
    from llm.train import Trainer

    with tempfile.TemporaryDirectory() as d:
        cfg = dataclasses.replace(
            PRESETS["tiny-copy"], out_dir=d, sft_steps=0, prompts_per_step=PROMPTS, group_size=G,
            max_new_tokens=T, lr=LR if model == "tiny" else LR_SMOLLM2, eval_every=0, checkpoint_every=0,
            tracker="none", measure_dH=measure_dH, controllers=("grpo", "ppo_clip"), model=model, sampler=sampler,
            gradient_checkpointing=gradient_checkpointing, share_prompts=share_prompts,
        )  # fmt: skip
        tr = Trainer(cfg, progress=False)
        tr.acc.unwrap_model(tr.model).generation_config.suppress_tokens = [tr.tok.eos_token_id]
        longest = max(len(tr.tok.batch([e.prompt])[1][0]) for e in tr.split.eval)
        estimate = memory.estimate(cfg, memory.arch_of(tr.acc.unwrap_model(tr.model)), longest, False)
        times, gen, tokens, keys = [], [], [], 0
        for i in range(warmup + steps):
            if evaluate:  # the held-out evaluation, untimed: its memory counts in the peak
                tr.evaluate()
            row = tr.rollout_step()
            tr.step += 1
            if i >= warmup:
                times.append(row["perf/step_s"])
                gen.append(row["perf/generate_s"])
                tokens.append(row["rollout/response_len"] * PROMPTS * G)
                keys = len(row)
    return {
        "step_s": times, "generate_s": gen, "tokens": tokens, "peak_rss_mb": peak_rss_mb(),
        "metrics_logged": keys, "estimate_mb": sum(estimate.values()) / 2**20,
    }  # fmt: skip


def child_trl(T: int, steps: int, warmup: int, model: str = "tiny") -> dict:
    import tempfile
    import time

    import numpy as np
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from llm.tasks import get_task

    if model == "tiny":
        net, tok = _tiny()
        hf_tok, eos, lr = tok.to_hf(), tok.eos_token_id, LR
    else:  # SmolLM2-135M from its GGUF, dequantised, and its own tokenizer
        from llm.models import load_smollm2
        from llm.tokenizer import HFTokenizer

        net, raw = load_smollm2()
        hf_tok = HFTokenizer(raw).tok  # pad token set as the trainer sets it
        hf_tok.padding_side = "left"
        eos, lr = hf_tok.eos_token_id, LR_SMOLLM2
    task = get_task("copy", n=3)
    examples = task.sample(np.random.default_rng(0), PROMPTS * (warmup + steps + 2))
    answers = {e.prompt: e for e in examples}
    ds = Dataset.from_dict({"prompt": [e.prompt for e in examples]})

    def reward(prompts, completions, **kw):
        return [task.score(c, answers[p]) for p, c in zip(prompts, completions, strict=True)]

    class Clock(TrainerCallback):
        def __init__(self):
            self.t, self.times = None, []

        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            self.times.append(time.perf_counter() - self.t)

    clock = Clock()
    with tempfile.TemporaryDirectory() as d:
        args = GRPOConfig(
            output_dir=d, use_cpu=True, bf16=False, per_device_train_batch_size=PROMPTS * G,
            num_generations=G, gradient_accumulation_steps=1, steps_per_generation=1, num_iterations=1,
            max_completion_length=T, temperature=1.0, top_k=0, top_p=1.0, beta=0.0, loss_type="dapo",
            epsilon=0.2, learning_rate=lr, lr_scheduler_type="constant", max_grad_norm=1.0,
            optim="adamw_torch", max_steps=warmup + steps, logging_steps=1, report_to=[],
            save_strategy="no", shuffle_dataset=False, disable_dropout=True,
            generation_kwargs={"suppress_tokens": [eos]}, seed=0,
        )  # fmt: skip
        trainer = GRPOTrainer(
            model=net, reward_funcs=reward, args=args, train_dataset=ds, processing_class=hf_tok,
            callbacks=[clock],
        )  # fmt: skip
        trainer.train()
        logs = [h for h in trainer.state.log_history if "loss" in h]
    return {
        "step_s": clock.times[warmup:],
        "tokens": [PROMPTS * G * T] * steps,
        "peak_rss_mb": peak_rss_mb(),
        "metrics_logged": len(logs[-1]) if logs else 0,
        "mean_completion_len": float(np.mean([h.get("completions/mean_length", T) for h in logs])),
    }


VARIANTS = {
    "ours": ("ours", ""),
    "ours_generate": ("ours", ", sampler='generate'"),
    "ours_gc": ("ours", ", gradient_checkpointing=True"),
    "ours_share": ("ours", ", share_prompts=True"),
    "ours_nodh": ("ours", ", measure_dH=False"),
    "ours_gc_nodh": ("ours", ", gradient_checkpointing=True, measure_dH=False"),
    "ours_share_nodh": ("ours", ", share_prompts=True, measure_dH=False"),
    "ours_gc_share_nodh": ("ours", ", gradient_checkpointing=True, share_prompts=True, measure_dH=False"),
    "ours_eval": ("ours", ", evaluate=True"),
    "trl": ("trl", ""),
}
"""what is timed: entrolab as it runs by default; entrolab sampling through ``generate`` (the sampler's
share of the difference); entrolab with gradient checkpointing, as TRL runs by default; entrolab with
``share_prompts`` (each group's prompt computed once per pass; equal to float rounding); entrolab without
the realised-ΔH pass (``measure_dH=False``: TRL makes no such pass, so this is the same work as TRL's), alone
and with gradient checkpointing; the same with ``share_prompts`` (with gradient checkpointing only the
sampler's prefill shares); entrolab with the held-out evaluation before every step (untimed: its peak
memory, beside the trainer's up-front estimate ``estimate_mb``, ``llm.memory``); TRL"""

SETTINGS = {
    "": "default",
    "_gc": "with gradient checkpointing (TRL's default)",
    "_share": "with share_prompts",
    "_nodh": "without the realised-ΔH pass (TRL has none)",
    "_gc_nodh": "with gradient checkpointing and without the realised-ΔH pass",
    "_share_nodh": "with share_prompts and without the realised-ΔH pass",
    "_gc_share_nodh": "with gradient checkpointing, share_prompts (the sampler's prefill) and without the realised-ΔH pass",
}
"""the entrolab settings compared with TRL: suffix → words; the setting's variant is ``"ours" + suffix`` and
its ratios are ``speedup<suffix>`` and ``memory_ratio<suffix>``"""


MODES = (
    ("on-policy, k = 1", {}),
    ("on-policy, k = 2 micro-batch pieces", {"micro_batch_size": 8}),
    ("off-policy, 2 epochs × 2 minibatches", {"epochs": 2, "minibatches": 2}),
    ("off-policy, 2 epochs × 2 minibatches, k = 2", {"epochs": 2, "minibatches": 2, "micro_batch_size": 4}),
    ("top_p = 0.9, on-policy", {"top_p": 0.9}),
    ("reference model (ref_kl)", {"controllers": ("grpo", "ppo_clip", "ref_kl")}),
    ("measure_dH off", {"measure_dH": False}),
    ("dH_every = 2", {"dH_every": 2}),
)
"""trainer settings whose passes over a rollout ``passes_per_mode`` counts"""


def passes_per_mode(steps: int = 2) -> list[dict]:
    """Per rollout, counted on the tiny model (4 prompts × 4 completions of 6 tokens, <eos> suppressed as in
    the timed cases): the sampler's forwards (one prefill, then one per new position, through the model's
    forward or ``KVDecoder.step``) and the passes over the rollout's sequences — no-grad passes
    of the policy, passes with gradient (forward + backward), and passes of the reference model — each as
    sequences processed / rollout size, so k micro-batch pieces make one pass."""
    return [{"mode": label, **_count_passes(kw, steps)} for label, kw in MODES]


def _count_passes(kw: dict, steps: int) -> dict[str, float]:
    import collections
    import dataclasses
    import tempfile

    import torch

    from llm import train as Tm
    from llm import update as Um
    from llm.config import PRESETS
    from llm.kvdecode import KVDecoder

    counts: collections.Counter = collections.Counter()
    sampling = [False]
    real_sample, real_stats = Tm.sample, Um.token_stats
    with tempfile.TemporaryDirectory() as d:
        cfg = dataclasses.replace(
            PRESETS["tiny-copy"], out_dir=d, sft_steps=0, steps=steps, prompts_per_step=4, group_size=4,
            max_new_tokens=6, eval_every=0, checkpoint_every=0, tracker="none", **kw,
        )  # fmt: skip
        tr = Tm.Trainer(cfg, progress=False)
        tr.acc.unwrap_model(tr.model).generation_config.suppress_tokens = [tr.tok.eos_token_id]
        size = cfg.prompts_per_step * cfg.group_size

        def sample(*a, **k):
            sampling[0] = True
            try:
                return real_sample(*a, **k)
            finally:
                sampling[0] = False

        def token_stats(model, roll, *a, **k):
            grad = "grad_passes" if torch.is_grad_enabled() else "no_grad_passes"
            counts["ref_passes" if model is tr.ref else grad] += roll.size / size
            return real_stats(model, roll, *a, **k)

        def forward(*_):
            if sampling[0]:
                counts["sampler_forwards"] += 1

        real_step = KVDecoder.step

        def step(self, *a, **k):
            forward()
            return real_step(self, *a, **k)

        hook = tr.acc.unwrap_model(tr.model).register_forward_pre_hook(forward)
        Tm.sample, Um.token_stats, KVDecoder.step = sample, token_stats, step
        try:
            for _ in range(steps):
                tr.rollout_step()
                tr.step += 1
        finally:
            Tm.sample, Um.token_stats, KVDecoder.step = real_sample, real_stats, real_step
            hook.remove()
    return {k: counts[k] / steps for k in ("sampler_forwards", "no_grad_passes", "grad_passes", "ref_passes")}


def _child(framework: str, T: int, steps: int, warmup: int, model: str = "tiny") -> dict:
    fn, extra = VARIANTS[framework]
    code = (
        f"import json; from entrolab.bench.trainer import child_{fn} as f; "
        f"print(json.dumps(f({T}, {steps}, {warmup}, {model!r}{extra})))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=3600)
    if out.returncode != 0:
        raise RuntimeError(f"trainer bench child ({framework}, T={T}) failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def unavailable() -> str | None:
    """Why this benchmark cannot run here (None when it can): it compares with TRL's GRPOTrainer."""
    import importlib.util

    if importlib.util.find_spec("trl") is None:
        return "it compares with TRL, which is not installed; enable it with pip install -e '.[bench]' (TRL 1.16.0)"
    return None


def run(quick: bool = False, device: str = "cpu", watch: harness.LoadWatch | None = None) -> dict:
    why = unavailable()
    if why is not None:
        raise RuntimeError(f"bench trainer: {why}")
    from llm.models import smollm2_dir

    steps, warmup = (5, 2) if quick else (15, 3)
    cases = [("tiny", 16, steps, warmup), ("tiny", 32, steps, warmup)]
    if not quick and smollm2_dir() is not None:  # ~25 s a step on 2 CPUs: fewer steps
        cases.append(("smollm2", 16, 4, 1))
    rows = []
    for model, T, n_steps, n_warm in cases:
        # alternating rounds (each framework in its own child process); the median over every round's steps
        rounds = 1 if model == "smollm2" else 2
        got: dict[str, dict] = {}
        for _ in range(rounds):
            for fw in VARIANTS:
                r = _child(fw, T, n_steps, n_warm, model)
                acc = got.setdefault(fw, {"step_s": [], "generate_s": [], "tokens": [], "peak_rss_mb": 0.0})
                for k in ("step_s", "generate_s", "tokens"):
                    acc[k] += r.get(k, [])
                acc["peak_rss_mb"] = max(acc["peak_rss_mb"], r["peak_rss_mb"])
                acc["metrics_logged"] = r["metrics_logged"]
                if watch is not None:
                    watch.sample()
        res = {}
        for fw, r in got.items():
            med = harness.median(r["step_s"])
            res[fw] = {
                "step_s": med, "tokens_per_s": harness.median(r["tokens"]) / med, "peak_rss_mb": r["peak_rss_mb"],
                "metrics_logged": r["metrics_logged"],
            }  # fmt: skip
            if r["generate_s"]:
                res[fw]["generate_s"] = harness.median(r["generate_s"])
        rows.append(
            {
                "model": model, "T": T, "steps": n_steps, "rounds": rounds,
                **{f"{fw}_{k}": v for fw, d in res.items() for k, v in d.items()},
                **{f"speedup{sfx}": res["ours" + sfx]["tokens_per_s"] / res["trl"]["tokens_per_s"] for sfx in SETTINGS},
                **{f"memory_ratio{sfx}": res["ours" + sfx]["peak_rss_mb"] / res["trl"]["peak_rss_mb"] for sfx in SETTINGS},
                "sampler_speedup": res["ours_generate"]["generate_s"] / res["ours"]["generate_s"],
            }
        )  # fmt: skip
    import trl

    return {
        "device": device, "steps": steps, "warmup": warmup, "trl": trl.__version__, "rows": rows,
        "passes": passes_per_mode(),
    }  # fmt: skip


def _best_speedup(row: dict) -> float:
    """The highest speedup over TRL among the entrolab settings at ≤ TRL's peak memory (0 if none)."""
    return max(
        (row.get(f"speedup{s}", 0.0) for s in SETTINGS if row.get(f"memory_ratio{s}", 2.0) <= 1.0),
        default=0.0,
    )


def summary(res: dict) -> list[str]:
    out = []
    for r in res["rows"]:
        out.append(
            f"{r.get('model', 'tiny')}, T = {r['T']}: entrolab {r['ours_tokens_per_s']:.0f} tokens/s ({r['ours_step_s'] * 1e3:.0f} ms/step, "
            f"{r['ours_metrics_logged']} metrics) vs TRL {res['trl']} {r['trl_tokens_per_s']:.0f} tokens/s "
            f"({r['trl_step_s'] * 1e3:.0f} ms/step, {r['trl_metrics_logged']} metrics): {r['speedup']:.2f}×; "
            f"peak RSS {r['ours_peak_rss_mb']:.0f} vs {r['trl_peak_rss_mb']:.0f} MB"
            + "".join(
                f"; {words} {r['speedup' + sfx]:.2f}× at {r['ours' + sfx + '_peak_rss_mb']:.0f} MB"
                for sfx, words in SETTINGS.items()
                if sfx and "speedup" + sfx in r
            )
            + (
                f"; sampling {r['ours_generate_s'] * 1e3:.0f} ms with our sampler vs "
                f"{r['ours_generate_generate_s'] * 1e3:.0f} ms through generate ({r['sampler_speedup']:.2f}×)"
                if "sampler_speedup" in r
                else ""
            )
        )
    ok = all(_best_speedup(r) >= (1.2 if r.get("model") == "smollm2" else 1.5) for r in res["rows"])
    verdict = "met" if ok else "NOT met"
    if not any(r.get("model") == "smollm2" for r in res["rows"]):
        verdict += " on the tiny model; SmolLM2 was not measured in this run, so the target is not judged"
    out.append(
        "target ≥ 1.5× tokens/s on the tiny model and ≥ 1.2× on SmolLM2, at ≤ TRL's peak memory (any entrolab "
        f"setting): {verdict}"
    )
    return out


def table(res: dict) -> list[str]:
    lines = []
    if "passes" in res:
        lines += [
            "Passes per rollout by mode (counted on the tiny model, `passes_per_mode`; a pass is one sweep over",
            "the rollout's sequences, however many micro-batch pieces it takes):",
            "",
            "| mode | sampler forwards (prefill + one per new position) | no-grad passes | forward + backward passes | reference-model passes |",
            "| --- | --- | --- | --- | --- |",
        ]
        lines += [
            f"| {r['mode']} | {r['sampler_forwards']:g} | {r['no_grad_passes']:g} | {r['grad_passes']:g} | "
            f"{r['ref_passes']:g} |"
            for r in res["passes"]
        ]
        lines.append("")
    lines += [
        "| model | T | entrolab ms/step | TRL ms/step | entrolab tokens/s | TRL tokens/s | speedup | peak RSS entrolab / TRL (MB) | "
        + " | ".join(f"{words}: speedup, RSS (MB)" for sfx, words in SETTINGS.items() if sfx)
        + " | sampling ms: own / generate |",
        "| --- " * (8 + len(SETTINGS)) + "|",
    ]
    for r in res["rows"]:
        lines.append(
            f"| {r.get('model', 'tiny')} | {r['T']} | {r['ours_step_s'] * 1e3:.0f} | {r['trl_step_s'] * 1e3:.0f} | {r['ours_tokens_per_s']:.0f} | "
            f"{r['trl_tokens_per_s']:.0f} | {r['speedup']:.2f}× | {r['ours_peak_rss_mb']:.0f} / {r['trl_peak_rss_mb']:.0f} | "
            + "".join(
                f"{r['speedup' + sfx]:.2f}×, {r['ours' + sfx + '_peak_rss_mb']:.0f} | "
                if "speedup" + sfx in r
                else "— | "
                for sfx in SETTINGS
                if sfx
            )
            + (
                f"{r['ours_generate_s'] * 1e3:.0f} / {r['ours_generate_generate_s'] * 1e3:.0f} |"
                if "sampler_speedup" in r
                else "— |"
            )
        )
    return lines
