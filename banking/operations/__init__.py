"""Operations behind the gateway: declarations, the registry, plug-ins and upstream services.

A bank's own package declares in-process operations with :func:`operation` and lists
them under the entry-point group ``mpaas.operations`` (see ``examples/``)::

    from pydantic import BaseModel
    from mpaas.banking.operations import operation

    class QuoteIn(BaseModel):
        currency: str

    @operation("com.bank.fx.quote", version=1, input=QuoteIn, min_tier="registered", idempotent=True)
    async def quote(call, params: QuoteIn) -> dict:
        ...
"""

from mpaas.banking.operations.declare import Declared, operation

__all__ = ["Declared", "operation"]
