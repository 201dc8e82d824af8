"""``python -m rlm_jupyter.testing serve --demo --port 8765``: run the scripted server.

The first line on stdout is the base URL (scripts read it); hints go to stderr.
"""

from __future__ import annotations

import argparse
import sys
import threading


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m rlm_jupyter.testing",
        description="A scripted OpenAI-compatible server for tests, notebooks and Binder.")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve until interrupted (Ctrl-C)")
    serve.add_argument("--demo", action="store_true",
                       help="use the generic demo policy (the default, and the only policy "
                            "available from the command line)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=0, help="0 picks a free port (default)")
    serve.add_argument("--latency-s", type=float, default=0.0,
                       help="seconds before the first byte of each response")
    serve.add_argument("--tokens-per-s", type=float, default=None,
                       help="simulated decoding speed")
    serve.add_argument("--model-name", default="scripted")
    args = parser.parse_args(argv)

    from ._server import ScriptedServer

    server = ScriptedServer.demo(host=args.host, port=args.port, latency_s=args.latency_s,
                                 tokens_per_s=args.tokens_per_s, model_name=args.model_name,
                                 strict=False)
    try:
        server.start()
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(server.base_url, flush=True)
    print(f"model: {server.model}   api_key: scripted   (Ctrl-C stops)\n"
          f"e.g. RLM_MODEL={server.model} RLM_API_BASE={server.base_url} RLM_API_KEY=scripted",
          file=sys.stderr, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
