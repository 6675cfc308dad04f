"""The beam lattice: where each node of the search tree sits, and its hover text, computed once per trace."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
import pandas as pd

from explorer.figures._paths import Index, index
from explorer.figures._style import (
    adjustment,
    constraint_names,
    esc,
    fmt,
    moved,
    pct,
    pushed_out,
    safe_hover,
    safe_label,
)
from explorer.frames import tree_frames
from explorer.scoring import length_penalty, path_scores
from explorer.trace import Candidate, ConstraintProgress, Trace

__all__ = ["BAND", "TreeLayout", "tree_layout"]

#: Half the height of a slot's band: the leaves of a hypothesis fan out within ``slot ± BAND``.
BAND = 0.42

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Objects = npt.NDArray[np.object_]
Mask = npt.NDArray[np.bool_]


@dataclass(frozen=True, eq=False)
class TreeLayout:
    """Positions, values and hover text of every node of a trace's search tree, one array entry per node.

    Rows follow :func:`explorer.frames.tree_frames`. ``x`` is the node's depth (tokens generated); ``y`` the slot
    of a hypothesis, and for any other node (finished entry, pruned or masked leaf, hypothesis never expanded) a
    place in its parent's band ``slot ± BAND``, in the order of the parent's candidates. ``decided`` is the step
    whose decision made the node (``-1`` for a root; a grafted branch's root: its fork's step), so that
    ``decided <= upto_step`` is the tree after that step. ``parent`` is the parent's row (``-1``: none),
    ``result_rank`` the best result through the node (``-1``). Build one with :func:`tree_layout` and pass it to
    :func:`search_tree` instead of the trace to redraw cheaply.
    """

    strategy: str
    title: str
    key: Objects
    kind: Objects
    x: Floats
    y: Floats
    decided: Ints
    parent: Ints
    score: Floats
    logprob: Floats
    group: Ints
    normalized: Floats
    accepted: npt.NDArray[np.bool_]
    result_rank: Ints
    label: Objects
    hover: Objects
    slots: int
    depth: int
    groups: int

    def __len__(self) -> int:
        return len(self.key)


def _title(trace: Trace) -> str:
    """A default title: the strategy and its main knobs."""
    p = trace.params
    parts = [trace.strategy]
    if int(p.get("num_beams", 1) or 1) > 1:
        parts.append(f"{p['num_beams']} beams")
    if int(p.get("num_beam_groups", 1) or 1) > 1:
        parts.append(f"{p['num_beam_groups']} groups")
    return ", ".join(parts) + f" · {trace.model}"


def _centred(kind: Objects, x: Floats, band: Floats, family: Ints, slotted: Mask) -> Mask:
    """Rows that take the centre of their band: per parent, the first finished entry or unexpanded hypothesis,
    where no hypothesis holds that slot at that depth (a run's last entries stay on their beam's line)."""
    taken = set(zip(x[slotted].tolist(), band[slotted].tolist(), strict=True))
    centred = np.zeros(len(kind), dtype=bool)
    done: set[int] = set()
    for r in np.flatnonzero(~slotted & np.isin(kind, ("finished", "hypothesis"))).tolist():
        place = (float(x[r]), float(band[r]))
        if family[r] not in done and place not in taken:
            centred[r] = True
            done.add(int(family[r]))
            taken.add(place)
    return centred


def _positions(nodes: pd.DataFrame, kind: Objects, parent: Ints, x: Floats) -> Floats:
    """y of every node: its slot for a hypothesis, else a place in the parent's band, fanned out by order."""
    slot = nodes["slot"].to_numpy(dtype="float64", na_value=np.nan)
    slotted = (kind == "hypothesis") & ~np.isnan(slot)
    band = slot.copy()
    from_parent = np.isnan(band) & (parent >= 0)
    band[from_parent] = slot[parent[from_parent]]
    band[np.isnan(band)] = 0.0
    family = np.where(parent >= 0, parent, -2 - np.arange(len(kind)))
    centred = _centred(kind, x, band, family, slotted)
    y = np.where(slotted | centred, band, np.nan)
    loose = np.flatnonzero(~slotted & ~centred)
    if len(loose):
        fam = pd.Series(family[loose])
        j = fam.groupby(fam).cumcount().to_numpy()
        k = fam.map(fam.value_counts()).to_numpy()
        m = k + k % 2  # an even count of places keeps the band's centre free
        y[loose] = band[loose] - BAND + (j + 0.5) * (2 * BAND / m)
    return y


def _candidate(idx: Index, key: str, ident: Any, step: int, parent_id: Any, token_id: Any) -> Candidate | None:
    """The recorded candidate that made a node."""
    if key[0] == "h":
        return idx.made.get(("h", int(ident)))
    if key[0] == "f":
        return idx.made.get(("f", int(ident)))
    if parent_id is pd.NA or token_id is pd.NA:
        return None
    return idx.leaf.get((step, int(parent_id), int(token_id)))


