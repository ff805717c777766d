"""python -m llm.sft: supervised warm start, so RL has something to sharpen.

Trains the config's model by teacher forcing on ``prompt → answer<eos>`` (loss on the answer and <eos>
only) until greedy accuracy on the held-out prompts reaches ``sft_target_acc_frac`` or ``sft_steps``
run out, then saves model + tokenizer to ``OUT_DIR/NAME/sft`` (atomically: a temp directory renamed).
The trainer runs this itself for configs with ``sft_steps > 0`` and reuses the directory afterwards.

    python -m llm.sft --preset tiny-copy          # same config fields as python -m llm.train
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import torch

from entrolab.common.cli import prog
from llm.config import TrainConfig, parse_command
from llm.evaluate import evaluate
from llm.models import build, quiet
from llm.tasks import Split, get_task_for

BATCH = 64
EVAL_EVERY = 10


def _batch(tok, examples) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Right-padded ids, attention mask and loss mask (1 on answer and <eos> tokens)."""
    rows, lossm = [], []
    for e in examples:
        p = tok.encode(e.prompt)
        a = [*tok.encode(e.answer, bos=False), tok.eos_token_id]
        rows.append(p + a)
        lossm.append([0] * len(p) + [1] * len(a))
    L = max(map(len, rows))
    ids = torch.full((len(rows), L), tok.pad_token_id, dtype=torch.long)
    attn, lm = torch.zeros_like(ids), torch.zeros_like(ids, dtype=torch.float32)
    for i, (r, m) in enumerate(zip(rows, lossm, strict=True)):
        ids[i, : len(r)], attn[i, : len(r)], lm[i, : len(m)] = torch.as_tensor(r), 1, torch.as_tensor(m)
    return ids, attn, lm


def sft_dir(cfg: TrainConfig) -> Path:
    return cfg.run_dir / "sft"


def run_sft(cfg: TrainConfig, progress: bool = True, device: torch.device | str | None = None) -> Path:
    """Warm-start the config's model; returns the directory it was saved to (reused if present). It trains
    on ``device``: by default a GPU where torch sees one unless ``cfg.device`` is cpu, else the CPU."""
    out = sft_dir(cfg)
    if (out / "sft.json").is_file():
        return out
    if cfg.sft_steps < 1:
        raise ValueError(f"sft_steps: got {cfg.sft_steps}; allowed: an integer >= 1 for a warm start")
    torch.manual_seed(cfg.seed)
    if device is None:  # the trainer passes its own (each rank's) device
        device = "cpu" if cfg.runs_on_cpu() else "cuda"
    model, tok = build(cfg)
    model.to(device)
    task = get_task_for(cfg)
    split = Split(task, cfg.eval_prompts, cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.sft_lr)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=cfg.sft_steps, desc=f"sft {cfg.task}", unit="step", file=sys.stderr)
    acc, step = 0.0, 0
    for step in range(1, cfg.sft_steps + 1):
        ids, attn, lm = (t.to(device) for t in _batch(tok, split.train(step, 0, BATCH, stream=3)))
        logits = model(input_ids=ids, attention_mask=attn).logits[:, :-1]
        nll = torch.nn.functional.cross_entropy(logits.transpose(1, 2), ids[:, 1:], reduction="none")
        loss = (nll * lm[:, 1:]).sum() / lm[:, 1:].sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % EVAL_EVERY == 0 or step == cfg.sft_steps:
            acc = evaluate(
                model, tok, task, split.eval, n_samples=0, max_new_tokens=cfg.max_new_tokens,
                temperature=1.0, top_p=1.0, seed=cfg.seed,
            )["eval/greedy_acc"]  # fmt: skip
            if bar is not None:
                bar.set_postfix(loss=f"{float(loss.detach()):.3f}", acc=f"{acc:.2f}")
            if acc >= cfg.sft_target_acc_frac:
                if bar is not None:
                    bar.update(cfg.sft_steps - bar.n)
                break
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    quiet()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    tok.save(tmp)
    (tmp / "sft.json").write_text(
        json.dumps({"steps": step, "greedy_acc": acc, "loss": float(loss.detach())})
    )
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def main(argv: list[str] | None = None) -> int:
    try:
        cfg, line = parse_command(
            argv, prog=prog("python -m llm.sft"), summary=(__doc__ or "").splitlines()[0]
        )
        out = run_sft(cfg, progress=not line.quiet)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    info = json.loads((out / "sft.json").read_text())
    print(f"warm start: {info['steps']} steps, greedy accuracy {info['greedy_acc']:.3f}; wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
