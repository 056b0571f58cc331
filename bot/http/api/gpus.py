"""`/gpus` and `/healthz`: what the GPU probe sees, and whether the service is up."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from bot.http.api.schemas import GpuList, Health, gpu_out
from bot.http.auth import CurrentUser
from bot.http.context import ApiContext, get_context
from runner import leases

Ctx = Annotated[ApiContext, Depends(get_context)]

router = APIRouter(tags=["gpus"])


@router.get("/gpus")
async def list_gpus(ctx: Ctx, user: CurrentUser) -> GpuList:
    """The GPUs (and the CPU pseudo-device), the job holding each, and whether something else runs on it."""
    holding = await ctx.runtime.store.holding()
    holders = leases.held(holding)
    foreign = ctx.runtime.supervisor.foreign_busy(holding)
    snapshot = ctx.runtime.probe.snapshot()
    return GpuList(
        gpus=[gpu_out(g, holders.get(g.index), g.index in foreign) for g in snapshot.devices()], source=snapshot.source
    )


@router.get("/healthz", tags=["health"])
async def healthz(ctx: Ctx) -> Health:
    """Up, with the store answering (no token needed)."""
    return Health(ok=True, jobs_active=len(await ctx.runtime.store.active()))
