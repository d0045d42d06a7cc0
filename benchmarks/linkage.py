"""Linkage report: how well each match-key recipe and multi-key rule finds the right people.

    python -m benchmarks.linkage --population 100000 --subjects 10000 --seed 1 --out DIR
    python -m benchmarks.linkage --corpus pseudopeople --subjects 10000 --seed 0 --out DIR
    python -m benchmarks.linkage ... --write-quality   # also refresh psi_core/recipes/quality.json

Keys are computed in plaintext with the real recipes (``psi_core.recipes``); no curve
operation is involved. The PSI protocol reports exactly the subjects whose key is in the
custodian's key set (up to the cryptographic false-positive bound, printed beside each
figure), so plaintext set membership measures the *semantic* quality of a recipe: what
the agency would learn if the cryptography were perfect.

Definitions (per subject; a subject is a *member* when the truth says the custodian holds
a record of that person):

- a subject *matches* recipe r when its r-key is in the custodian's set of r-keys;
- under a rule over recipes S (``any``, ``all``, ``at_least_K``), it matches when the set
  of its recipes in S that match satisfies the rule (``all`` needs every recipe in S);
- true match: a matching member; false match: a matching non-member;
- precision = true / (true + false); recall = true / members; F1 their harmonic mean;
- false-match rate = false matches per *keyed* subject (one with at least one key in S),
  the figure ``psi_core.recipes.quality`` ships so a result can carry its expected
  false matches;
- wrong record: a matching member none of whose matching keys is a key of one of its own
  records (found through a relative or a namesake; counted as true for precision, since
  the membership answer is right, and shown apart).

Writes ``DIR/linkage.json`` (every recipe and rule, overall and by name origin, variation
type and near-miss kind), ``DIR/linkage.md`` and ``DIR/linkage.png`` (precision against
recall per rule).
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from psi_core.protocol import FINGERPRINT_BITS
from psi_core.recipes import DEFAULT_RECIPE_IDS, RECIPES, rule_id
from psi_tools.synth import (
    generate_population,
    generate_subjects,
    infer_origin,
    write_population,
)

ROOT = Path(__file__).resolve().parents[1]
QUALITY_PATH = ROOT / "psi_core" / "recipes" / "quality.json"
QUALITY_MAX_RECIPES = 4
"""Rules over at most this many recipes go into ``quality.json`` (the rest stay in the report)."""

FORMATTING_ONLY = "formatting_only"
EXACT = "exact"


@dataclass
class Corpus:
    """Plaintext records and subjects with the truth the report needs."""

    name: str
    profile: str
    records: list[dict[str, str]]
    record_truth: list[str]
    subjects: list[dict[str, str]]
    subject_truth: list[str]
    member: np.ndarray
    origin: list[str]
    variations: list[list[str]]
    near_miss: list[str]
    source: list[str]
    notes: dict[str, object]


def synthetic_corpus(
    population: int, subjects: int, seed: int, profile: str, overlap: float
) -> Corpus:
    """The synthetic population (seed ``seed``) and a subject list drawn from it with seed
    ``seed + 1`` (as ``psi synth`` does by default: population 1, subjects 2)."""
    records = [row for batch in generate_population(population, seed) for row in batch]
    with tempfile.TemporaryDirectory(prefix="linkage-") as tmp:
        path = Path(tmp) / "population.csv"
        write_population(population, seed, path)
        batches = list(generate_subjects(path, subjects, overlap, seed + 1, profile=profile))
    subject_rows = [s for b in batches for s in b.subjects]
    truth = [t for b in batches for t in b.truth]
    by_id = {r["record_id"]: r for r in records}
    origin, variations, near = [], [], []
    for t in truth:
        source = by_id.get(t["record_id"])
        if "origin" in t:
            origin.append(t["origin"])
        else:
            origin.append(
                infer_origin(source["given_name"], source["family_name"]) if source else "unknown"
            )
        tags = [v for v in t.get("variations", "").split(";") if v]
        variations.append(tags)
        near.append(t.get("near_miss", ""))
    _add_context(records, truth, variations)
    return Corpus(
        name="synthetic",
        profile=profile,
        records=records,
        record_truth=[r["record_id"] for r in records],
        subjects=subject_rows,
        subject_truth=[t["record_id"] for t in truth],
        member=np.array([bool(t["record_id"]) for t in truth]),
        origin=origin,
        variations=variations,
        near_miss=near,
        source=["synthetic"] * len(truth),
        notes={"population": population, "subjects": subjects, "seed": seed, "overlap": overlap},
    )


def _add_context(
    records: list[dict[str, str]], truth: list[dict[str, str]], variations: list[list[str]]
) -> None:
    """Tag members whose record shares an address (``shares_address``) or a name in its ZIP
    (``namesake_in_zip``) with another record: the situations that make keys collide."""
    name_v1 = RECIPES["name_address_v1"]
    addresses: dict[tuple[str, str], int] = {}
    namesakes: dict[tuple[str, str], int] = {}
    for r in records:
        addresses[(r["street"].upper(), r["zip"])] = (
            addresses.get((r["street"].upper(), r["zip"]), 0) + 1
        )
        fields = name_v1.canonical_fields({**r, "street": "1 X ST"})
        if fields:
            key = (fields[0], r["zip"])
            namesakes[key] = namesakes.get(key, 0) + 1
    by_id = {r["record_id"]: r for r in records}
    for t, tags in zip(truth, variations, strict=True):
        r = by_id.get(t["record_id"])
        if r is None:
            continue
        if addresses.get((r["street"].upper(), r["zip"]), 0) > 1:
            tags.append("shares_address")
        fields = name_v1.canonical_fields({**r, "street": "1 X ST"})
        if fields and namesakes.get((fields[0], r["zip"]), 0) > 1:
            tags.append("namesake_in_zip")


def pseudopeople_corpus(subjects: int, seed: int) -> Corpus:
    """The pseudopeople sample (see :mod:`psi_tools.pseudopeople_corpus`)."""
    from psi_tools import pseudopeople_corpus as pp

    loaded = pp.load(seed=seed, max_ssa_subjects=subjects)
    return Corpus(
        name="pseudopeople",
        profile="pseudopeople-default-noise",
        records=loaded.records,
        record_truth=loaded.record_truth,
        subjects=loaded.subjects,
        subject_truth=[t["truth_id"] for t in loaded.subject_truth],
        member=np.array([bool(t["member"]) for t in loaded.subject_truth]),
        origin=[t["origin"] for t in loaded.subject_truth],
        variations=[[v for v in t["variations"].split(";") if v] for t in loaded.subject_truth],
        near_miss=[""] * len(loaded.subjects),
        source=[t["source"] for t in loaded.subject_truth],
        notes={**loaded.notes, "subjects": len(loaded.subjects), "records": len(loaded.records)},
    )


@dataclass(frozen=True)
class Rule:
    """A recipe alone or a multi-key rule: match when at least ``threshold`` of ``recipes`` do."""

    id: str
    kind: str
    recipes: tuple[str, ...]
    threshold: int


def all_rules(recipe_ids: Sequence[str]) -> list[Rule]:
    """Every recipe; any/all over every pair; any/all/at_least_2 over every triple;
    at_least_2 and at_least_3 over every four."""
    ids = sorted(recipe_ids)
    rules = [Rule(rule_id("any", [r]), "recipe", (r,), 1) for r in ids]
    for size in (2, 3, 4):
        for group in itertools.combinations(ids, size):
            kinds: list[tuple[str, int]] = []
            if size <= 3:
                kinds += [("any", 1), ("all", size)]
            kinds += [
                ("at_least", k) for k in range(2, size) if size >= 3 and (size == 4 or k == 2)
            ]
            for kind, k in kinds:
                rid = rule_id(kind, group, k)
                rules.append(Rule(rid, kind, group, k))
    return rules


@dataclass
class KeyedCorpus:
    """Per subject bitmasks over the recipes: has a key, key matched, key is its own."""

    recipe_ids: tuple[str, ...]
    keyed: np.ndarray
    matched: np.ndarray
    own: np.ndarray
    key_counts: dict[str, int]


def compute_keys(corpus: Corpus, recipe_ids: Sequence[str]) -> KeyedCorpus:
    keyed = np.zeros(len(corpus.subjects), dtype=np.int64)
    matched = np.zeros_like(keyed)
    own = np.zeros_like(keyed)
    counts: dict[str, int] = {}
    for bit, rid in enumerate(recipe_ids):
        make = RECIPES[rid].key
        owners: dict[str, set[str]] = {}
        for record, truth_id in zip(corpus.records, corpus.record_truth, strict=True):
            key = make(record)
            if key is not None:
                owners.setdefault(key, set()).add(truth_id)
        counts[rid] = len(owners)
        flag = 1 << bit
        for i, (subject, truth_id) in enumerate(
            zip(corpus.subjects, corpus.subject_truth, strict=True)
        ):
            key = make(subject)
            if key is None:
                continue
            keyed[i] |= flag
            found = owners.get(key)
            if found is not None:
                matched[i] |= flag
                if truth_id and truth_id in found:
                    own[i] |= flag
    return KeyedCorpus(tuple(recipe_ids), keyed, matched, own, counts)


_POPCOUNT = np.array([bin(v).count("1") for v in range(1 << 12)], dtype=np.int64)


def _metrics(
    select: np.ndarray, member: np.ndarray, sat: np.ndarray, keyed: np.ndarray, wrong: np.ndarray
) -> dict[str, float | int]:
    members = int((select & member).sum())
    tp = int((select & sat & member).sum())
    fp = int((select & sat & ~member).sum())
    keyed_n = int((select & keyed).sum())
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / members if members else float("nan")
    f1 = 2 * precision * recall / (precision + recall) if members and precision + recall else 0.0
    return {
        "subjects": int(select.sum()),
        "members": members,
        "keyed": keyed_n,
        "true_matches": tp,
        "false_matches": fp,
        "wrong_record": int((select & wrong).sum()),
        "precision": precision,
        "recall": recall,
        "f1": f1,
        "false_match_rate": fp / keyed_n if keyed_n else 0.0,
    }


def _groups(corpus: Corpus) -> dict[str, dict[str, np.ndarray]]:
    n = len(corpus.subjects)
    out: dict[str, dict[str, np.ndarray]] = {}
    origins = np.array(corpus.origin, dtype=object)
    out["origin"] = {o: origins == o for o in sorted(set(corpus.origin))}
    tags = sorted({t for ts in corpus.variations for t in ts})
    variation = {t: np.array([t in ts for ts in corpus.variations]) for t in tags}
    variation[EXACT] = np.array([not ts for ts in corpus.variations])
    content = {"formatting", "dob_missing", "tin_missing", "shares_address", "namesake_in_zip"}
    variation[FORMATTING_ONLY] = np.array(
        [bool(ts) and set(ts) <= content and "formatting" in ts for ts in corpus.variations]
    )
    out["variation"] = variation
    kinds = sorted({k for k in corpus.near_miss if k})
    near = np.array(corpus.near_miss, dtype=object)
    out["near_miss"] = {k: near == k for k in kinds}
    sources = sorted(set(corpus.source))
    if len(sources) > 1:
        source = np.array(corpus.source, dtype=object)
        out["source"] = {s: source == s for s in sources}
    out["_all"] = {"all": np.ones(n, dtype=bool)}
    return out


def evaluate(corpus: Corpus, keys: KeyedCorpus, rules: Iterable[Rule]) -> list[dict[str, object]]:
    """Every rule's figures, overall and per breakdown."""
    groups = _groups(corpus)
    member = corpus.member
    results = []
    for rule in rules:
        mask = sum(1 << keys.recipe_ids.index(r) for r in rule.recipes)
        count = _POPCOUNT[keys.matched & mask]
        sat = count >= rule.threshold
        keyed = (keys.keyed & mask) != 0
        wrong = sat & member & ((keys.own & keys.matched & mask) == 0)
        index_keys = sum(keys.key_counts[r] for r in rule.recipes)
        entry: dict[str, object] = {
            "id": rule.id,
            "kind": rule.kind,
            "recipes": list(rule.recipes),
            "threshold": rule.threshold,
            "custodian_keys": index_keys,
            "crypto_bound_per_subject": len(rule.recipes) * index_keys / 2.0**FINGERPRINT_BITS,
            "overall": _metrics(groups["_all"]["all"], member, sat, keyed, wrong),
        }
        for name, parts in groups.items():
            if name.startswith("_"):
                continue
            entry[f"by_{name}"] = {
                k: _metrics(sel, member, sat, keyed, wrong) for k, sel in parts.items()
            }
        results.append(entry)
    return results


