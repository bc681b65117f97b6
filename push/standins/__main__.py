"""Run a stand-in for staging or the benchmark.

    python -m mpaas.push.standins apns --port 8443 --tls --cert-out /tmp/apns.pem
    python -m mpaas.push.standins fcm --port 8080 --service-account-out /tmp/sa.json

Stops on SIGINT/SIGTERM and prints the counters.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from pathlib import Path

from mpaas.push.standins.apns import ApnsStandin
from mpaas.push.standins.fcm import FcmStandin


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m mpaas.push.standins", description=__doc__)
    sub = parser.add_subparsers(dest="kind", required=True)
    for kind in ("apns", "fcm"):
        p = sub.add_parser(kind)
        p.add_argument("--host", default="127.0.0.1")
        p.add_argument("--port", type=int, default=0)
        p.add_argument("--delay", type=float, default=0.0, help="seconds before every answer")
        p.add_argument("--error-rate", type=float, default=0.0, help="share of requests failing transiently")
        p.add_argument("--error-status", type=int, default=503)
        p.add_argument("--retry-after", default=None, help="Retry-After value on injected errors")
        p.add_argument("--dead-tokens", type=Path, default=None, help="file with one dead token per line")
        p.add_argument("--no-record", action="store_true", help="do not keep request payloads")
    apns = sub.choices["apns"]
    apns.add_argument("--tls", action="store_true")
    apns.add_argument("--cert-out", type=Path, default=None, help="write the self-signed certificate here")
    fcm = sub.choices["fcm"]
    fcm.add_argument("--project", default="mpaas-test")
    fcm.add_argument("--service-account-out", type=Path, default=None)
    return parser


def _dead_tokens(path: Path | None) -> list[str]:
    if path is None:
        return []
    return [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


async def _run(args: argparse.Namespace) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    record = not args.no_record
    if args.kind == "apns":
        apns = ApnsStandin(record_payloads=record)
        apns.response_delay = args.delay
        apns.dead_tokens.update(dict.fromkeys(_dead_tokens(args.dead_tokens), 1_700_000_000_000))
        if args.error_rate:
            reason = "TooManyRequests" if args.error_status == 429 else "ServiceUnavailable"
            apns.inject(args.error_status, reason, rate=args.error_rate, retry_after=args.retry_after)
        await apns.start(args.host, args.port, tls=args.tls)
        if args.cert_out is not None:
            args.cert_out.write_bytes(apns.cert_pem)
        print(f"APNs stand-in on {'https' if args.tls else 'http'}://{args.host}:{apns.port}", flush=True)
        await stop.wait()
        await apns.stop()
        print(
            f"requests={len(apns.requests)} connections={apns.connections_accepted} "
            f"cpu_seconds={apns.cpu_seconds:.3f}",
            flush=True,
        )
        return
    fcm = FcmStandin(record_payloads=record)
    fcm.response_delay = args.delay
    fcm.dead_tokens.update(_dead_tokens(args.dead_tokens))
    if args.error_rate:
        code = "QUOTA_EXCEEDED" if args.error_status == 429 else "UNAVAILABLE"
        fcm.inject(args.error_status, code, rate=args.error_rate, retry_after=args.retry_after)
    await fcm.start(args.host, args.port)
    base_url = fcm.base_url
    if args.service_account_out is not None:
        fcm.write_service_account(args.service_account_out, base_url=base_url, project_id=args.project)
    print(f"FCM stand-in on {base_url} (FCM_END_POINT_BASE={base_url}/v1/projects)", flush=True)
    await stop.wait()
    await fcm.stop()
    print(
        f"requests={len(fcm.requests)} token_requests={fcm.token_requests} cpu_seconds={fcm.cpu_seconds:.3f}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> int:
    asyncio.run(_run(_parser().parse_args(argv)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
