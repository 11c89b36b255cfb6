"""SPADE's synchronized BatchNorm under DDP on CPU: two gloo processes, each with half the batch, give the
output, the input gradient and the running statistics of one BatchNorm over the whole batch; and
`model=spade trainer=ddp_cpu` trains end to end with it."""

from __future__ import annotations

import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

from ganforge.nets.norms import CrossProcessBatchNorm, synchronize_batchnorm
from tests.conftest import SPADE_TINY, train_checkpoint


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _half_batch_worker(rank: int, port: int, x: torch.Tensor, grad_out: torch.Tensor, out: dict):
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    try:
        bn = synchronize_batchnorm(nn.Sequential(nn.BatchNorm2d(3, affine=False)), torch.device("cpu"))
        assert isinstance(bn[0], CrossProcessBatchNorm)
        half = x.chunk(2)[rank].clone().requires_grad_(True)
        y = bn(half)
        y.backward(grad_out.chunk(2)[rank])
        out[rank] = (y.detach(), half.grad, bn[0].running_mean.clone(), bn[0].running_var.clone())
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
def test_two_processes_normalize_by_the_global_batch():
    torch.manual_seed(0)
    x = torch.randn(6, 3, 5, 4) * torch.tensor([1.0, 3.0, 0.5]).view(1, 3, 1, 1) + torch.tensor([0.0, 2.0, -1.0]).view(1, 3, 1, 1)
    x[3:] += 1.5  # the two halves differ: per-process statistics would not match the global ones
    grad_out = torch.randn_like(x)
    with mp.Manager() as manager:
        out = manager.dict()
        mp.spawn(_half_batch_worker, args=(free_port(), x, grad_out, out), nprocs=2, join=True)
        results = dict(out)
    whole = nn.BatchNorm2d(3, affine=False)
    xg = x.clone().requires_grad_(True)
    y = whole(xg)
    y.backward(grad_out)
    assert torch.allclose(torch.cat([results[0][0], results[1][0]]), y.detach(), atol=1e-5)
    assert torch.allclose(torch.cat([results[0][1], results[1][1]]), xg.grad, atol=1e-5)
    for rank in (0, 1):
        assert torch.allclose(results[rank][2], whole.running_mean, atol=1e-6)
        assert torch.allclose(results[rank][3], whole.running_var, atol=1e-5)
    per_process = nn.BatchNorm2d(3, affine=False)(x[:3])
    assert not torch.allclose(per_process, y[:3], atol=1e-2)  # what an unsynchronized BatchNorm would give


def test_without_a_process_group_it_is_plain_batchnorm():
    x = torch.randn(4, 3, 6, 6)
    plain = nn.BatchNorm2d(3)
    nn.init.normal_(plain.weight)
    synced = synchronize_batchnorm(nn.Sequential(plain), torch.device("cpu"))[0]
    reference = nn.BatchNorm2d(3)
    reference.load_state_dict(synced.state_dict())
    assert torch.equal(synced(x), reference(x)) and torch.equal(synced.running_var, reference.running_var)


@pytest.mark.slow
def test_spade_trains_with_ddp_on_two_cpu_processes(tmp_path_factory):
    ckpt = train_checkpoint(
        tmp_path_factory,
        "spade_ddp",
        [
            *SPADE_TINY,
            "trainer=ddp_cpu",
            "data.batch_size=2",
            "callbacks.rich_progress_bar=null",
        ],
    )
    state = torch.load(ckpt, map_location="cpu", weights_only=True)
    assert state["global_step"] >= 8 and state["global_step"] % 2 == 0  # G then D, each batch, 2 epochs
    bn_counts = [v for k, v in state["state_dict"].items() if k.startswith("netG.") and k.endswith("num_batches_tracked")]
    # G runs in train mode twice a batch (the G step, then the D step's fake without grad), as pix2pix_model.py
    assert bn_counts and all(int(c) == state["global_step"] for c in bn_counts)
