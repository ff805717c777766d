"""SimConfig: a simulator run, validated before any work (every field, the environment's arguments, the policy
class, and the controller pipeline against what the simulator provides: ``SimConfig.host``); and
``prompt_stages``, the prompts each curriculum stage trains."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch

import controllers as C
from entrolab.common.runio import is_band
from sim import models, policies
from sim.envs import BUILDERS, MdpEnvSpec, TreeEnvSpec

UPDATES = ("exact_pg", "exact_npg", "grpo", "ppo")
OPTIMIZERS = ("sgd", "adam")
DEFAULT_PASS_K = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


@dataclass(frozen=True)
class SimConfig:
    """A simulator run. Every field is validated before any work starts."""

    env: str = "bandit"
    """environment: "bandit", "token_tree" (gymnasium ids entrolab/Bandit-v0, entrolab/TokenTree-v0) or a
    gymnasium toy-text id: FrozenLake-v1, CliffWalking-v1, Taxi-v3"""
    env_kwargs: dict = field(default_factory=dict)
    """keyword arguments of sim.envs.make_<env> (e.g. n_arms, correct_frac, seed) or sim.envs.make_toytext"""
    policy: str = "tabular"
    """how the logits come from parameters (sim.policies): tabular, loglinear, lowrank, mlp, transformer
    (mlp and transformer: token trees; every class starts at the environment's prior)"""
    policy_kwargs: dict = field(default_factory=dict)
    """keyword arguments of the policy class (e.g. d, features, rank, hidden, heads, layers, scale, seed)"""
    update: str = "grpo"
    """update rule: exact_pg, exact_npg (analytic), grpo (sampled, on-policy), ppo (sampled, off-policy epochs)"""
    controllers: tuple = ("grpo",)
    """controller names, in pipeline order (sampled updates only); ``controllers.spec`` reads them, so an
    entry may carry its hyperparameters inline (``ppo_clip eps_hi=0.28``)"""
    hyperparameters: dict = field(default_factory=dict)
    """{controller name: {hyperparameter: value}}"""
    runs: int = 64
    """independent runs R (seeds), batched"""
    steps: int = 200
    """rollouts (optimizer steps for exact/grpo; ppo takes epochs·minibatches per rollout)"""
    lr: float = 0.1
    """step size η on the logits, > 0"""
    group_size: int = 8
    """G responses per prompt per rollout (sampled updates)"""
    guide: int = 0
    """of the G responses, how many are drawn from the optimal (guide) policy instead of the current one:
    LUFFY's off-policy demonstrations (bandit and token_tree only; < group_size)"""
    curriculum: str = "none"
    """prompt order: "none" (every prompt every step) or "semantic_entropy" (SENT: prompts sorted by the base
    policy's exact answer entropy, low to high, split into curriculum_stages equal parts trained one after
    another; bandit and token_tree only)"""
    curriculum_stages: int = 2
    """stages of the semantic-entropy curriculum (SENT uses two)"""
    critic_lr: float = 0.1
    """vapo: step size of the tabular critic's regression on the episode returns, in (0, 1]"""
    offline_band: tuple = ()
    """() or (lo, hi): train only the prompts whose base-policy success lies in [lo, hi] (the offline
    accuracy-band filter: a pre-pass over the data with the base policy, exact here)"""
    epochs: int = 1
    """ppo: passes over each rollout"""
    minibatches: int = 1
    """ppo: mini-batches per epoch (split by prompt; groups stay whole)"""
    optimizer: str = "sgd"
    """sgd (plain gradient step on logits) or adam"""
    calibrate_lr: bool = False
    """parametric policies: divide lr by the kernel gain ρ = ‖Jᵀg‖²/‖g‖² at the initial policy (g the exact
    policy gradient in logit space, J = ∂z/∂θ; theory.kernel_gain), so that the first step raises the
    objective as fast, to first order, as the tabular policy's step of size lr; classes then learn at
    comparable speeds. sgd with exact_pg, grpo or ppo only; ρ = 1 for tabular (no change)"""
    agg: str = "token-mean"
    """loss aggregation mode of controllers.agg_loss"""
    seed: int = 0
    """seed of the sampling generator (runs differ through their own draws)"""
    device: str = "cpu"
    """cpu or cuda"""
    pass_k: tuple = DEFAULT_PASS_K
    """k values of the exact pass@k"""
    log_every: int = 1
    """write metrics every this many steps (and at the last step)"""
    checkpoint_every: int = 50
    """write an atomic checkpoint every this many steps (0: never)"""
    compile: bool = False
    """torch.compile the bandit exact-update kernel used on steps that are not logged (one fused pass;
    the first call compiles for 10-20 s)"""

    def __post_init__(self):
        def bad(name, value, allowed):
            raise ValueError(f"{name}: got {value!r}; allowed: {allowed}")

        if self.env not in BUILDERS:
            bad("env", self.env, ", ".join(BUILDERS))
        if self.update not in UPDATES:
            bad("update", self.update, ", ".join(UPDATES))
        for name in ("runs", "steps", "group_size", "epochs", "minibatches", "log_every"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                bad(name, v, "an integer >= 1")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            bad("seed", self.seed, "an integer >= 0 and < 2**63")
        if (
            isinstance(self.checkpoint_every, bool)
            or not isinstance(self.checkpoint_every, int)
            or self.checkpoint_every < 0
        ):
            bad("checkpoint_every", self.checkpoint_every, "an integer >= 0")
        if (
            isinstance(self.lr, bool)
            or not isinstance(self.lr, int | float)
            or not (math.isfinite(self.lr) and self.lr > 0)
        ):
            bad("lr", self.lr, "a finite number > 0")
        if (
            isinstance(self.critic_lr, bool)
            or not isinstance(self.critic_lr, int | float)
            or not 0 < self.critic_lr <= 1
        ):
            bad("critic_lr", self.critic_lr, "a number in (0, 1]")
        if not isinstance(self.compile, bool):
            bad("compile", self.compile, "True or False")
        if self.optimizer not in OPTIMIZERS:
            bad("optimizer", self.optimizer, ", ".join(OPTIMIZERS))
        C.agg.check_mode(self.agg)
        if self.device not in ("cpu", "cuda") and not str(self.device).startswith("cuda:"):
            bad("device", self.device, "cpu, cuda, cuda:N")
        if any(not isinstance(k, int) or k < 1 for k in self.pass_k):
            bad("pass_k", self.pass_k, "positive integers")
        spec = self.env_spec()
        tree = isinstance(spec, TreeEnvSpec)
        policies.check(
            self.policy,
            dict(self.policy_kwargs),
            self.env,
            tree,
            spec.shape.horizon if tree else spec.horizon,
        )
        if self.policy != "tabular" and self.update == "exact_npg" and self.optimizer != "sgd":
            bad(
                "optimizer",
                self.optimizer,
                "sgd with exact_npg and a parametric policy (the natural step is taken directly)",
            )
        if not isinstance(self.calibrate_lr, bool):
            bad("calibrate_lr", self.calibrate_lr, "True or False")
        if self.calibrate_lr and (self.optimizer != "sgd" or self.update == "exact_npg"):
            bad(
                "calibrate_lr",
                self.calibrate_lr,
                "False unless optimizer is sgd and update is exact_pg, grpo or ppo (the gain is that of a "
                "gradient step)",
            )
        if self.policy != "tabular" and self.compile:
            bad(
                "compile",
                self.compile,
                "False with a parametric policy (the compiled kernel is the tabular bandit step)",
            )
        if isinstance(self.guide, bool) or not isinstance(self.guide, int) or self.guide < 0:
            bad("guide", self.guide, "an integer >= 0")
        if self.guide and (self.update.startswith("exact") or not tree or self.guide >= self.group_size):
            bad(
                "guide",
                self.guide,
                f"0, or with a sampled update on bandit/token_tree an integer < group_size = {self.group_size}",
            )
        if self.curriculum not in C.data.CURRICULA:
            bad("curriculum", self.curriculum, "none, semantic_entropy")
        if self.curriculum != "none" and (not tree or self.update.startswith("exact")):
            bad("curriculum", self.curriculum, "none, unless a sampled update runs on bandit/token_tree")
        if (
            isinstance(self.curriculum_stages, bool)
            or not isinstance(self.curriculum_stages, int)
            or self.curriculum_stages < 1
            or (self.curriculum != "none" and self.curriculum_stages > self.env_spec().n_prompts)
        ):
            bad(
                "curriculum_stages",
                self.curriculum_stages,
                f"an integer in [1, n_prompts = {self.env_spec().n_prompts}]",
            )
        if not is_band(self.offline_band):
            bad("offline_band", self.offline_band, "() or (lo, hi) with 0 <= lo <= hi <= 1")
        if self.offline_band and self.update.startswith("exact"):
            bad(
                "offline_band",
                self.offline_band,
                "() with an exact update (it filters sampled batches' prompts)",
            )
        if self.update.startswith("exact") and self.controllers:
            bad(
                "controllers",
                " ".join(self.controllers),
                "none with an exact update (they act on sampled batches)",
            )
        entries = C.spec.parse(self.controllers, "controllers")  # unknown names fail here
        names = [n for n, _ in entries]
        unknown = [n for n in self.hyperparameters if n not in names]
        if unknown:
            bad("hyperparameters", unknown, f"names of the chosen controllers: {', '.join(names)}")
        # built once; bad hyperparameters fail here
        object.__setattr__(self, "_pipeline", C.spec.build(entries, self.hyperparameters))
        C.contract.check(self.pipeline(), self.host())  # unmet needs
        if self.curriculum != "none" or self.offline_band:  # an empty band or too many mini-batches fail here
            spec = self.env_spec()
            prompt_stages(
                self, models.model(spec, torch.device("cpu"), torch.float64),
                torch.as_tensor(spec.prior, dtype=torch.float64),
            )  # fmt: skip
        n_prompts = self.env_spec().n_prompts  # bad environment arguments fail here
        if self.update == "ppo" and self.minibatches > n_prompts:
            bad("minibatches", self.minibatches, f"at most n_prompts = {n_prompts}")

    def pipeline(self) -> C.Pipeline:
        """The pipeline (``controllers`` with ``hyperparameters`` laid over any inline ones), built once when
        the config was validated."""
        if "_pipeline" in self.__dict__:
            return self.__dict__["_pipeline"]
        return C.spec.build(C.spec.parse(self.controllers, "controllers"), self.hyperparameters)

    def host(self) -> C.Host:
        """What the simulator feeds a pipeline in this configuration (controllers.contract): rewards,
        answer ids, the prior as the reference policy, and on demand the nucleus entropy, n-gram
        embeddings and a tabular critic's values; exact step judgements on bandit/token_tree; guide rows
        with ``guide``."""
        tree = isinstance(self.env_spec(), TreeEnvSpec)
        provides = {"reward", "answer", "ref_logp", "entropy_topp", "embedding", "value"}
        how: dict[str, str] = {}
        if tree:
            provides.add("step_correct")
        else:
            how["step_correct"] = "--env bandit or token_tree (their exact step judge)"
        if self.guide:
            provides.add("guide")
        else:
            how["guide"] = "--guide N (bandit/token_tree, a sampled update)"
        return C.Host(
            name=f"the simulator on {self.env}",
            provides=frozenset(provides),
            how=how,
            cannot={"length": "response lengths are the mask's row sums here"},
            group_size=self.group_size if self.update in ("grpo", "ppo") else None,
            own_advantages=f"update={self.update!r} (the expected gradient)"
            if self.update.startswith("exact")
            else None,
        )

    def env_spec(self) -> TreeEnvSpec | MdpEnvSpec:
        try:
            return BUILDERS[self.env](**self.env_kwargs)
        except TypeError as e:
            builder = BUILDERS[self.env].__name__
            raise ValueError(f"env_kwargs: {e}; allowed: the arguments of sim.envs.{builder}") from None

    @staticmethod
    def from_json(d: dict) -> SimConfig:
        """The inverse of ``to_json`` (lists back to tuples); an unknown field is a one-line ValueError."""
        names = {f.name for f in dataclasses.fields(SimConfig)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"config: unknown fields {unknown}; allowed: the fields of SimConfig")
        tuples = ("controllers", "pass_k", "offline_band")
        return SimConfig(**{k: tuple(v) if k in tuples and isinstance(v, list) else v for k, v in d.items()})

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["controllers"] = list(self.controllers)
        d["pass_k"] = list(self.pass_k)
        d["offline_band"] = list(self.offline_band)
        d["policy_kwargs"] = dict(self.policy_kwargs)
        return d


def prompt_stages(cfg: SimConfig, model, prior: torch.Tensor) -> list[torch.Tensor]:
    """The prompts trained in each curriculum stage (one stage of all prompts without a curriculum):
    the offline band keeps the prompts whose base-policy success is in [lo, hi]; the semantic-entropy
    curriculum orders them by the base policy's answer entropy, low to high."""
    P = model.n_prompts
    keep = torch.arange(P, device=prior.device)
    if cfg.update.startswith("exact") or (not cfg.offline_band and cfg.curriculum == "none"):
        return [keep]
    base = model.exact(prior[None])
    se = model.answer_entropy(base.leaf_prob[0]) if cfg.curriculum != "none" else None
    order = C.select_prompts(base.success[0], se, tuple(cfg.offline_band), cfg.curriculum)  # as the trainer
    stages = [order]
    if cfg.curriculum == "semantic_entropy":
        stages = [x for x in torch.tensor_split(order, cfg.curriculum_stages) if x.numel()]
    if cfg.update == "ppo" and cfg.minibatches > min(x.numel() for x in stages):
        raise ValueError(
            f"minibatches: got {cfg.minibatches}; allowed: at most {min(x.numel() for x in stages)} (the "
            "fewest prompts a curriculum stage or the offline band trains)"
        )
    return stages
