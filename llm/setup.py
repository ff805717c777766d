"""The trainer's set-up, before its first rollout: the accelerator and the pipeline, the prompts and the
memory checked before the model exists, the warm start or the model, LoRA and gradient checkpointing, the
optimizer and scheduler, the reference model; and the pre-pass of a curriculum or an offline band.
``llm.train.Trainer`` inherits these methods (``SetupMixin``); they read and set its attributes."""

from __future__ import annotations

import copy
import json
import sys

import torch

import controllers as C
from entrolab.common import trackers
from entrolab.common.runio import (
    atomic_write_json,
    available_mb,
)
from llm import memory
from llm.config import TrainConfig
from llm.embed import MiniLM
from llm.embed import resolve as resolve_embedder
from llm.parallel import AccelerateGather
from llm.rollout import answer_ids, sample
from llm.tasks import Split
from llm.update import _answer_entropy, _seed


class SetupMixin:
    def _check_prompts(self, tok, context: int | None) -> int:
        """The prompts fit (``llm.tasks.check_prompts``); returns the longest prompt's tokens."""
        from llm.tasks import check_prompts

        draw = self.split.train(0, 0, 64, stream=0)  # its own stream: no other draw changes
        return check_prompts(self.task, self.split.eval + draw, tok, context, self.cfg.max_new_tokens)

    def _check_memory(self, arch, prompt_tokens: int) -> None:
        """Refuse, before the model is built or trained, a configuration whose peak (``llm.memory``) cannot
        fit in the memory the device has free."""
        device = self.acc.device
        memory.check(
            self.cfg, arch, prompt_tokens, "ref_logp" in self.needs, available_mb(device), device.type
        )

    def _setup(self, cfg: TrainConfig) -> None:
        from accelerate import Accelerator

        progress = self.progress
        self.split = Split(self.task, cfg.eval_prompts, cfg.seed)

        tracker = trackers.resolve(cfg.tracker)
        self.acc = Accelerator(
            cpu=cfg.runs_on_cpu(),  # cpu=True is what makes torchrun ranks join on CPU
            mixed_precision=cfg.mixed_precision,
            project_dir=str(self.run_dir),
        )
        self.tracker, self.logger = tracker, None
        self.rank, self.world = self.acc.process_index, self.acc.num_processes
        self.gather = AccelerateGather(self.acc) if self.world > 1 else C.dist.Gather()
        self.pipe = cfg.pipeline()  # checked against cfg.host() when the config was validated
        self.needs = self.pipe.needs()  # what to compute for the controllers (controllers.contract)
        self.embedder = None
        if "embedding" in self.needs and resolve_embedder(cfg.embedder) == "minilm":
            self.embedder = MiniLM(device=self.acc.device)
        self.step_judge = cfg.step_judge()
        self.ctrl_state = self.pipe.init()

        if cfg.model in ("tiny", "tiny-qwen2"):  # before the warm start: the character tokenizer and context
            from llm.models import TINY_CONTEXT
            from llm.tokenizer import CharTokenizer

            chars = CharTokenizer()
            longest = self._check_prompts(chars, TINY_CONTEXT)
            arch = memory.tiny_arch(
                chars.vocab_size,
                cfg.tiny_hidden,
                cfg.tiny_layers,
                cfg.tiny_heads,
                qwen2=cfg.model == "tiny-qwen2",
            )
            self._check_memory(arch, longest)  # before the model exists
        torch.manual_seed(cfg.seed)
        if cfg.sft_steps:
            from llm.models import load_model
            from llm.sft import run_sft
            from llm.tokenizer import load_tokenizer

            with self.acc.main_process_first():
                warm = run_sft(cfg, progress=progress and self.acc.is_main_process, device=self.acc.device)
            model, self.tok = load_model(warm), load_tokenizer(warm)
            self.warm_start = json.loads((warm / "sft.json").read_text())
        else:
            from llm.models import build

            model, self.tok = build(cfg)
            self.warm_start = None
        if cfg.model not in ("tiny", "tiny-qwen2"):
            longest = self._check_prompts(self.tok, getattr(model.config, "max_position_embeddings", None))
            self._check_memory(memory.arch_of(model), longest)  # before its copies, optimizer and batches
        ref = copy.deepcopy(model).eval().requires_grad_(False) if "ref_logp" in self.needs else None
        if cfg.lora_rank:
            from peft import LoraConfig, get_peft_model

            lora = LoraConfig(r=cfg.lora_rank, lora_alpha=cfg.lora_alpha, target_modules="all-linear")
            model = get_peft_model(model, lora)
        if cfg.gradient_checkpointing:  # transformers' own: each decoder layer recomputed in backward
            enable = getattr(model, "activation_checkpointing_enable", None)
            if enable is not None:
                enable(activation_checkpointing_kwargs={"use_reentrant": False})
            else:
                model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        trainable = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.AdamW(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
        warm_steps = cfg.warmup_steps
        sched = torch.optim.lr_scheduler.LambdaLR(
            opt, lambda k: min(1.0, (k + 1) / warm_steps) if warm_steps else 1.0
        )
        self.model, self.opt, self.sched = self.acc.prepare(model, opt, sched)
        self.ref = self.acc.prepare_model(ref, evaluation_mode=True) if ref is not None else None
        self.step = 0
        self.bad_in_row = 0
        self.bad_total = 0
        self.history: list[tuple[float, float]] = []  # (entropy, reward) per rollout, for the law fit
        self.pool: list[dict] | None = None  # the pre-pass's ordered training prompts, if any

    def prepass(self, fresh: bool) -> list[dict] | None:
        """With a curriculum or an offline band: the starting policy's solve rate and semantic entropy of every
        training prompt this rank would draw (steps × prompts_per_step), ordered and filtered; saved atomically
        to ``prepass/rank<R>.json`` and read back on resume. None without either option."""
        cfg = self.cfg
        if cfg.curriculum == "none" and not cfg.offline_band:
            return None
        path = self.run_dir / "prepass" / f"rank{self.rank}.json"
        if not fresh and path.is_file():
            return json.loads(path.read_text())["order"]
        n, G = cfg.prompts_per_step, cfg.prepass_samples or cfg.group_size
        items: list[dict] = []
        bar = None
        if self.progress and self.acc.is_main_process:
            from tqdm import tqdm

            bar = tqdm(total=cfg.steps, desc="pre-pass", unit="batch", file=sys.stderr)
        for k in range(cfg.steps):
            examples = self.split.train(k, self.rank, n)
            roll = sample(
                self.acc.unwrap_model(self.model), self.tok, self.task, examples, G,
                max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                seed=_seed(cfg, k, self.rank, 4), sampler=cfg.sampler, share_prompts=cfg.share_prompts,
            )  # fmt: skip
            answer = answer_ids(self.task, roll.texts, examples, G)
            for i, e in enumerate(examples):
                items.append(
                    {
                        "prompt": e.prompt, "answer": e.answer,
                        "solve_rate": float(roll.reward[i * G : (i + 1) * G].mean()),
                        "semantic_entropy": _answer_entropy(answer[i * G : (i + 1) * G]),
                    }
                )  # fmt: skip
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()
        rate = torch.tensor([x["solve_rate"] for x in items], dtype=torch.float64)
        se = torch.tensor([x["semantic_entropy"] for x in items], dtype=torch.float64)
        idx = C.select_prompts(rate, se, tuple(cfg.offline_band), cfg.curriculum)  # as the simulator
        order = [items[i] for i in idx.tolist()]
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json({"config": cfg.to_json(), "items": items, "order": order}, path)
        return order