def _candidate_lines(c: Candidate) -> list[str]:
    """Hover lines of a candidate: raw log-prob and probability, each non-zero adjustment, the processed score."""
    lines = [f"log-prob {fmt(c.logprob)} · p {pct(c.logprob)} · vocab rank {c.rank + 1}"]
    if any(value != 0.0 for _, value in c.adjustments):
        lines += [f"  {esc(name)} {adjustment(value)}" for name, value in c.adjustments if value != 0.0]
        lines.append(f"token score {fmt(c.score)}")
    words = moved(c)
    if words is not None:
        lines.append(words)
    return lines


def _constraint_lines(progress: ConstraintProgress, names: list[str]) -> list[str]:
    """Hover lines of a hypothesis's constraint progress: each constraint's status, then the bank."""
    lines = []
    for i, (status, got, length) in enumerate(zip(progress.status, progress.matched, progress.lengths, strict=False)):
        name = esc(names[i]) if i < len(names) else f"#{i}"
        lines.append(f"  {name}: {status.replace('_', ' ')} {got}/{length}")
    done = "all met" if progress.completed else "not all met"
    return ["constraints:", *lines, f"  bank {progress.bank} · {done}"]


def _diversity(idx: Index, fin_id: int) -> float | None:
    """The diversity penalty's part of a finished entry's summed token scores (``None``: none applied)."""
    fin = idx.fins.get(fin_id)
    if fin is None:
        return None
    cands = [idx.made.get(("f", fin.id))]
    hyp, seen = idx.hyps.get(fin.hypothesis), set()
    while hyp is not None and hyp.parent is not None and hyp.id not in seen:  # a loaded trace could loop
        seen.add(hyp.id)
        cands.append(idx.made.get(("h", hyp.id)))
        hyp = idx.hyps.get(hyp.parent)
    return path_scores(cands).diversity


def _finished_lines(idx: Index, ident: Any, score: float, norm: float, lp: float | None, diverse: bool,
                    accepted: Any) -> list[str]:
    """Hover lines of a finished entry's score: how the strategy scored it (the length penalty's formula in the
    beam family), the diversity penalty's part, and whether the pool took it."""
    verdict = "accepted into the pool" if accepted is True else "not accepted"
    fin = idx.fins.get(int(ident)) if ident is not pd.NA else None
    if lp is not None and fin is not None:
        how = f" = {fmt(score)} / {fin.length}^{lp:g} (summed token scores / length^length_penalty)"
    else:
        how = " (summed token scores; no length penalty)"
    lines = [f"<b>score {fmt(norm)}</b>{how} · {verdict}"]
    part = _diversity(idx, int(ident)) if diverse and ident is not pd.NA else None
    if part is not None:
        lines.append(f"of which diversity penalty {fmt(part)}")
    return lines


def _hover(trace: Trace, idx: Index, nodes: pd.DataFrame, many_groups: bool) -> list[str]:
    """Hover text of every node (token text made visible and escaped: it is untrusted). Every node gives its
    path's log-prob (the model's) and score (summed token scores); a finished entry the score it was ranked by."""
    names = constraint_names(trace.constraints)
    lp = length_penalty(trace)
    diverse = float(trace.params.get("diversity_penalty") or 0.0) != 0.0
    tokens: dict[Any, str] = {pd.NA: "?"}  # texts repeat a lot: escape each once
    whys: dict[Any, str] = {}
    cols = ("node", "id", "kind", "step", "slot", "group", "parent_id", "token_id", "text", "score", "why",
            "normalized_score", "accepted", "reason", "note", "result_rank", "expanded", "path_logprob")
    out = []
    for key, ident, kind, step, slot, group, parent_id, token_id, text, score, why, norm, accepted, reason, note, \
            rank, expanded, path_lp in zip(*(nodes[c].tolist() for c in cols), strict=True):
        c = _candidate(idx, key, ident, step, parent_id, token_id)
        place = f"step {step}" + (f" · slot {slot}" if slot is not pd.NA else "") + \
            (f" · group {group}" if many_groups else "")
        path = f"path: log-prob {fmt(path_lp)} · score {fmt(score)}"
        if key[0] == "h" and parent_id is pd.NA:  # the prompt, or a grafted branch's forced token (explorer.fork)
            first = "prompt" if text is pd.NA else tokens.get(text) or tokens.setdefault(text, safe_hover(text))
            lines = [f"<b>{first}</b>  {key} · root · {place}", path]
        else:
            token = tokens.get(text) or tokens.setdefault(text, safe_hover(text))
            lines = [f"<b>{token}</b>  {key} · {kind} · {place}"]
            lines += _candidate_lines(c) if c is not None else ["(candidate not recorded)"]
            lines.append(path)
        if kind == "finished":
            lines += _finished_lines(idx, ident, score, norm, lp, diverse, accepted)
            lines.append(f"ended: {esc(reason)}" + (f" · {esc(note)}" if isinstance(note, str) and note else ""))
        if why is not pd.NA:
            lines.append(f"{c.fate if c is not None else kind}: {whys.get(why) or whys.setdefault(why, esc(why))}")
        hyp = idx.hyps.get(int(ident)) if key[0] == "h" and ident is not pd.NA else None
        if hyp is not None and hyp.constraint is not None:
            lines += _constraint_lines(hyp.constraint, names)
        if hyp is not None and hyp.forced:
            lines.append("forced by a constraint")
        if kind == "hypothesis" and not expanded:
            lines.append("never expanded: the run stopped first")
        if rank is not pd.NA:
            lines.append(f"★ on the path of result {rank}")
        out.append("<br>".join(lines))
    return out


