"""``neuropod serve``: serve packages over the Open Inference Protocol (HTTP and gRPC)."""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import signal
import sys
from types import FrameType

from neuropod.cli.arguments import add_command, add_load_options, checked, load_options
from neuropod.cli.errors import CommandError
from neuropod.options import int_at_least
from neuropod.serving.grpc_fronts import GRPC_FRONTS
from neuropod.serving.options import HttpLimits

#: How often the main thread looks for a stop signal while serving.
_POLL_SECONDS = 0.2

#: ``--http-...`` option -> (metavar, help) for each ``HttpLimits`` field (docs/serving/limits.md).
_HTTP_LIMITS = {
    "max_connections": ("N", "HTTP connections open at once; past it the oldest connection still "
                        "waiting for headers is closed"),
    "header_timeout": ("SECONDS", "time a connection has to deliver a request's headers (408)"),
    "body_timeout": ("SECONDS", "time a request's body has before it must keep up "
                     "--http-body-min-rate (408)"),
    "body_min_rate": ("BYTES", "bytes per second a body must average past --http-body-timeout"),
    "keep_alive_timeout": ("SECONDS", "how long an idle connection is kept open"),
}  # fmt: skip


def add_parser(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Register the ``serve`` command."""
    parser = add_command(
        subparsers,
        "serve",
        run,
        help="serve packages over HTTP and gRPC (KServe v2 / Triton protocol)",
        description="Serve packages, and/or a repository folder of them, with the Open Inference "
        "Protocol (KServe v2) and Triton's extensions, so that tritonclient, perf_analyzer and "
        "KServe tools work unchanged. Stops on Ctrl-C or SIGTERM after the requests in flight.",
        epilog="example: neuropod serve adder.zip --repository models/ --http-port 8000 "
        "--load-option use_ope=true",
    )
    parser.add_argument("paths", metavar="PATH", nargs="*", help="a package to serve under its model name")
    parser.add_argument(
        "--repository",
        metavar="DIR",
        help="a folder of models: packages, or folders with neuropod-serve.json",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--http-port", type=int, default=8000, help="HTTP port; 0 picks one (default: 8000)")
    parser.add_argument("--grpc-port", type=int, default=8001, help="gRPC port; 0 picks one (default: 8001)")
    parser.add_argument("--no-http", action="store_true", help="serve gRPC only")
    parser.add_argument("--no-grpc", action="store_true", help="serve HTTP only")
    parser.add_argument(
        "--auth-token",
        metavar="TOKEN",
        help="require 'Authorization: Bearer TOKEN' on every request but health checks "
        "(default: the NEUROPOD_SERVE_TOKEN environment variable, if set)",
    )
    parser.add_argument(
        "--max-body-size", metavar="BYTES", type=int, default=2**31 - 1, help="largest request accepted"
    )
    parser.add_argument(
        "--grpc-threads", metavar="N", type=checked(int, int_at_least(1)),
        help="gRPC calls run at once (default: one per CPU, or per model slot if more)",
    )  # fmt: skip
    parser.add_argument(
        "--grpc-front", choices=GRPC_FRONTS, default="auto",
        help="the gRPC server: native (pygrpc-native, the grpc-native extra), grpcio, or auto: "
        "native where installed (default: auto)",
    )  # fmt: skip
    parser.add_argument(
        "--drain-timeout", metavar="SECONDS", type=float, default=30.0,
        help="how long to wait for requests in flight when stopping (default: 30)",
    )  # fmt: skip
    parser.add_argument(
        "--server-name", metavar="NAME", default="neuropod",
        help="the server's name in its metadata, for clients that check it (default: neuropod)",
    )  # fmt: skip
    limits = parser.add_argument_group("HTTP connection limits (see docs/serving/limits.md)")
    for field in dataclasses.fields(HttpLimits):
        metavar, text = _HTTP_LIMITS[field.name]
        limits.add_argument(
            f"--http-{field.name.replace('_', '-')}",
            dest=f"http_{field.name}",
            metavar=metavar,
            type=checked(int if field.type == "int" else float, field.metadata["check"]),
            help=f"{text} (default: {field.default:g})",
        )
    add_load_options(parser)


def http_limits(args: argparse.Namespace) -> HttpLimits:
    """The ``--http-...`` limits given, over ``HttpLimits``'s defaults."""
    given = {name: getattr(args, f"http_{name}") for name in HttpLimits.names()}
    return HttpLimits(**{name: value for name, value in given.items() if value is not None})


def run(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM."""
    if not args.paths and not args.repository:
        raise CommandError("nothing to serve: give package paths, --repository DIR, or both")
    if args.no_http and args.no_grpc:
        raise CommandError("--no-http and --no-grpc leave nothing to serve")
    if not args.server_name.strip():
        raise CommandError("--server-name must not be empty")
    from neuropod.serving import Server

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("uvicorn").setLevel(logging.WARNING)  # its start-up lines repeat ours
    server = Server(
        args.paths,
        repository=args.repository,
        host=args.host,
        http_port=None if args.no_http else args.http_port,
        grpc_port=None if args.no_grpc else args.grpc_port,
        load_options=load_options(args),
        auth_token=args.auth_token,
        max_body_size=args.max_body_size,
        grpc_threads=args.grpc_threads,
        drain_timeout=args.drain_timeout,
        server_name=args.server_name,
        grpc_front=args.grpc_front,
        http_limits=http_limits(args),
    )
    # A signal handler runs between two bytecodes of the main thread, which may then hold any
    # lock (an Event's, inside its wait): taking one here can deadlock, so it only records.
    signals: list[int] = []

    def request_stop(signum: int, frame: FrameType | None) -> None:
        signals.append(signum)

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.start()
        for entry in server.core.repository.index():
            reason = f" ({entry['reason']})" if entry["reason"] else ""
            print(f"model {entry['name']}: {entry['state']}{reason}")
        if server.http_port is not None:
            print(f"HTTP on {server.http_url}")
        if server.grpc_port is not None:
            print(f"gRPC on {server.grpc_address} ({server.grpc_front})")
        sys.stdout.flush()
        while not signals:
            if server.wait(_POLL_SECONDS):
                raise CommandError("the server stopped unexpectedly")
        print("stopping: draining requests in flight")
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if server.left_running:
        # Their calls' threads are still running, and Python waits for such threads at exit.
        print(
            f"stopped with calls of {', '.join(server.left_running)} still running after "
            f"--drain-timeout {args.drain_timeout:g} s; exiting without them",
            file=sys.stderr,
        )
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
