"""Ask the account authority: one `OrderCommand` over NATS request/reply, one `OrderReply` back.

Every order source (MCP order tools in any process, the bridge, the agent, the operator) uses this;
none of them decides on its own. When no authority answers, `AuthorityUnavailable` says so and
nothing was placed.
"""

from __future__ import annotations

from nats.aio.client import Client as NATS
from nats.errors import NoRespondersError
from nats.errors import TimeoutError as NatsTimeout

from schemas.account import OrderCommand, OrderReply, request_subject

REQUEST_TIMEOUT_S = 5.0


class AuthorityUnavailable(RuntimeError):
    code = "authority_unavailable"


async def ask(nc: NATS, command: OrderCommand, timeout: float = REQUEST_TIMEOUT_S) -> OrderReply:
    try:
        msg = await nc.request(request_subject(command.account), command.model_dump_json().encode(), timeout=timeout)
    except NoRespondersError as exc:
        raise AuthorityUnavailable(
            "the order authority is not running (no responder on the bus): start the system with "
            "`trading-mcp up` (or `trading-mcp authority`); nothing was placed"
        ) from exc
    except (NatsTimeout, TimeoutError) as exc:
        raise AuthorityUnavailable(
            f"the order authority did not answer within {timeout:g} s; nothing is known to be placed — "
            "retry with the same client_order_id (a retry never places a second order)"
        ) from exc
    reply = OrderReply.model_validate_json(msg.data)
    if reply.code == AuthorityUnavailable.code:
        # an authority answered but could not decide (its journal append failed, it is handing the account over):
        # nothing was recorded, so this is no outcome — the caller retries (the bridge does not ack the signal)
        raise AuthorityUnavailable(reply.message)
    return reply
