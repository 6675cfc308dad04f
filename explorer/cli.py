"""The command line: ``decoding-explorer trace`` prints a readable summary of a run and can save its trace."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from explorer.errors import ExplorerError, ParameterError
from explorer.param_types import Choice
from explorer.params import PARAMS, Param
from explorer.speculation import speculation_stats
from explorer.strategies import REGISTRY, names
from explorer.trace import Trace

__all__ = ["build_parser", "flag", "main", "summarize"]


def flag(name: str) -> str:
    """The command-line flag of parameter ``name``: ``--num-beams``."""
    return "--" + name.replace("_", "-")


def _add_param(parser: argparse.ArgumentParser, p: Param) -> None:
    """The flag of one parameter of the table (none for a Python function: its ``via`` parameters have flags)."""
    widget = p.check.widget
    if widget == "none":
        return
    text = f"{p.help} ({p.check.allowed})"
    flags = [flag(p.name)] + ([flag(p.alias)] if p.alias else [])
    if widget == "bool":
        parser.add_argument(*flags, action=argparse.BooleanOptionalAction, default=None, help=text)
    elif widget == "lines":
        parser.add_argument(*flags, action="append", default=None, metavar="TEXT", help=text + "; repeatable")
    elif widget == "choice":
        values = [p.check.show(v) for v in p.check.values] if isinstance(p.check, Choice) else []
        parser.add_argument(*flags, type=str.lower, choices=values, default=None, metavar="{" + ",".join(
            values) + "}", help=text)
    else:
        parser.add_argument(*flags, default=None, metavar="X", help=text)


def _value(p: Param, given: str | list[str] | bool) -> Any:
    """A flag's value as ``explorer.decode`` takes it (what does not parse is refused there, naming the flag)."""
    if isinstance(given, bool):
        return given
    if isinstance(given, list):
        return tuple(item for text in given for item in p.check.parse_flag(text))
    return p.check.parse(given)


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and documentation)."""
    parser = argparse.ArgumentParser(prog="decoding-explorer", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    trace = sub.add_parser("trace", help="decode a prompt and summarise (or save) every step")
    trace.add_argument("--model", default="smollm2-135m", help="model name or local folder (default smollm2-135m)")
    trace.add_argument("--dtype", default="float32", metavar="{float32,bfloat16,float16}",
                       help="weight precision (default float32, which matches the reference; see docs/precision.md)")
    trace.add_argument("--prompt", required=True, help="prompt text, tokenized as written")
    trace.add_argument("--chat", action="store_true", help="wrap the prompt in the model's chat template")
    trace.add_argument("--strategy", choices=names(), default="beam",
                       help="; ".join(f"{s.name}: {s.summary}" for s in REGISTRY.values()))
    for p in PARAMS:
        _add_param(trace, p)
    trace.add_argument("--constraint-phrase", action="append", default=[], metavar="TEXT",
                       help="a phrase that must appear, tokenized as written (repeatable)")
    trace.add_argument("--constraint-any", action="append", default=[], metavar="TEXT|TEXT",
                       help="one of several phrases must appear (repeatable)")
    trace.add_argument("--json", metavar="PATH", help="write the trace as JSON")
    trace.add_argument("--html", metavar="PATH", help="write the run as one self-contained HTML page (trees, results, "
                       "candidates, texts coloured by uncertainty, the trace; no network needed to open it)")
    trace.add_argument("--theme", choices=("light", "dark"), default="light", help="the HTML page's theme")
    sub.add_parser("models", help="list the built-in models")
    sub.add_parser("prepare", help="prepare the default model's cache (SmolLM2 from its GGUF)")
    return parser


def _decode(args: argparse.Namespace) -> Trace:
    """Run the decode the arguments describe."""
    import explorer

    params = {p.name: _value(p, getattr(args, p.name)) for p in PARAMS
              if p.check.widget != "none" and getattr(args, p.name) is not None}
    constraints: list[Any] = list(args.constraint_phrase)
    for alternatives in args.constraint_any:
        options = alternatives.split("|")
        if len(options) < 2 or any(not o for o in options):
            raise explorer.ParameterError("--constraint-any", alternatives, "two or more non-empty phrases: A|B")
        constraints.append(options)
    model = explorer.load_model(args.model, dtype=args.dtype)
    return explorer.decode(model, args.prompt, args.strategy, chat=args.chat, constraints=constraints, **params)


def summarize(trace: Trace) -> str:
    """A readable summary: the run, the search in numbers, and the results best first."""
    hyps = sum(len(s.hypotheses) for s in trace.steps)
    cands = sum(len(h.candidates) for s in trace.steps for h in s.hypotheses)
    finished = sum(len(s.finished) for s in trace.steps)
    lines = [
        f"model {trace.model} | strategy {trace.strategy} | prompt {len(trace.prompt_token_ids)} tokens",
        f"{len(trace.steps)} steps, {hyps} hypotheses, {cands} candidates recorded, {finished} finished entries;"
        f" stopped: {trace.stop_reason}; {trace.total_ms / 1000:.2f} s",
    ]
    if trace.processors:
        lines.append("processors: " + ", ".join(trace.processors))
    rounds = speculation_stats(trace)
    if rounds is not None:
        lines.append(f"speculation: {rounds.forwards} target forwards for {rounds.tokens} tokens "
                     f"({rounds.tokens_per_forward:.2f} per forward); {rounds.accepted} of {rounds.drafted} drafted "
                     f"tokens accepted ({rounds.acceptance:.0%}); draft {rounds.draft_ms / 1000:.2f} s, target "
                     f"{rounds.target_ms / 1000:.2f} s")
    lines.append(f"{'rank':>4}  {'score':>9}  {'tokens':>6}  {'step':>4}  {'eos':>3}  {'constraints':>11}  text")
    for r in trace.results:
        sat = "-" if r.constraints_satisfied is None else ("met" if r.constraints_satisfied else "NOT met")
        text = r.text.replace("\n", "\\n")
        lines.append(f"{r.rank:>4}  {r.score:>9.4f}  {len(r.token_ids):>6}  {r.finished_step:>4}  "
                     f"{'yes' if r.ended_with_eos else 'no':>3}  {sat:>11}  {text}")
    return "\n".join(lines)


def _check_output(path: str, name: str) -> None:
    """Refuse, before decoding, a file that cannot be written: a folder, or one in a folder that does not exist."""
    target = Path(path)
    if target.is_dir():
        raise ParameterError(name, path, "a file path, not a folder")
    if not target.parent.is_dir():
        raise ParameterError(name, path, "a file in an existing folder")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; bad input prints one line and exits 2, never a traceback."""
    args = build_parser().parse_args(argv)
    try:
        if args.command == "models":
            from explorer.models import available_models

            for name, text in available_models().items():
                print(f"{name:<16} {text}")
            return 0
        if args.command == "prepare":
            from explorer.models.smollm2 import prepare_smollm2

            print(prepare_smollm2(verbose=True))
            return 0
        if args.html:
            _check_output(args.html, "--html")
        trace = _decode(args)
        print(summarize(trace))
        if args.json:
            trace.to_json(args.json)
            print(f"trace written to {args.json}")
        if args.html:
            from explorer.export import export_html

            size = len(export_html(trace, args.html, theme=args.theme).encode("utf-8"))
            print(f"page written to {args.html} ({size / 2**20:.1f} MiB)")
        return 0
    except ExplorerError as error:
        print(f"decoding-explorer: error: {error}", file=sys.stderr)
        return 2
    except OSError as error:
        print(f"decoding-explorer: error: {error.strerror or error}: {error.filename or ''}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("decoding-explorer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
