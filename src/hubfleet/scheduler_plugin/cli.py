"""``hubfleet scheduler-extender``: run the kube-scheduler extender webhook until stopped."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys

from .scoring import DEFAULT_GPU_NODE_LABEL, DEFAULT_GPU_RESOURCE, ScoringError, Weights, parse_weights


def _weights(text: str) -> Weights:
    try:
        return parse_weights(text)
    except ScoringError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def _duration(text: str) -> float:
    units = {"s": 1, "m": 60, "h": 3600}
    number, unit = (text[:-1], text[-1]) if text and text[-1] in units else (text, "s")
    try:
        value = float(number) * units[unit]
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration such as 900, '15m' or '1h'")
    return value


def _gpu_block(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise argparse.ArgumentTypeError(f"--gpu-block: {text!r} is not a number of GPUs (0: plain best fit)")
    return value


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 0 < port < 65536:
        raise argparse.ArgumentTypeError(f"--port: {text!r} is not a TCP port (1-65535)")
    return port


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "scheduler-extender", help="run the kube-scheduler extender (bin-packing, GPU-aware) webhook",
        description="Serve kube-scheduler's extender protocol (POST /filter, POST /prioritize, POST /preempt) plus "
                    "GET /healthz and GET /metrics. Pods are packed (or spread, per profile), GPU nodes are kept for "
                    "GPU pods, a GPU pod goes where it fits best, and preemption picks the idlest user servers. "
                    "Needs read access (list/watch) to pods and nodes.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, as beside "
                                                        "kube-scheduler in the same pod)")
    p.add_argument("--port", type=_port, default=8888, help="port to listen on (default: 8888)")
    p.add_argument("--kubeconfig", help="kubeconfig file (default: in-cluster config when running in a pod, else "
                                        "$KUBECONFIG / ~/.kube/config)")
    p.add_argument("--gpu-resource", default=DEFAULT_GPU_RESOURCE,
                   help=f"extended resource name of GPUs (default: {DEFAULT_GPU_RESOURCE})")
    p.add_argument("--gpu-node-label", default=DEFAULT_GPU_NODE_LABEL,
                   help="KEY=VALUE (or KEY) marking GPU nodes that only pods requesting a GPU may use; '' disables "
                        f"(default: {DEFAULT_GPU_NODE_LABEL})")
    p.add_argument("--weights", type=_weights, default=Weights(),
                   help="score weights, e.g. cpu=1,memory=1,gpu=3,lifetime=2,zone=2 (the default)")
    p.add_argument("--gpu-block", type=_gpu_block, default=2,
                   help="the largest GPU request of a profile: GPU pods are placed so that as many GPU nodes as "
                        "possible keep room for one, and no GPU pod waits for a scale-up while enough GPUs are free "
                        "but scattered; 0: plain best fit (fewer GPU-node-hours, some such waits) (default: 2)")
    p.add_argument("--protect-active", type=_duration, default=900.0,
                   help="the preempt verb never chooses a user server active within this window (default: 15m); "
                        "activity is read from the pod annotation hubfleet.io/last-activity, else from the hub "
                        "(--hub-api-url)")
    p.add_argument("--user-namespace", action="append", default=[], metavar="NAMESPACE",
                   help="a namespace of user servers (repeat for several; z2jh: the release's namespace): the "
                        "preempt verb chooses victims only among pods labelled component=singleuser-server there "
                        "and reads activity annotations only from them; without it nobody is preempted")
    p.add_argument("--hub-api-url", help="JupyterHub REST API (e.g. http://hub:8081/hub/api) to read each ready "
                                         "server's last activity from, with the token in $JUPYTERHUB_API_TOKEN "
                                         "(scopes list:users, read:users:activity, read:servers)")
    p.add_argument("--hub-activity-interval", type=_duration, default=60.0,
                   help="how often to read the hub's activity (default: 60s); a list older than 3x this is "
                        "treated as unknown (no victims)")
    p.add_argument("--max-body-bytes", type=int, default=64 * 1024 * 1024,
                   help="largest request body accepted (default: 64 MiB; larger ones are answered 413)")
    p.add_argument("--event-loop", choices=("auto", "uvloop", "asyncio"), default="asyncio",
                   help="event loop: asyncio's own (the default: with aiohttp's low-level server it measured a "
                        "lower p99 than uvloop in bench_extender), uvloop, or 'auto' (uvloop when installed)")
    p.add_argument("--log-level", default="INFO")
    p.set_defaults(func=run)


def loop_factory(choice: str):
    """The event loop factory for `choice` ("auto": uvloop's when it is installed, else asyncio's), or a message
    saying why it cannot be had."""
    if choice == "asyncio":
        return asyncio.new_event_loop
    try:
        import uvloop
    except ImportError:
        if choice == "uvloop":
            return "--event-loop uvloop: uvloop is not installed (pip install uvloop), or use --event-loop asyncio"
        return asyncio.new_event_loop
    return uvloop.new_event_loop


def run(args) -> int:
    from .app import Extender, serve
    from .cache import ClusterCache
    from .scoring import Policy

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        policy = Policy(gpu_resource=args.gpu_resource, gpu_node_label=args.gpu_node_label, weights=args.weights,
                        protect_active=args.protect_active, gpu_block=args.gpu_block,
                        user_namespaces=tuple(args.user_namespace))
    except ScoringError as e:
        print(f"hubfleet scheduler-extender: {e}", file=sys.stderr)
        return 2
    if args.kubeconfig and not os.path.isfile(args.kubeconfig):
        print(f"hubfleet scheduler-extender: --kubeconfig {args.kubeconfig}: no such file", file=sys.stderr)
        return 2
    hub_activity = poller = None
    if args.hub_api_url:
        from .activity import HubActivity
        from .hubpoll import HubPoller

        token = os.environ.get("JUPYTERHUB_API_TOKEN", "")
        if not token:
            print("hubfleet scheduler-extender: --hub-api-url needs the hub API token in $JUPYTERHUB_API_TOKEN",
                  file=sys.stderr)
            return 2
        if not args.hub_api_url.startswith(("http://", "https://")) or args.hub_activity_interval <= 0:
            print("hubfleet scheduler-extender: --hub-api-url must be an http(s) URL and --hub-activity-interval "
                  "positive", file=sys.stderr)
            return 2
        hub_activity = HubActivity(max_age=3 * args.hub_activity_interval)
        poller = HubPoller(args.hub_api_url, token, hub_activity, interval=args.hub_activity_interval,
                           timeout=min(10.0, max(1.0, args.hub_activity_interval)))
    if not policy.user_namespaces:
        logging.getLogger("hubfleet.scheduler_plugin").warning(
            "no --user-namespace given: the preempt verb chooses no victims (nobody is preempted)")
    factory = loop_factory(args.event_loop)
    if isinstance(factory, str):
        print(f"hubfleet scheduler-extender: {factory}", file=sys.stderr)
        return 2
    extender = Extender(policy, ClusterCache(), hub_activity=hub_activity)
    try:
        with asyncio.Runner(loop_factory=factory) as runner:
            runner.run(serve(extender, host=args.host, port=args.port, kubeconfig=args.kubeconfig,
                             max_body_bytes=args.max_body_bytes, hub_poller=poller))
    except OSError as e:
        print(f"hubfleet scheduler-extender: cannot listen on {args.host}:{args.port}: {e.strerror}", file=sys.stderr)
        return 1
    except Exception as e:  # kubeconfig problems and the like: one clear line, no traceback
        if type(e).__name__ == "ConfigException":
            print(f"hubfleet scheduler-extender: cannot load the Kubernetes configuration: {e}", file=sys.stderr)
            return 2
        raise
    return 0