def _fmt(x: float) -> str:
    return "n/a" if isinstance(x, float) and math.isnan(x) else f"{x:.4f}"


def best_rule(
    results: list[dict[str, object]], min_precision: float, multi: bool = True, max_recipes: int = 4
) -> dict[str, object] | None:
    """The rule with the highest recall among those at ``min_precision`` or better."""
    eligible = [
        r
        for r in results
        if (r["kind"] != "recipe" or not multi)
        and len(r["recipes"]) <= max_recipes
        and r["overall"]["precision"] >= min_precision
    ]
    if not eligible:
        return None
    return max(
        eligible,
        key=lambda r: (r["overall"]["recall"], r["overall"]["precision"], -len(r["recipes"])),
    )


def summary(corpus: Corpus, results: list[dict[str, object]]) -> dict[str, object]:
    """The figures the issue asks for, and which recipe/rule gives them."""
    by_id = {r["id"]: r for r in results}
    out: dict[str, object] = {}
    address_recipes = [
        r for r in ("name_address_v1", "name_address_v2", "name_house_v1") if r in by_id
    ]
    fo = {
        r: by_id[r]["by_variation"].get(FORMATTING_ONLY, {}).get("recall", float("nan"))
        for r in address_recipes
    }
    if fo and not all(math.isnan(v) for v in fo.values()):
        best = max(fo, key=lambda r: -1 if math.isnan(fo[r]) else fo[r])
        out["formatting_only_recall"] = {"recipe": best, "recall": fo[best], "all": fo}
    for threshold in (0.999, 0.995):
        for limit in (4, 3):
            rule = best_rule(results, threshold, max_recipes=limit)
            if rule is not None:
                out[f"best_rule_at_precision_{threshold}_max_{limit}_recipes"] = {
                    "rule": rule["id"],
                    "precision": rule["overall"]["precision"],
                    "recall": rule["overall"]["recall"],
                }
    top = max(results, key=lambda r: r["overall"]["f1"])
    out["best_f1"] = {
        "rule": top["id"],
        **{k: top["overall"][k] for k in ("precision", "recall", "f1")},
    }
    return out


