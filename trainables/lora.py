"""The LoRA trainable: setup -> fit -> evaluate -> report, for one resolved trial config.

``train_lora(config)`` is a Ray Tune function trainable. It builds the base model, wraps it
with PEFT LoRA, trains the adapter through a DeepSpeed engine and, every ``eval_every``
steps, runs one evaluation pass (CE, PPL, ACC, MIUB) and reports it to Tune with a
checkpoint. The same loop runs in every Ray Train worker when a trial has several.
"""
from __future__ import annotations

import logging
import math
import socket
import tempfile
import time
from dataclasses import dataclass, field

import torch

from orchestrator.spec.trial_config import TrialConfig
from orchestrator.spec.trials import scale_factor
from trainables import checkpoint, divergence
from trainables.batching import answer_tokens, eval_batches, global_batch, micro_batches
from trainables.data import encode, splits_for
from trainables.deepspeed_config import build_config_with_notes, precision_of
from trainables.device import trial_device
from trainables.distributed import all_reduce_sum, ensure_process_group, world
from trainables.evaluation import evaluate
from trainables.models import load_model, resolve_target_modules
from trainables.precision import bf16_native, choose_precision
from trainables.session import Session, TuneSession


@dataclass
class TrialState:
    """Everything the loop mutates; saved with every checkpoint."""

    step: int = 0
    tokens_seen: int = 0
    loss_sum: float = 0.0
    loss_count: int = 0
    grad_norm_sum: float = 0.0
    grad_norm_count: int = 0
    elapsed_s: float = 0.0
    first_loss: float | None = None  # the divergence rule's reference

    def to_dict(self) -> dict:
        return dict(self.__dict__)


@dataclass
class Trial:
    config: TrialConfig
    engine: object
    train: dict[str, torch.Tensor]
    eval_batches: list[dict[str, torch.Tensor]]
    row: dict
    device: torch.device
    state: TrialState = field(default_factory=TrialState)


def train_lora(config: dict) -> None:
    """Ray Tune entry point of a single-process trial (``trainables.multiworker`` runs one
    with several workers)."""
    quiet_ray_storage_logs()
    run_trial(config, TuneSession())


