"""Example operations a bank writes: declared with mpaas.banking.operations.operation."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from mpaas.banking.operations import operation
from mpaas.gateway.operation import Call

Currency = Literal["CNY", "USD", "EUR", "HKD"]
#: Parts per million of CNY for one unit of each currency (a fixed, made-up table).
RATES_PPM = {"CNY": 1_000_000, "USD": 7_100_000, "EUR": 7_700_000, "HKD": 910_000}


class QuoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    sell: Currency
    buy: Currency
    amount: int = Field(gt=0, le=10**12, description="minor units of the sold currency")


class QuoteOut(BaseModel):
    sell: Currency
    buy: Currency
    amount: int
    buy_amount: int


@operation(
    "com.example.fx.quote",
    version=1,
    input=QuoteIn,
    output=QuoteOut,
    min_tier="visitor",
    session=False,
    rate="60/m",
    idempotent=True,
)
async def quote(call: Call, params: QuoteIn) -> QuoteOut:
    """A foreign-exchange quote from a fixed table."""
    buy_amount = params.amount * RATES_PPM[params.sell] // RATES_PPM[params.buy]
    return QuoteOut(sell=params.sell, buy=params.buy, amount=params.amount, buy_amount=buy_amount)


class SubscribeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    product: str = Field(pattern=r"[a-z0-9-]{1,64}")
    amount: int = Field(gt=0, le=10**12)


@operation("com.example.wealth.subscribe", version=1, input=SubscribeIn, min_tier="full")
async def subscribe(call: Call, params: SubscribeIn) -> dict[str, object]:
    """Subscribe to a wealth product (full customers only)."""
    assert call.principal is not None
    return {"product": params.product, "amount": params.amount, "user_id": call.principal.user_id}


OPERATIONS = [quote, subscribe]