def origin_disparity(
    entry: dict[str, object], min_members: int = 20
) -> tuple[str, float, str, float]:
    parts = {k: v["recall"] for k, v in entry["by_origin"].items() if v["members"] >= min_members}
    low = min(parts, key=parts.get)
    high = max(parts, key=parts.get)
    return low, parts[low], high, parts[high]


def write_markdown(
    path: Path,
    corpus: Corpus,
    results: list[dict[str, object]],
    facts: dict[str, object],
    command: str,
) -> None:
    by_id = {r["id"]: r for r in results}
    lines = [
        f"# Linkage report: {corpus.name} corpus ({corpus.profile})",
        "",
        f"Command: `{command}`  ",
        f"Sizes: {len(corpus.records):,} custodian records, {len(corpus.subjects):,} subjects "
        f"({int(corpus.member.sum()):,} members). Notes: {json.dumps(corpus.notes)}",
        "",
        "Keys computed in plaintext with the real recipes (semantic quality; the cryptographic "
        "bound is the last column). False-match rate = false matches per keyed subject.",
        "",
        "## Headline figures",
        "",
    ]
    for name, value in facts.items():
        lines.append(f"- **{name}**: {json.dumps(value, default=_json_default)}")
    lines += ["", "## Recipes", "", _table([by_id[r] for r in sorted(RECIPES) if r in by_id]), ""]
    pairs = [
        ("name_address_v1", "name_address_v2"),
        ("name_dob_v1", "name_dob_v2"),
        ("tin_v1", "tin_v2"),
        ("tin_v1", "tin_initials_v1"),
        ("name_address_v1", "name_house_v1"),
        ("name_dob_v1", "sound_dob_v1"),
    ]
    lines += ["## Before and after (recall per variation type)", ""]
    variations = sorted({k for r in results[:1] for k in r["by_variation"]})
    header = "| variation | members | " + " | ".join(f"{a} → {b}" for a, b in pairs) + " |"
    lines += [header, "|" + "---|" * (len(pairs) + 2)]
    for v in variations:
        members = by_id[pairs[0][0]]["by_variation"][v]["members"]
        cells = []
        for a, b in pairs:
            ra = by_id[a]["by_variation"][v]["recall"]
            rb = by_id[b]["by_variation"][v]["recall"]
            cells.append(f"{_fmt(ra)} → {_fmt(rb)}")
        lines.append(f"| {v} | {members} | " + " | ".join(cells) + " |")
    lines += ["", "## Best multi-key rules", ""]
    multi = [r for r in results if r["kind"] != "recipe"]
    chosen: list[dict[str, object]] = []
    for threshold in (0.9999, 0.999, 0.995, 0.99):
        for limit in (4, 3, 2):
            rule = best_rule(results, threshold, max_recipes=limit)
            if rule is not None and rule not in chosen:
                chosen.append(rule)
    chosen += [r for r in sorted(multi, key=lambda r: -r["overall"]["f1"])[:8] if r not in chosen]
    v1_rules = [
        by_id[rule_id(k, DEFAULT_RECIPE_IDS, t)]
        for k, t in (("any", 1), ("at_least", 2), ("all", 3))
        if rule_id(k, DEFAULT_RECIPE_IDS, t) in by_id
    ]
    lines += [_table(chosen + [r for r in v1_rules if r not in chosen]), ""]
    lines += ["## Recall by name origin", ""]
    shown = [
        by_id[r]
        for r in ("name_address_v1", "name_address_v2", "name_dob_v1", "name_dob_v2", "tin_v1")
    ] + chosen[:2]
    origins = sorted(results[0]["by_origin"])
    lines += [
        "| origin | members | " + " | ".join(r["id"] for r in shown) + " |",
        "|" + "---|" * (len(shown) + 2),
    ]
    for o in origins:
        members = results[0]["by_origin"][o]["members"]
        lines.append(
            f"| {o} | {members} | "
            + " | ".join(_fmt(r["by_origin"][o]["recall"]) for r in shown)
            + " |"
        )
    lines.append("")
    for r in shown:
        low, lv, high, hv = origin_disparity(r)
        lines.append(
            f"- {r['id']}: lowest recall {low} {_fmt(lv)}, highest {high} {_fmt(hv)} "
            f"(gap {hv - lv:.4f}; origins with 20+ members)"
        )
    recipes_and_best = [by_id[r] for r in sorted(RECIPES) if r in by_id] + chosen[:2]
    if any(r["by_near_miss"] for r in results[:1]):
        lines += [
            "",
            "## False-match rate on near misses (non-members built to look like a member)",
            "",
        ]
        near = results[0]["by_near_miss"]
        lines += _breakdown_table(
            recipes_and_best,
            {k: f"{k} ({near[k]['subjects']})" for k in sorted(near)},
            lambda r, k: (
                r["by_near_miss"][k]["false_matches"] / max(r["by_near_miss"][k]["subjects"], 1)
            ),
        )
    if "by_source" in results[0]:
        lines += ["", "## Recall by subject source", ""]
        sources = results[0]["by_source"]
        lines += _breakdown_table(
            recipes_and_best,
            {s: f"{s} ({sources[s]['members']})" for s in sorted(sources)},
            lambda r, s: r["by_source"][s]["recall"],
        )
    lines.append("")
    path.write_text("\n".join(lines), encoding="utf-8")