def quiet_ray_storage_logs() -> None:
    """Ray logs one INFO line per persisted checkpoint; a sweep checkpoints every evaluation."""
    import logging

    for name in ("ray.train._internal.storage", "ray.train.v2._internal.execution.storage"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run_trial(config: dict | TrialConfig, session: Session) -> None:
    """Validate the trial config (every default comes from the spec's models), then train."""
    trial = setup(TrialConfig.model_validate(config))
    restored = session.restore_dir()
    if restored is not None:
        trial.state = TrialState(**checkpoint.load(trial.engine, restored, rank=world()[0]))
    fit(trial, session)


def setup(config: TrialConfig) -> Trial:
    """Model, LoRA adapter, data and the DeepSpeed engine for one trial."""
    import deepspeed
    import peft

    device = trial_device(config.resources.gpus_per_worker)  # before CUDA is touched
    ensure_process_group()
    rank, world_size = world()
    train_cfg, lora_cfg, data_cfg = config.train, config.lora, config.data
    precision = choose_precision(config.model.dtype, device.type, native_bf16=bf16_native())

    base = load_model(config.model.name, dtype=config.model.dtype, local_files_only=config.model.local_files_only)
    if train_cfg.gradient_checkpointing:
        enable_gradient_checkpointing(base.model)
    torch.manual_seed(train_cfg.seed)  # adapter init and data order follow the trial seed
    model = peft.get_peft_model(
        base.model,
        peft.LoraConfig(
            r=lora_cfg.rank,
            lora_alpha=lora_cfg.alpha,
            use_rslora=lora_cfg.scaling == "rslora",
            # q_proj/v_proj and friends map onto fused layers (Phi3's qkv_proj) where needed.
            target_modules=resolve_target_modules(base.model, list(lora_cfg.target_modules)),
            lora_dropout=lora_cfg.dropout,
            task_type="CAUSAL_LM",
        ),
    )
    trainable_params = sum(p.numel() for p in model.parameters() if p.requires_grad)

    train_examples, eval_examples = splits_for(data_cfg)
    seq_len = train_cfg.seq_len
    policy = dict(truncation=data_cfg.truncation, chat_template=data_cfg.chat_template)
    train = encode(train_examples, base.tokenizer, seq_len, split="train", **policy)
    eval_all = encode(eval_examples, base.tokenizer, seq_len, split="eval", **policy)
    evaluation = eval_batches(eval_all, rank, world_size, train_cfg.eval_batch_size)

    ds_config, ds_notes = build_config_with_notes(
        micro_batch_size=train_cfg.micro(world_size),
        gradient_accumulation_steps=train_cfg.accumulation(world_size),
        world_size=world_size,
        lr=train_cfg.lr,
        zero_stage=config.deepspeed.zero_stage,
        grad_clip=train_cfg.grad_clip,
        config_path=config.deepspeed.config,
        precision=precision,
        device_type=device.type,
    )
    if rank == 0:
        for note in ds_notes:  # which "auto" values of a user config were resolved, and how
            logging.getLogger(__name__).warning("DeepSpeed config: %s", note)
    warmup = train_cfg.warmup_steps
    engine, optimizer, _, _ = deepspeed.initialize(
        model=model,
        model_parameters=[p for p in model.parameters() if p.requires_grad],
        config=ds_config,
        lr_scheduler=lambda opt: torch.optim.lr_scheduler.LambdaLR(
            opt, lambda s: min(1.0, (s + 1) / warmup) if warmup else 1.0
        ),
    )
    # What the trial measures; every column that follows from the config alone is the
    # driver's (orchestrator.spec.trials.config_columns).
    row = {
        "model_params": base.params_total,
        "model_params_non_embedding": base.params_non_embedding,
        "trainable_params": trainable_params,
        "precision": precision_of(ds_config),
        "optimizer": type(getattr(engine.optimizer, "optimizer", engine.optimizer)).__name__,
        "node": _node_name(),
    }
    _check_scale_factor(model, lora_cfg)
    return Trial(config, engine, train, evaluation, row, device)


def enable_gradient_checkpointing(model) -> None:
    """Recompute activations in backward. The frozen embeddings' output gets requires_grad,
    so checkpointed segments have an input that needs gradients even though no base weight
    does (otherwise the LoRA weights inside them would get none)."""
    model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    model.enable_input_require_grads()
    if getattr(model.config, "use_cache", None):
        model.config.use_cache = False


def fit(trial: Trial, session: Session) -> None:
    """Train to ``train.steps``, evaluating and reporting every ``eval_every`` steps."""
    cfg = trial.config.train
    engine, state = trial.engine, trial.state
    rank, world_size = world()
    n = trial.train["input_ids"].size(0)
    started = time.perf_counter() - state.elapsed_s
    engine.train()
    while state.step < cfg.steps:
        batch = global_batch(trial.train, state.step, cfg.batch_size, n, cfg.seed)
        state.tokens_seen += int(batch["attention_mask"].sum())
        loss, norm = train_step(engine, batch, rank, world_size, trial.device)
        state.step += 1
        state.loss_sum += loss
        state.loss_count += 1
        if state.first_loss is None:
            state.first_loss = loss
        if norm is not None:
            state.grad_norm_sum += norm
            state.grad_norm_count += 1
        reason = divergence.agree(divergence.loss_problem(loss))
        evaluating = state.step % cfg.eval_every == 0 or state.step == cfg.steps
        if reason is None and evaluating:
            reason = divergence.agree(
                divergence.adapter_problem(engine.module)
                or divergence.rising_loss_problem(state.loss_sum / state.loss_count, state.first_loss,
                                                  cfg.divergence_factor)
            )
        if reason is not None or evaluating:
            state.elapsed_s = time.perf_counter() - started
            _evaluate_and_report(trial, session, diverged=reason)
            if reason is not None:
                return


def _evaluate_and_report(trial: Trial, session: Session, *, diverged: str | None) -> None:
    """One evaluation, reported with a checkpoint; a diverged trial reports why, with no
    checkpoint (there is nothing worth resuming)."""
    state = trial.state
    metrics = evaluate(
        trial.engine.module, trial.eval_batches, miub=trial.config.metrics.miub, device=trial.device,
        chunk_tokens=trial.config.train.eval_chunk_tokens,
    )
    metrics.update(trial.row)
    # Each worker's step losses are its share of the global-batch mean: their sum over
    # workers is the mean CE over the global batch's answer tokens.
    loss_sum = all_reduce_sum(torch.tensor([state.loss_sum], dtype=torch.float64))[0]
    metrics.update(
        step=state.step,
        tokens_seen=state.tokens_seen,
        train_loss=(loss_sum / max(state.loss_count, 1)).item(),
        grad_norm=state.grad_norm_sum / state.grad_norm_count if state.grad_norm_count else float("nan"),
        wall_time_s=state.elapsed_s,
        diverged=diverged is not None,
        stop_reason=None if diverged is None else f"diverged at step {state.step}: {diverged}",
    )
    state.loss_sum, state.loss_count, state.grad_norm_sum, state.grad_norm_count = 0.0, 0, 0.0, 0
    rank = world()[0]
    if diverged is not None:
        session.report(metrics, None)
        return
    with tempfile.TemporaryDirectory(prefix="lorasweep-ckpt-") as directory:
        checkpoint.save(trial.engine, directory, state.to_dict(), rank=rank)
        session.report(metrics, directory)


def train_step(engine, batch: dict[str, torch.Tensor], rank: int, world_size: int, device) -> tuple[float, float | None]:
    """One optimizer step on this worker's shard of the global batch: (this worker's share
    of the step's loss, grad norm).

    The shard runs as ``engine.gradient_accumulation_steps()`` micro-batches. Each one's loss
    is its CE sum over the global batch's answer-token count, times the worker count (the
    engine averages gradients over workers), so the gradient is that of the global batch's
    mean CE for any micro-batch size, accumulation and worker count.
    """
    accumulation = engine.gradient_accumulation_steps()
    total = torch.tensor(max(answer_tokens(batch), 1))
    share, norm = 0.0, None
    parts = micro_batches(batch, rank, world_size, accumulation)
    for i, part in enumerate(parts):
        part = {k: v.to(device) for k, v in part.items()}
        loss = engine(**part, num_items_in_batch=total.to(device)).loss
        share += loss.item()
        # A new tensor (x world_size, exact for 1): the engine's own hook on the model's
        # output would otherwise divide by the accumulation steps a second time.
        engine.backward(loss * float(world_size), scale_wrt_gas=False)
        if i == len(parts) - 1:
            norm = _local_grad_norm(engine)
        engine.step()
    if norm is None:
        norm = _engine_grad_norm(engine)
    return share, norm


def _local_grad_norm(engine) -> float | None:
    """The adapter's gradient norm before clipping (rsLoRA's collapse signal), where
    gradients live on the parameters (ZeRO 0/1); None where ZeRO has moved them."""
    grads = [p.grad for p in engine.module.parameters() if p.requires_grad and p.grad is not None]
    if not grads:
        return None
    return float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g.float()) for g in grads])))


