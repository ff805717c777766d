"""One step of the simulator: exact or sampled updates of R softmax policies at once (``Simulator``), and
the state it carries between steps (``SimState``). ``sim.run`` drives it to disk; ``sim.lean`` holds the
chunked paths unlogged steps take.

Deviations and choices, stated first:
- Exact updates (``exact_pg``, ``exact_npg``) ascend J = Σ_prompts E[r] (not the mean), so a bandit
  prompt's step is exactly ``theory.pg_dz`` / ``theory.npg_dz`` whatever P is. They take no controllers.
- Sampled updates (``grpo``: one on-policy step per rollout; ``ppo``: ``epochs`` × ``minibatches``
  steps per rollout, groups kept whole) build a ``controllers.TokenBatch`` per run and call
  ``controllers.policy_loss`` exactly as the LLM trainer does; controller selections are therefore per
  run (one run = one training job). Pipelines whose every controller declares itself separable
  (``Controller.separable``, controllers/contract.py) take a fast path: one call for all runs (the same
  gradients to 1e-12, tested over the registry), with telemetry averaged over runs.
- ``entropy`` is the expected per-token entropy along a sampled response, averaged over prompts
  (visitation-weighted, nats at temperature 1). ``dH_realized`` and ``dH_predicted`` use the same
  pre-update visitation weights, so by Lemma 1 their ratio → 1 as lr → 0.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import torch

import controllers as C
from entrolab.common.heap import keep_freed_memory
from sim import lean, models, policies
from sim import tree as tr
from sim.config import SimConfig, prompt_stages

# -- the state of a run ---------------------------------------------------------------------------------


@dataclass
class SimState:
    step: int
    z: torch.Tensor  # (R, S, V)
    ctrl: list  # per-run pipeline state
    dead: list  # per run: None or "step K: cause"
    gen: torch.Generator
    opt: torch.optim.Optimizer | None
    value: torch.Tensor | None = None  # (R, S) the tabular critic of ``vapo``
    params: dict | None = (
        None  # a parametric policy's parameters (leaves, leading axis R); z = logits(params)
    )
    z_graph: tuple | None = field(default=None, repr=False, compare=False)
    """(logits(params) with its graph, [(parameter, its version)]) made just after the last update: the next
    ``_z_var`` takes it instead of a second forward (the same values), if no parameter changed since"""


class Simulator:
    """Holds the environment tensors and performs steps; ``run`` drives it to disk."""

    def __init__(self, cfg: SimConfig):
        self.cfg = cfg
        self.spec = cfg.env_spec()
        self.device = torch.device(cfg.device)
        if self.device.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"device: got {cfg.device!r}; allowed: cpu (no CUDA device is available)")
        if self.device.type == "cpu":  # a step's fresh multi-MB tensors reuse freed heap, not new pages
            keep_freed_memory()
        self.dtype = torch.float64
        self.model = models.model(self.spec, self.device, self.dtype)
        self.prior = torch.as_tensor(self.spec.prior, dtype=self.dtype, device=self.device)  # (S, V)
        self.prior_logp = torch.log_softmax(self.prior, -1)
        self.pipe = cfg.pipeline()
        # one policy_loss call for all runs gives each run its own gradient only if every controller is
        # separable (controllers.contract) and the aggregation does not mix runs' token counts: token-mean
        # over variable-length episodes would
        fixed = self.model.fixed_length
        self.fast = self.pipe.separable(equal_lengths=fixed) and (fixed or cfg.agg != "token-mean")
        self.needs = self.pipe.needs()
        self.guide_z = self.model.guide_logits() if cfg.guide else None
        self.stages = prompt_stages(cfg, self.model, self.prior)
        self.policy = (
            None
            if cfg.policy == "tabular"
            else policies.build(cfg.policy, self.model, self.prior, cfg.policy_kwargs)
        )
        self.lr_gain = self.kernel_gain() if cfg.calibrate_lr and self.policy is not None else 1.0
        """ρ of ``calibrate_lr`` (1.0 without it); the step size used is ``lr`` = cfg.lr / ρ"""
        self.lr = float(cfg.lr) / self.lr_gain

    def kernel_gain(self) -> float:
        """ρ = ‖Jᵀg‖²/‖g‖² of the policy class at its initial parameters (every run starts there), with g the
        exact policy gradient in logit space: how much faster, to first order, a parameter-gradient step
        raises the objective than a tabular step of the same size (theory.kernel_gain, here with Jᵀg from
        one backward pass instead of the Jacobian)."""
        if self.policy is None:
            return 1.0
        params = {k: v[:1].detach().requires_grad_(True) for k, v in self.policy.params(1).items()}
        z = self.policy.logits(params)
        with torch.no_grad():
            g = tr.pg_dz(self.model.exact(z.detach()))
        jtg = torch.autograd.grad(z, list(params.values()), grad_outputs=g, allow_unused=True)
        num = sum(float((t * t).sum()) for t in jtg if t is not None)
        den = float((g * g).sum())
        gain = num / den if den > 0 else math.nan
        if not (math.isfinite(gain) and gain > 0):
            raise ValueError(
                f"calibrate_lr: the policy's kernel gain at its initial parameters is {gain!r}; allowed: "
                "a class whose initial gradient moves the logits, at a prior that is not already optimal"
            )
        return gain

    def active_prompts(self, step: int) -> torch.Tensor:
        """The prompts trained at this rollout."""
        k = min(len(self.stages) - 1, step * len(self.stages) // max(self.cfg.steps, 1))
        return self.stages[k]

    # -- state ---------------------------------------------------------------------------------------

    def init_state(self) -> SimState:
        R = self.cfg.runs
        z = self.prior[None].repeat(R, 1, 1).clone()
        gen = torch.Generator().manual_seed(self.cfg.seed)
        opt = None
        params = None
        if self.policy is not None:
            params = {k: v.requires_grad_(True) for k, v in self.policy.params(R).items()}
            with torch.no_grad():
                z = self.policy.logits(params).detach().clone()
            if self.cfg.optimizer == "adam":
                opt = torch.optim.Adam(list(params.values()), lr=self.lr)
        elif self.cfg.optimizer == "adam":
            z.requires_grad_(True)
            opt = torch.optim.Adam([z], lr=self.lr)
        value = None
        if "value" in self.needs:  # VAPO's value pre-training, done exactly: the base policy's values
            value = self.model.exact(self.prior[None]).v.expand(R, -1).clone()
        return SimState(0, z, [self.pipe.init() for _ in range(R)], [None] * R, gen, opt, value, params)

    def state_dict(self, s: SimState) -> dict:
        return {
            "step": s.step,
            "z": s.z.detach().cpu(),
            "ctrl": json.dumps(s.ctrl),
            "dead": s.dead,
            "gen": s.gen.get_state(),
            "opt": None if s.opt is None else s.opt.state_dict(),
            "value": None if s.value is None else s.value.cpu(),
            "params": None if s.params is None else {k: v.detach().cpu() for k, v in s.params.items()},
            "config": self.cfg.to_json(),
        }

    def load_state(self, d: dict) -> SimState:
        s = self.init_state()
        with torch.no_grad():
            s.z.copy_(d["z"].to(self.device))
        s.step, s.ctrl, s.dead = d["step"], json.loads(d["ctrl"]), list(d["dead"])
        s.gen.set_state(d["gen"])
        if s.opt is not None and d["opt"] is not None:
            s.opt.load_state_dict(d["opt"])
        if s.value is not None and d.get("value") is not None:
            s.value.copy_(d["value"].to(self.device))
        if s.params is not None:
            with torch.no_grad():
                for k, v in s.params.items():
                    v.copy_(d["params"][k].to(self.device))
                s.z.copy_(self.policy.logits(s.params))
        return s

    # -- exact measurements --------------------------------------------------------------------------

    @property
    def shape(self) -> tr.TreeShape:
        return self.model.shape  # trees only

    @property
    def rewards(self) -> torch.Tensor:
        return self.model.rewards  # trees only: (P, V^T)

    def measure(self, z: torch.Tensor):
        ex = self.model.exact(z.detach())
        w = models.visit_weights(ex.reach)
        success = ex.success  # (R, P)
        out = {
            "entropy": (w * ex.entropy).sum(-1),
            "success": success.mean(-1),
            "cov_pg": (w * tr.cov_pi(z.detach(), ex.pi * ex.adv)).sum(-1),
            "cov_npg": (w * tr.cov_pi(z.detach(), ex.adv)).sum(-1),
        }
        for k, v in tr.pass_at_k(success, list(self.cfg.pass_k)).items():
            out[f"pass@{k}"] = v
        return ex, out

    # -- sampled batches -------------------------------------------------------------------------------

    def rollout(
        self, z: torch.Tensor, gen: torch.Generator, entropy: bool = False, table: bool = False
    ) -> dict[str, torch.Tensor]:
        """Sample the groups of every run and prompt: states, tokens, mask, reward, the behaviour log-probs
        ``old_logp``, with ``entropy`` the entropy of each token's state under ``z`` (``entropy``, from
        the same row-wise log-softmax pass), and with ``table`` that pass's log-softmax of the whole table
        (``table``, (R, S, V): a buffer the simulator keeps, overwritten by the next such call: a fresh
        one would cost its page faults every step) and each token's flat index into one run's table
        (``flat_index``, (R, P·G·T))."""
        n_guide = self.cfg.guide
        roll = self.model.sample(z, self.cfg.group_size - n_guide, gen)  # (R, P, G, T) and (R, P, G)
        if n_guide:  # the last n_guide responses of each group come from the guide policy
            zg = self.guide_z[None].expand(z.shape[0], -1, -1)
            g_roll = self.model.sample(zg, n_guide, gen)
            roll = {k: torch.cat([roll[k], g_roll[k]], 2) for k in roll}
        states, tokens, p_correct = roll["states"], roll["tokens"], roll["p_correct"]
        if self.spec.bernoulli:
            u = torch.rand(p_correct.shape, generator=gen, dtype=self.dtype).to(self.device)
            reward = (u < p_correct).to(self.dtype)
        else:
            reward = p_correct
        R, V = z.shape[0], z.shape[-1]
        old_logp = torch.empty(states.shape, dtype=z.dtype, device=self.device)
        ent = torch.empty(states.shape, dtype=z.dtype, device=self.device) if entropy else None
        flat_logp, flat_ent = old_logp.view(R, -1), None if ent is None else ent.view(R, -1)
        flat_state = states.reshape(R, -1)
        flat_index = flat_state * V + tokens.reshape(R, -1)  # (R, P·G·T) into each run's S·V table
        whole = self._table_buffer(z) if table else None
        zd = z.detach()
        for i, j in self._chunks(z):  # row-wise: the same values as one whole-table log-softmax
            old = torch.log_softmax(zd[i:j], -1, out=None if whole is None else whole[i:j])
            torch.gather(old.view(j - i, -1), 1, flat_index[i:j], out=flat_logp[i:j])
            if ent is not None:  # the arithmetic of _table_fields: −Σ exp(ℓ)·ℓ
                torch.gather(old.exp().mul_(old).sum(-1).neg_(), 1, flat_state[i:j], out=flat_ent[i:j])
        guide = torch.zeros(p_correct.shape, dtype=torch.bool, device=self.device)
        if n_guide:  # behaviour policy of the guide rows: the guide
            guide[..., -n_guide:] = True
            g_logp = torch.log_softmax(self.guide_z, -1)[states, tokens]
            old_logp = torch.where(guide[..., None], g_logp, old_logp)
        extra = {"guide": guide}
        if (
            isinstance(self.model, models.TreeModel) and "step_correct" in self.needs
        ):  # only step_credit reads it
            extra["step_correct"] = self.model.step_correct(states, tokens)
        if ent is not None:
            extra["entropy"] = ent
        if whole is not None:
            extra["table"], extra["flat_index"] = whole, flat_index
        return {**roll, "reward": reward, "old_logp": old_logp, **extra}

    def _table_buffer(self, z: torch.Tensor) -> torch.Tensor:
        buf = getattr(self, "_table_buf", None)
        if buf is None or buf.shape != z.shape or buf.dtype != z.dtype or buf.device != z.device:
            buf = self._table_buf = torch.empty(z.shape, dtype=z.dtype, device=z.device)
        return buf

    def _chunks(self, z: torch.Tensor) -> list[tuple[int, int]]:
        """Chunks of runs for row-wise passes over the logits table (CPU: cache-sized; else one)."""
        return tr.run_chunks(z.shape[0], z[0].numel() * z.element_size(), self.device)

    def _table_fields(
        self,
        zr: torch.Tensor,
        st: torch.Tensor,
        tok: torch.Tensor,
        want: tuple[bool, ...] = (True, True, True),
    ) -> tuple[torch.Tensor | None, ...]:
        """(logp, entropy, entropy_topp or None) of the sampled tokens (r, p, G, T), from the log-softmax of
        the runs' whole table ``zr`` (r, S, V): one row-wise pass when states are fewer than tokens.
        ``want``: which of the three to compute (None for the others; topp only when a controller needs it)."""
        run_idx = torch.arange(zr.shape[0], device=self.device)[:, None, None, None]
        logp = ent = topp = None
        if want[0] or want[1]:
            table = torch.log_softmax(zr, -1)
            logp = table[run_idx, st, tok] if want[0] else None
            ent = tr.entropy_of_log_probs(table)[run_idx, st] if want[1] else None
        if want[2] and "entropy_topp" in self.needs:
            topp = C.nucleus_entropy(zr)[run_idx, st]
        return logp, ent, topp

    def token_batch(
        self,
        z: torch.Tensor,
        roll: dict,
        runs: slice | torch.Tensor,
        prompts: torch.Tensor,
        fields: tuple | None = None,
        selected: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> C.TokenBatch:
        """TokenBatch of the given runs × prompts × G responses (B = runs·prompts·G, T = horizon).
        ``fields``: (logp, entropy, entropy_topp) already computed (``_table_fields``'s shapes);
        ``selected``: the rollout's (states, tokens) of these runs and prompts, where the caller has them."""
        # index_select, not x[:, prompts]: the same copy, without advanced indexing's slower general kernel
        sel = lambda key: roll[key][runs].index_select(1, prompts)  # noqa: E731
        st, tok = selected if selected is not None else (sel("states"), sel("tokens"))  # (r, p, G, T)
        r, p, G, T = st.shape
        zr = z[runs]  # (r, S, V)
        run_idx = torch.arange(r, device=self.device)[:, None, None, None]
        if fields is not None:
            logp, ent, topp = fields
        elif zr.shape[1] <= p * G * T:  # fewer states than sampled tokens: log-softmax the table once
            logp, ent, topp = self._table_fields(zr, st, tok)
        else:  # a large tree: only the visited rows
            logits = zr[run_idx, st]  # (r, p, G, T, V)
            rows = torch.log_softmax(logits, -1)
            logp = rows.gather(-1, tok[..., None]).squeeze(-1)
            ent = tr.entropy_of_log_probs(rows)
            topp = C.nucleus_entropy(logits) if "entropy_topp" in self.needs else None
        ref = self.prior_logp.view(-1).take(st * self.prior_logp.shape[-1] + tok)  # prior_logp[st, tok]
        group = (
            torch.arange(r, device=self.device)[:, None] * self.model.n_prompts + prompts[None, :]
        ).repeat_interleave(G, dim=1)
        flat = lambda x: x.reshape(r * p * G, T)  # noqa: E731
        emb = C.ngram_embedding(flat(tok), flat(sel("mask"))) if "embedding" in self.needs else None
        return C.TokenBatch(
            logp=flat(logp),
            old_logp=flat(sel("old_logp")),
            adv=torch.zeros(r * p * G, T, dtype=self.dtype, device=self.device),
            entropy=flat(ent),
            mask=flat(sel("mask")),
            group=group.reshape(-1),
            reward=sel("reward").reshape(-1),
            ref_logp=flat(ref),
            entropy_topp=None if topp is None else flat(topp),
            answer=sel("answer").reshape(-1),
            step_correct=flat(sel("step_correct")) if "step_correct" in roll else None,
            guide=sel("guide").reshape(-1) if self.cfg.guide else None,
            embedding=emb,
            value=flat(sel("value")) if "value" in roll else None,
        )

    def sampled_loss(
        self, s: SimState, z: torch.Tensor, roll: dict, prompts: torch.Tensor
    ) -> tuple[torch.Tensor, list[dict]]:
        """Σ_runs loss_run (so each run's gradient is its own), and per-run metrics."""
        R = z.shape[0]
        alive = torch.tensor([d is None for d in s.dead], device=self.device)
        if self.fast:
            b = self.token_batch(z, roll, slice(None), prompts)
            loss, m = C.policy_loss(b, self.pipe, s.ctrl[0], agg=self.cfg.agg, generator=s.gen)
            return loss * R, [m] * R  # every aggregation mode is a mean over r equal-sized runs
        # selections and controller states are per run (one run = one training job): one loss call per run.
        # The batch of every run is made (and validated) once; each run's call reads its rows, with its
        # log-prob and entropy fields as leaves. One backward over every run's (disjoint) graph gives the
        # leaves' gradients, which then take one backward pass through the whole table. The same values and
        # gradients as one batch and one graph per run (row-wise ops).
        full = self.token_batch(z, roll, slice(None), prompts)
        keys = [k for k in ("logp", "entropy", "entropy_topp") if getattr(full, k) is not None]
        detached = {k: getattr(full, k).detach() for k in keys}
        grads = {k: torch.zeros_like(v) for k, v in detached.items()}
        n = full.logp.shape[0] // R
        metrics = []
        losses, run_leaves = [], []  # the runs' graphs are disjoint: one backward over all of them
        for i in range(R):
            if not bool(alive[i]):
                metrics.append({})
                continue
            rows = slice(i * n, (i + 1) * n)
            leaves = {k: v[rows].detach().requires_grad_(True) for k, v in detached.items()}
            group = None if full.group is None else full.group[rows] - i * self.model.n_prompts
            b = full.rows(rows).derived(group=group, **leaves)
            try:
                loss, m = C.policy_loss(b, self.pipe, s.ctrl[i], agg=self.cfg.agg, generator=s.gen)
            except RuntimeError as e:
                s.dead[i] = f"step {s.step}: {e}"
                metrics.append({})
                continue
            metrics.append(m)
            if loss.requires_grad:
                losses.append(loss)
                run_leaves.append((rows, leaves))
        used: set[str] = set()
        if losses:
            flat = [lv[k] for _, lv in run_leaves for k in keys]
            got = torch.autograd.grad(losses, flat, allow_unused=True)
            for r, (rows, _) in enumerate(run_leaves):
                for k, g in zip(keys, got[r * len(keys) : (r + 1) * len(keys)], strict=True):
                    if g is not None:
                        grads[k][rows] = g
                        used.add(k)
        total = torch.zeros((), dtype=self.dtype, device=self.device)
        for k in keys:  # its gradient in each field is exactly grads[k] (d/dx Σ x·g = g)
            if k in used:
                total = total + (getattr(full, k) * grads[k]).sum()
        return total, metrics

    # -- one rollout -------------------------------------------------------------------------------------

    def _apply(
        self, s: SimState, z_var: torch.Tensor, ascent_dir: torch.Tensor | None, loss: torch.Tensor | None
    ) -> None:
        """One optimizer step on the logits: from an ascent direction (exact) or a loss (sampled). A
        parametric policy steps its parameters (the ascent direction pulled back by the Jacobian's
        transpose) and recomputes the logits."""
        if s.params is not None:
            self._apply_params(s, z_var, ascent_dir, loss)
            return
        if s.opt is not None:
            s.opt.zero_grad()
            if loss is not None:
                loss.backward()
            else:
                s.z.grad = -ascent_dir
            s.opt.step()
            return
        with torch.no_grad():
            if loss is not None:
                (g,) = torch.autograd.grad(loss, z_var)
                s.z.sub_(self.lr * g)
            else:
                s.z.add_(self.lr * ascent_dir)

    def _fit_critic(self, s: SimState, roll: dict, prompts: torch.Tensor) -> None:
        """One regression step of the tabular critic on this rollout's trained prompts: each visited state's
        value moves ``critic_lr`` of the way to the mean episode return from it (λ = 1, γ = 1: the reward)."""
        R, S = s.value.shape
        st = roll["states"][:, prompts]  # (R, p, G, T)
        m = roll["mask"][:, prompts]
        ret = roll["reward"][:, prompts][..., None].expand_as(st).to(s.value.dtype)
        flat = (torch.arange(R, device=self.device)[:, None, None, None] * S + st).reshape(-1)
        w = m.reshape(-1).to(s.value.dtype)
        total = torch.zeros(R * S, dtype=s.value.dtype, device=self.device).index_add_(
            0, flat, ret.reshape(-1) * w
        )
        count = torch.zeros(R * S, dtype=s.value.dtype, device=self.device).index_add_(0, flat, w)
        seen = count > 0
        v = s.value.reshape(-1)
        v[seen] += self.cfg.critic_lr * (total[seen] / count[seen] - v[seen])

    def _apply_params(self, s: SimState, z_var, ascent_dir, loss) -> None:
        leaves = list(s.params.values())
        if loss is not None:
            grads = torch.autograd.grad(loss, leaves, allow_unused=True)
        else:  # the loss whose logit gradient is −ascent_dir: its parameter gradient is −Jᵀ·ascent_dir
            grads = torch.autograd.grad(z_var, leaves, grad_outputs=-ascent_dir, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(leaves, grads, strict=True)]
        if s.opt is not None:
            for p, g in zip(leaves, grads, strict=True):
                p.grad = g
            s.opt.step()
            s.opt.zero_grad(set_to_none=True)
        else:
            with torch.no_grad():
                for p, g in zip(leaves, grads, strict=True):
                    p.sub_(self.lr * g)
        # the new logits with their graph: s.z now, and the next step's logits to differentiate (``_z_var``)
        with torch.enable_grad():
            z = self.policy.logits(s.params)
        s.z = z.detach().clone()  # s.z may be written in place (a stopped run's restore); the graph's is not
        s.z_graph = (z, [(p, p._version) for p in s.params.values()])

    def param_jacobian(self, s: SimState, run: int) -> tuple[torch.Tensor, list[int]]:
        """(J (S, V, P), sizes): ∂z/∂θ of one run's logits in its flattened parameters (in the order of
        ``s.params``; ``sizes`` the number of entries of each), by autograd."""
        keys = list(s.params)
        flat0 = torch.cat([s.params[k].detach()[run].reshape(-1) for k in keys])
        sizes = [s.params[k][run].numel() for k in keys]
        shapes = [s.params[k][run].shape for k in keys]

        def z_of(flat):
            parts = torch.split(flat, sizes)
            one = {k: p.reshape(1, *shp) for k, p, shp in zip(keys, parts, shapes, strict=True)}
            return self.policy.logits(one)[0]

        return torch.autograd.functional.jacobian(z_of, flat0, vectorize=True), sizes

    def _natural_params_step(self, s: SimState, ex) -> None:
        """Exact natural PG for a parametric policy: θ ← θ + η·F⁺·Jᵀg per run, with the Fisher
        F = Σ_s d(s)·J_sᵀ (diag π_s − π_s π_sᵀ) J_s of the visit distribution and g = d·π·A, J = ∂z/∂θ
        (by autograd; F⁺ the pseudo-inverse). One-hot features give the tabular NPG step Δz = η·A."""
        keys = list(s.params)
        g_all = tr.pg_dz(ex).detach()  # (R, S, V)
        for i in range(s.z.shape[0]):
            if s.dead[i] is not None:
                continue
            J, sizes = self.param_jacobian(s, i)
            pi, d = ex.pi[i].detach(), ex.reach[i].detach()  # (S, V), (S,)
            piJ = pi[..., None] * J
            MJ = d[:, None, None] * (piJ - pi[..., None] * piJ.sum(1, keepdim=True))
            F = torch.einsum("svp,svq->pq", J, MJ)
            grad = torch.einsum("svp,sv->p", J, g_all[i])
            step = torch.linalg.pinv(F, hermitian=True) @ grad  # F is singular (softmax shifts, shared θ)
            with torch.no_grad():
                offset = 0
                for k, n in zip(keys, sizes, strict=True):
                    s.params[k][i] += self.lr * step[offset : offset + n].reshape(s.params[k][i].shape)
                    offset += n
        with torch.no_grad():
            s.z = self.policy.logits(s.params).detach()

    def _z_var(self, s: SimState) -> torch.Tensor:
        """The logits with the gradient path to what the optimizer updates."""
        if s.params is not None:
            made, s.z_graph = s.z_graph, None  # a graph is differentiated once
            params = list(s.params.values())
            if made is not None and len(made[1]) == len(params):
                if all(p is q and p._version == v for p, (q, v) in zip(params, made[1], strict=True)):
                    return made[0]
            return self.policy.logits(s.params)
        return s.z if s.opt is not None else s.z.detach().requires_grad_(True)

    def _updates_per_rollout(self) -> tuple[int, int]:
        """(epochs, minibatches) of one rollout: GRPO takes one on-policy step."""
        cfg = self.cfg
        return (1, 1) if cfg.update == "grpo" else (cfg.epochs, cfg.minibatches)

    @staticmethod
    def _stop_non_finite(s: SimState, bad: torch.Tensor, offset: int = 0) -> None:
        """Record the runs flagged in ``bad`` (indices from ``offset``) as stopped at this step, once."""
        for i in torch.nonzero(bad).flatten().tolist():
            if s.dead[offset + i] is None:
                s.dead[offset + i] = f"step {s.step}: non-finite logits after the update"

    def _step_controllers(self, s: SimState, batch_metrics: list[dict]) -> None:
        """Each live run's pipeline state takes its step from this rollout's telemetry."""
        if not self.pipe.steps_state:  # the states would come back as they are
            return
        progress = s.step / max(self.cfg.steps - 1, 1)
        for i in range(self.cfg.runs):
            if s.dead[i] is None and batch_metrics[i]:
                s.ctrl[i] = self.pipe.step(s.ctrl[i], {**batch_metrics[i], "train/progress_frac": progress})

    # the lean paths (sim/lean.py): unlogged steps in cache-sized chunks of runs, the same logits to the bit
    def _lean(self, s: SimState) -> bool:
        return lean.exact_applies(self, s)

    def _lean_step(self, s: SimState) -> dict:
        return lean.exact_step(self, s)

    def _lean_sampled(self, s: SimState) -> bool:
        return lean.sampled_applies(self, s)

    def _lean_sampled_step(self, s: SimState) -> dict:
        return lean.sampled_step(self, s)

    def step(self, s: SimState, measure: bool = True) -> dict[str, torch.Tensor | list]:
        """One rollout/update. ``measure=False`` skips the exact measurements (entropy, success, pass@k,
        covariances, ΔH): the returned dict then holds only ``batch``; exact bandit updates then take one
        fused kernel, and sampled updates of the fast path run in cache-sized chunks of runs."""
        if not measure and self._lean(s):
            return self._lean_step(s)
        if not measure and self._lean_sampled(s):
            return self._lean_sampled_step(s)
        cfg = self.cfg
        z_old = s.z.detach().clone()
        params_old = None if s.params is None else {k: v.detach().clone() for k, v in s.params.items()}
        ex, meas = self.measure(z_old) if measure else (None, {})
        batch_metrics: list[dict] = [{} for _ in range(cfg.runs)]
        if cfg.update in ("exact_pg", "exact_npg"):
            ex_now = ex if ex is not None else self.model.exact(z_old)
            if s.params is not None and cfg.update == "exact_npg":
                self._natural_params_step(s, ex_now)
            else:
                direction = tr.pg_dz(ex_now) if cfg.update == "exact_pg" else tr.npg_dz(ex_now)
                self._apply(s, self._z_var(s) if s.params is not None else s.z, direction, None)
        else:
            roll = self.rollout(z_old, s.gen)
            if s.value is not None:
                roll["value"] = s.value[
                    torch.arange(cfg.runs, device=self.device)[:, None, None, None], roll["states"]
                ]
            active = self.active_prompts(s.step)
            epochs, mbs = self._updates_per_rollout()
            for _ in range(epochs):
                perm = (
                    active[torch.randperm(active.numel(), generator=s.gen).to(self.device)]
                    if mbs > 1
                    else active
                )
                for chunk in torch.tensor_split(perm, mbs):
                    z_var = self._z_var(s)
                    loss, m = self.sampled_loss(s, z_var, roll, chunk)
                    self._apply(s, z_var, None, loss)
                    batch_metrics = m
            if s.value is not None:
                self._fit_critic(s, roll, active)
            self._step_controllers(s, batch_metrics)
        bad = ~torch.isfinite(s.z.detach()).all(-1).all(-1)
        self._stop_non_finite(s, bad)
        bad = bad | torch.tensor([d is not None for d in s.dead], device=self.device)
        if bool(bad.any()):
            with torch.no_grad():
                s.z[bad] = z_old[bad]  # a stopped run keeps its last finite policy
                if params_old is not None:
                    for k, v in s.params.items():
                        v[bad] = params_old[k][bad]
        if measure:
            dz = s.z.detach() - z_old
            w = models.visit_weights(ex.reach)
            meas["dH_predicted"] = (w * tr.first_order_dH(z_old, dz)).sum(-1)
            meas["dH_realized"] = (w * (tr.state_entropy(s.z.detach()) - ex.entropy)).sum(-1)
        meas["batch"] = batch_metrics
        s.step += 1
        return meas
