"""``hubfleet-devcluster``: run the one-machine Kubernetes stand-in until stopped."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

import yaml

from .api import APIError
from .kubelet import DEFAULT_IMAGES, ImageMapping
from .nodes import NodesFileError, default_nodes, load_nodes_file
from .scheduler import ExtenderConfig


def _parse_extender(text: str) -> tuple[str, ExtenderConfig]:
    try:
        return ExtenderConfig.parse(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"--extender {e}") from None


def _load_images(path: str) -> tuple[ImageMapping, ...]:
    try:
        data = yaml.safe_load(Path(path).read_text()) or {}
    except OSError as e:
        raise SystemExit(f"hubfleet-devcluster: cannot read images file {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise SystemExit(f"hubfleet-devcluster: {path}: not valid YAML: {e}") from e
    items = data.get("images", data) if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise SystemExit(f"{path}: expected a list of images ({{pattern, command, args, home, env}})")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("pattern"), str):
            raise SystemExit(f"{path}: images[{i}].pattern: expected a glob pattern string, got {item!r}")
        for key in ("command", "args"):  # a string here would run its first character
            value = item.get(key)
            if value is not None and (not isinstance(value, list) or not all(isinstance(a, str) for a in value)):
                raise SystemExit(f"{path}: images[{i}].{key}: expected a list of strings such as "
                                 f"[\"python3\", \"-m\", \"http.server\"], got {value!r}")
        out.append(ImageMapping(pattern=item["pattern"], command=tuple(item.get("command") or ()),
                                args=tuple(item.get("args") or ()), home=item.get("home"),
                                env={str(k): str(v) for k, v in (item.get("env") or {}).items()}))
    return tuple(out) + DEFAULT_IMAGES


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a number of seconds above 0, got {text!r}")
    return value


def _by_scheduler(entries: list[tuple[str, ExtenderConfig]]) -> dict[str, list[ExtenderConfig]]:
    out: dict[str, list[ExtenderConfig]] = {}
    for name, config in entries:
        out.setdefault(name, []).append(config)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="hubfleet-devcluster",
        description="Run a one-machine stand-in for Kubernetes: writes STATE/kubeconfig and runs until stopped. "
                    "Pods run as local processes on 127.0.X.Y; PVCs are directories under STATE/volumes.")
    p.add_argument("--state", required=True, help="state directory (kubeconfig, volumes, pod logs)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0, help="API port (default: a free port)")
    p.add_argument("--nodes", help="YAML nodes file (default: 3 CPU nodes + 1 GPU node)")
    p.add_argument("--images", help="YAML list of extra image mappings {pattern, command, args, home, env}")
    p.add_argument("--extender", action="append", type=_parse_extender, default=[],
                   help="SCHEDULER_NAME=URL_PREFIX[,ignorable=false,nodeCacheCapable=false,weight=N,...]: place pods "
                        "with that schedulerName through a kube-scheduler extender (filter/prioritize/preempt over "
                        "HTTP); repeat a name for several extenders, called in order as kube-scheduler calls its "
                        "extenders[] entries")
    p.add_argument("--fault-error-rate", type=float, default=0.0, help="fraction of API requests answering 429/500")
    p.add_argument("--fault-delay", type=float, default=0.0, help="seconds of delay on a fraction of requests")
    p.add_argument("--fault-delay-rate", type=float, default=0.0)
    p.add_argument("--restart-backoff", type=float, default=10.0,
                   help="seconds before a crashed container's first restart, doubled per restart up to 300 "
                        "(kubelet: 10)")
    p.add_argument("--image-pull-backoff", type=_positive_seconds, default=10.0,
                   help="seconds before the second pull of an image that could not be pulled, doubled per failed "
                        "pull up to 300 (kubelet: 10)")
    p.add_argument("--missing-image", action="append", default=[], metavar="PATTERN",
                   help="glob pattern of images the registry does not have: their pulls fail (ErrImagePull, then "
                        "ImagePullBackOff) even when an image mapping matches; repeat for several (images with no "
                        "mapping are missing too)")
    p.add_argument("--log-level", default="INFO")
    return p


def main(argv: list[str] | None = None) -> int:
    return run(build_parser().parse_args(argv))


def run(args) -> int:
    from .app import DevCluster, run_forever

    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    try:
        nodes = load_nodes_file(args.nodes) if args.nodes else default_nodes()
    except NodesFileError as e:
        print(f"hubfleet-devcluster: invalid nodes file: {e}", file=sys.stderr)
        return 2
    images = _load_images(args.images) if args.images else DEFAULT_IMAGES
    try:
        cluster = DevCluster(args.state, host=args.host, port=args.port, nodes=nodes,
                             extenders=_by_scheduler(args.extender), images=images,
                             faults={"error_rate": args.fault_error_rate, "delay": args.fault_delay,
                                     "delay_rate": args.fault_delay_rate, "missing_images": args.missing_image},
                             restart_backoff=args.restart_backoff, image_pull_backoff=args.image_pull_backoff)
    except APIError as e:
        print(f"hubfleet-devcluster: invalid fault option: {e.message}", file=sys.stderr)
        return 2
    asyncio.run(run_forever(cluster))
    return 0


if __name__ == "__main__":
    sys.exit(main())
