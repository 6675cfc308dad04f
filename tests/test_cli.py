"""The CLI: a readable summary, a JSON trace on request, and exit 2 with one line (no traceback) on bad input."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from explorer.cli import main


def _contains(tokens: list[int], needle: list[int]) -> bool:
    """Whether ``needle`` occurs contiguously in ``tokens``."""
    return any(tokens[i : i + len(needle)] == needle for i in range(len(tokens) - len(needle) + 1))


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "explorer.cli", *args], capture_output=True, text=True,
                          timeout=300, stdin=subprocess.DEVNULL, check=False)


def test_trace_prints_a_summary_and_writes_json(tmp_path: Path) -> None:
    out = tmp_path / "trace.json"
    done = run_cli("trace", "--model", "tiny-random", "--prompt", "The cake needs", "--strategy", "constrained",
                   "--num-beams", "3", "--max-new-tokens", "6", "--constraint-phrase", " flour",
                   "--constraint-any", " sugar| eggs", "--json", str(out))
    assert done.returncode == 0, done.stderr
    assert "strategy constrained" in done.stdout
    assert "rank" in done.stdout
    doc = json.loads(out.read_text())
    assert {"prompt_token_ids", "params", "steps", "results"} <= doc.keys()
    phrase, either = doc["constraints"]
    assert (phrase["text"], either["texts"]) == (" flour", [" sugar", " eggs"])
    best = doc["results"][0]
    assert _contains(best["token_ids"], phrase["token_ids"])  # six tokens are room enough for both
    assert any(_contains(best["token_ids"], option) for option in either["options"])
    assert best["constraints_satisfied"] is True
    assert re.search(r"^ +0 .* met ", done.stdout, re.MULTILINE)  # and the summary says so
    assert doc["params"]["num_beams"] == 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--num-beams", "0"], "num_beams=0 is invalid"),
        (["--strategy", "diverse", "--num-beams", "4", "--num-beam-groups", "3"], "num_beam_groups=3"),
        (["--diversity-penalty", "1.0"], "diversity_penalty=1.0"),
        (["--strategy", "sample", "--top-p", "2"], "top_p=2.0 is invalid"),
        (["--strategy", "sample", "--temperature", "0"], "temperature=0.0 is invalid"),
        (["--max-new-tokens", "-3"], "max_new_tokens=-3"),
        (["--strategy", "constrained", "--constraint-phrase", ""], "constraint='' is invalid"),
        (["--strategy", "constrained", "--constraint-any", "a"], "two or more"),
        (["--model", "no-such-model"], "unknown model 'no-such-model'"),
        (["--early-stopping", "maybe"], "invalid choice"),
        (["--strategy", "bogus"], "invalid choice"),
    ],
)
def test_bad_input_exits_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    base = ["trace", "--model", "tiny-random", "--prompt", "Hello"]
    if "--model" in args:
        base = ["trace", "--prompt", "Hello"]
    with pytest.raises(SystemExit) as exited:
        sys.exit(main([*base, *args]))
    assert exited.value.code == 2
    captured = capsys.readouterr()
    assert message in captured.err
    assert "Traceback" not in captured.err
    assert captured.out == ""


def test_a_real_process_exits_2_without_traceback() -> None:
    done = run_cli("trace", "--model", "tiny-random", "--prompt", "Hello", "--num-beams", "0")
    assert done.returncode == 2
    assert done.stderr.strip() == "decoding-explorer: error: num_beams=0 is invalid: expected an integer from 1 to 64"
    assert done.stdout == ""


def test_empty_prompt_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "--model", "tiny-random", "--prompt", ""]) == 2
    assert "prompt='' is invalid" in capsys.readouterr().err


def test_unwritable_json_path_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["trace", "--model", "tiny-random", "--prompt", "Hi", "--max-new-tokens", "2",
                 "--json", str(tmp_path / "missing" / "dir" / "t.json")])
    assert code == 2
    assert "error" in capsys.readouterr().err


def test_models_lists_the_built_in_models(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    listed = capsys.readouterr().out
    assert "smollm2-135m" in listed
    assert "tiny-random" in listed


def test_the_seed_s_remaining_processors_have_flags(tmp_path: Path) -> None:
    """Every list-valued flag repeats; phrases are tokenized as written, [ids] are ids; the trace records ids."""
    out = tmp_path / "trace.json"
    code = main(["trace", "--model", "tiny-random", "--prompt", "Hello", "--strategy", "beam", "--max-new-tokens", "5",
                 "--sequence-bias", " the = 5", "--bad-words-ids", "[12, 13]", "--bad-words-ids", " of",
                 "--stop-strings", "the", "--remove-invalid-values", "--exponential-decay-length-penalty", "2, 1.5",
                 "--suppress-tokens", "[7]", "--forced-eos-token-id", "[2]", "--min-length", "3",
                 "--renormalize-logits", "--max-time", "60", "--json", str(out)])
    assert code == 0
    doc = json.loads(out.read_text())
    p = doc["params"]
    assert p["sequence_bias"] == [[[260], 5.0]]
    assert p["bad_words_ids"] == [[12, 13], [282]]
    assert (p["stop_strings"], p["suppress_tokens"], p["forced_eos_token_id"]) == (["the"], [7], [2])
    assert (p["remove_invalid_values"], p["renormalize_logits"], p["min_length"]) == (True, True, 3)
    assert (p["exponential_decay_length_penalty"], p["max_time"]) == ([2, 1.5], 60.0)
    assert doc["processors"][0] == "sequence_bias"
    assert doc["processors"][-1] == "renormalize_logits"
    assert doc["results"][0]["ended_with_eos"]  # eos forced at the last step


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--allowed-regex", "("], "allowed_regex='(' is invalid: expected None or a regular expression"),
        (["--sequence-bias", "abc"], "sequence_bias='abc' is invalid: expected (phrase or token ids, finite bias)"),
        (["--exponential-decay-length-penalty", "5"], "exponential_decay_length_penalty='5' is invalid"),
        (["--exponential-decay-length-penalty", "0, 9", "--max-new-tokens", "100"], "a decay factor of at most 1.995"),
        (["--strategy", "greedy", "--epsilon-cutoff", "0.1"], "epsilon_cutoff=0.1 is invalid: expected unset"),
        (["--strategy", "sample", "--eta-cutoff", "1"], "eta_cutoff=1.0 is invalid: expected a number in [0, 1)"),
        (["--max-time", "0"], "max_time=0.0 is invalid: expected a number > 0"),
        (["--allowed-words", "a", "--allowed-regex", "b"], "allowed_regex='b' is invalid: expected unset while"),
    ],
)
def test_bad_values_of_the_new_flags_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["trace", "--model", "tiny-random", "--prompt", "Hello", *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1


def test_assisted_decoding_prints_its_rounds(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["trace", "--model", "tiny-random", "--prompt", "one two", "--strategy", "assisted", "--assistant",
                 "tiny-random", "--assistant-dtype", "bfloat16", "--num-assistant-tokens", "3",
                 "--num-assistant-tokens-schedule", "heuristic", "--assistant-confidence-threshold", "0.1",
                 "--max-new-tokens", "8"]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^speculation: \d+ target forwards for 8 tokens \([\d.]+ per forward\); \d+ of \d+ drafted",
                     out, re.MULTILINE)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--assistant", "tiny-random", "--prompt-lookup-num-tokens", "3"], "one candidate source at a time"),
        (["--assistant-early-exit", "2"], "assistant_early_exit=2 is invalid: expected below the target's 2 layers"),
        (["--assistant-early-exit", "1", "--assistant", "tiny-random"], "one candidate source at a time"),
        (["--assistant", "toy:how-to-generate"], "expected a draft with the target's vocabulary, or transformers "
                                                  "tokenizers on both sides to re-encode through text"),
        (["--assistant", "tiny-random", "--num-beams", "2"], "num_beams=2 is invalid: expected unset"),
        ([], "assistant_model=None is invalid: expected a draft model name, or set prompt_lookup_num_tokens or "
             "assistant_early_exit"),
        (["--prompt-lookup-num-tokens", "3", "--max-matching-ngram-size", "0"], "max_matching_ngram_size=0"),
        (["--assistant", "tiny-random", "--assistant-confidence-threshold", "1"],
         "assistant_confidence_threshold=1.0 is invalid: expected a number in [0, 1)"),
    ],
)
def test_impossible_assisted_combinations_exit_2_with_one_line(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        sys.exit(main(["trace", "--model", "tiny-random", "--prompt", "Hello", "--strategy", "assisted", *args]))
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1