def _breakdown_table(
    rules: Sequence[Any],
    columns: dict[str, str],
    cell: Callable[[Any, str], float],
) -> list[str]:
    """A markdown table: one row per rule, one column per key of ``columns`` (the value is
    its header), each cell ``cell(rule, key)``."""
    lines = [
        "| rule | " + " | ".join(columns.values()) + " |",
        "|" + "---|" * (len(columns) + 1),
    ]
    for r in rules:
        lines.append(f"| {r['id']} | " + " | ".join(_fmt(cell(r, k)) for k in columns) + " |")
    return lines


def _json_default(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(type(value))


def _table(entries: Sequence[dict[str, object]]) -> str:
    rows = [
        "| rule | keyed | matches | precision | recall | F1 | false-match rate | wrong record "
        "| crypto bound/subject |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        o = e["overall"]
        rows.append(
            f"| {e['id']} | {o['keyed']} | {o['true_matches'] + o['false_matches']} "
            f"| {_fmt(o['precision'])} | {_fmt(o['recall'])} | {_fmt(o['f1'])} "
            f"| {o['false_match_rate']:.2e} | {o['wrong_record']} "
            f"| {e['crypto_bound_per_subject']:.1e} |"
        )
    return "\n".join(rows)


def write_plot(path: Path, corpus: Corpus, results: list[dict[str, object]]) -> None:
    """Precision against recall per rule: all rules, and the high-precision corner enlarged."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(13, 5.5), dpi=80)
    styles = {
        "recipe": ("o", "tab:red"),
        "any": ("^", "tab:blue"),
        "all": ("v", "tab:green"),
        "at_least": ("s", "tab:purple"),
    }
    for ax, zoom in zip(axes, (False, True), strict=True):
        for kind, (marker, color) in styles.items():
            pts = [
                (r["overall"]["recall"], r["overall"]["precision"])
                for r in results
                if r["kind"] == kind and (not zoom or r["overall"]["precision"] >= 0.99)
            ]
            if pts:
                xs, ys = zip(*pts, strict=True)
                size = 40 if kind == "recipe" else 16
                ax.scatter(xs, ys, marker=marker, c=color, s=size, alpha=0.6, label=kind)
        for r in results:
            o = r["overall"]
            if r["kind"] == "recipe" and (not zoom or o["precision"] >= 0.99):
                ax.annotate(r["id"], (o["recall"], o["precision"]), fontsize=7)
        if zoom:
            best = best_rule(results, 0.995)
            if best is not None:
                o = best["overall"]
                ax.annotate(
                    best["id"], (o["recall"], o["precision"]), fontsize=7,
                    xytext=(-200, -40), textcoords="offset points",
                    arrowprops={"arrowstyle": "->", "lw": 0.6},
                )  # fmt: skip
            ax.set_ylim(0.99, 1.0005)
            ax.set_title("precision >= 0.99 enlarged")
        else:
            ax.set_title(f"every rule: {corpus.name} ({corpus.profile})")
        ax.set_xlabel("recall")
        ax.set_ylabel("precision")
        ax.grid(alpha=0.3)
        ax.legend(loc="lower left")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _corpus_facts(corpus: Corpus, command: str) -> dict[str, object]:
    """What a linkage result records of the corpus it was measured on."""
    return {
        "profile": corpus.profile,
        "command": command,
        "records": len(corpus.records),
        "subjects": len(corpus.subjects),
        "members": int(corpus.member.sum()),
        "notes": corpus.notes,
    }


def quality_entries(results: list[dict[str, object]]) -> dict[str, list[float | int]]:
    out = {}
    for r in results:
        if len(r["recipes"]) > QUALITY_MAX_RECIPES:
            continue
        o = r["overall"]
        out[r["id"]] = [
            round(o["false_match_rate"], 6),
            round(o["precision"], 5),
            round(o["recall"], 5) if not math.isnan(o["recall"]) else None,
            o["keyed"],
            o["false_matches"],
        ]
    return out


def write_quality(
    corpus: Corpus, results: list[dict[str, object]], command: str, path: Path = QUALITY_PATH
) -> None:
    """Merge this run's figures into ``quality.json`` under the corpus's name."""
    document = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    document.setdefault(
        "comment",
        "Generated by `python -m benchmarks.linkage --write-quality`; "
        "see psi_core/recipes/quality.py. Do not edit.",
    )
    document.setdefault("primary", "synthetic")
    document["fields"] = [
        "false_match_rate",
        "precision",
        "recall",
        "keyed_subjects",
        "false_matches",
    ]
    corpora = document.setdefault("corpora", {})
    corpora[corpus.name] = {**_corpus_facts(corpus, command), "rules": quality_entries(results)}
    text = json.dumps(document, indent=1, sort_keys=True, default=_json_default)
    text = _FLAT_LIST.sub(lambda m: "[" + ", ".join(v.strip() for v in m[1].split(",")) + "]", text)
    path.write_text(text + "\n", encoding="utf-8")


_FLAT_LIST = re.compile(r"\[\s+([^\[\]{}]*?)\s+\]")


def run(argv: Sequence[str] | None = None) -> dict[str, object]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--population", type=int, default=100_000, help="synthetic custodian records"
    )
    parser.add_argument(
        "--subjects",
        type=int,
        default=10_000,
        help="subjects (pseudopeople: most Social Security subjects)",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--corpus", choices=("synthetic", "pseudopeople"), default="synthetic")
    parser.add_argument("--profile", choices=("realistic", "formatting"), default="realistic")
    parser.add_argument(
        "--overlap", type=float, default=0.5, help="synthetic: share of subjects who are members"
    )
    parser.add_argument(
        "--write-quality", action="store_true", help=f"also update {QUALITY_PATH.relative_to(ROOT)}"
    )
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args(argv)
    command = "python -m benchmarks.linkage " + " ".join(argv if argv is not None else sys.argv[1:])
    started = time.perf_counter()
    if args.corpus == "synthetic":
        corpus = synthetic_corpus(
            args.population, args.subjects, args.seed, args.profile, args.overlap
        )
    else:
        corpus = pseudopeople_corpus(args.subjects, args.seed)
    recipe_ids = sorted(RECIPES)
    keys = compute_keys(corpus, recipe_ids)
    results = evaluate(corpus, keys, all_rules(recipe_ids))
    facts = summary(corpus, results)
    args.out.mkdir(parents=True, exist_ok=True)
    document = {
        "corpus": corpus.name,
        **_corpus_facts(corpus, command),
        "summary": facts,
        "rules": results,
    }
    (args.out / "linkage.json").write_text(
        json.dumps(document, indent=1, default=_json_default) + "\n", encoding="utf-8"
    )
    write_markdown(args.out / "linkage.md", corpus, results, facts, command)
    if not args.no_plot:
        write_plot(args.out / "linkage.png", corpus, results)
    if args.write_quality:
        write_quality(corpus, results, command)
    print(json.dumps(facts, indent=1, default=_json_default))
    print(
        f"{len(results)} rules over {len(recipe_ids)} recipes in "
        f"{time.perf_counter() - started:.1f} s; wrote {args.out}"
    )
    return document


if __name__ == "__main__":
    run()