def _labels(texts: list[Any], kind: Objects) -> Objects:
    """Token text beside each node (escaped once per distinct text); ``prompt`` for a root, nothing if unknown."""
    seen = {text: safe_label(text) for text in set(texts) if text is not pd.NA}
    labels = np.array([seen.get(text, "") if text is not pd.NA else "" for text in texts], dtype=object)
    labels[(labels == "") & (kind == "hypothesis")] = "prompt"
    return labels


def _pushed_kind(trace: Trace, idx: Index, nodes: pd.DataFrame) -> Objects:
    """The nodes' kinds, a pruned leaf that the processors pushed out of the recorded top-k (one of the model's own
    top-k) made ``"pushed down"``."""
    kind: Objects = nodes["kind"].to_numpy(dtype=object)
    k = int(trace.params.get("record_top_k", 10) or 0)
    rows = np.flatnonzero(kind == "pruned")
    if not len(rows) or not k:
        return kind
    picked = nodes.iloc[rows]
    for r, key, step, parent_id, token_id in zip(rows.tolist(), *(picked[c].tolist() for c in
                                                                   ("node", "step", "parent_id", "token_id")),
                                                  strict=True):
        c = _candidate(idx, key, None, step, parent_id, token_id)
        if c is not None and pushed_out(c, k):
            kind[r] = "pushed down"
    return kind


def _array(series: pd.Series, dtype: Any, missing: Any) -> Any:
    """A column as a numpy array with missing values filled."""
    return np.array(series.to_numpy(dtype=dtype, na_value=missing))  # a writable copy


def tree_layout(trace: Trace) -> TreeLayout:
    """Lay out the search tree of ``trace`` as a beam lattice (see :class:`TreeLayout`); the costly part of a tree.

    >>> import explorer
    >>> t = explorer.decode(explorer.load_model("tiny-random"), [5, 6], strategy="beam", num_beams=2, max_new_tokens=3)
    >>> lay = tree_layout(t)
    >>> lay.key[0], float(lay.x[0]), float(lay.y[0]), int(lay.decided[0])
    ('h0', 0.0, 0.0, -1)
    """
    nodes, _ = tree_frames(trace)
    key = nodes["node"].to_numpy(dtype=object)
    idx = index(trace)
    kind = _pushed_kind(trace, idx, nodes)
    row = pd.Series(np.arange(len(nodes), dtype=np.int64), index=key)
    parent = nodes["parent"].map(row).to_numpy(dtype="float64", na_value=np.nan)
    parent = np.where(np.isnan(parent), -1, parent).astype(np.int64)
    step = _array(nodes["step"], np.int64, 0)
    # A hypothesis is decided when its parent's step picks it: the root before step 0 (the prompt is given), a
    # grafted branch's root (its forced token, explorer.fork) at its fork's step.
    decided = np.where(kind == "hypothesis", step - 1, step)
    group = _array(nodes["group"], np.int64, 0)
    logprob = _array(nodes["logprob"], np.float64, np.nan)
    logprob[(kind == "hypothesis") & (parent < 0) & np.isnan(logprob)] = 0.0  # the prompt is given: probability one
    groups = int(group.max()) + 1 if len(group) else 1
    slots = _array(nodes["slot"], np.float64, np.nan)
    x = _array(nodes["depth"], np.float64, 0.0)
    return TreeLayout(
        strategy=trace.strategy,
        title=_title(trace),
        key=key,
        kind=kind,
        x=x,
        y=_positions(nodes, kind, parent, x),
        decided=decided,
        parent=parent,
        score=_array(nodes["score"], np.float64, np.nan),
        logprob=logprob,
        group=group,
        normalized=_array(nodes["normalized_score"], np.float64, np.nan),
        accepted=_array(nodes["accepted"], bool, False),
        result_rank=_array(nodes["result_rank"], np.int64, -1),
        label=_labels(nodes["text"].tolist(), kind),
        hover=np.array(_hover(trace, idx, nodes, groups > 1), dtype=object),
        slots=int(np.nanmax(slots)) + 1 if len(slots) and not np.isnan(slots).all() else 1,
        depth=int(nodes["depth"].max()) if len(nodes) else 0,
        groups=groups,
    )