def _engine_grad_norm(engine) -> float | None:
    """The global norm DeepSpeed computed while stepping (ZeRO 2/3 keep gradients sharded)."""
    norm = engine.get_global_grad_norm()
    if norm is None:
        return None
    norm = float(norm)
    return norm if math.isfinite(norm) else None


def _node_name() -> str:
    """Host name plus the Ray node id, so simulated nodes on one machine are told apart."""
    try:
        import ray

        node_id = ray.get_runtime_context().get_node_id() if ray.is_initialized() else None
    except Exception:  # outside Ray (tests, benchmarks)
        node_id = None
    return f"{socket.gethostname()}:{node_id[:8]}" if node_id else socket.gethostname()


def _check_scale_factor(model, lora_cfg) -> None:
    """PEFT's multiplier must be the one the driver records (alpha/r or alpha/sqrt(r));
    no LoRA layer at all means the targets matched nothing."""
    for module in model.modules():
        scaling = getattr(module, "scaling", None)
        if isinstance(scaling, dict) and "default" in scaling:
            expected = scale_factor(float(lora_cfg.alpha), int(lora_cfg.rank), lora_cfg.scaling)
            if not math.isclose(float(scaling["default"]), expected, rel_tol=1e-12):
                raise RuntimeError(f"PEFT scales LoRA by {scaling['default']}, expected {expected}")
            return
    raise ValueError("no LoRA layer found: check lora.target_modules against the model's module names")
