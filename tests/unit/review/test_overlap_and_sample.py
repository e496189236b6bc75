"""Review logic without models: overlap with critique's measure, and the generation sample being a subset of
the full run's requests (what makes every sample reply reusable by the next run)."""

from __future__ import annotations

from labpipe.generation.flow import load_flows, plan, start_items
from labpipe.review.overlap import Seed, find_overlap
from labpipe.review.sample import sample_record

HAIKU = [
    (
        "Write a haiku about a hammer.",
        "Steel head finds the nail\none clean strike and then the next\nthe shelf holds",
    ),
    (
        "Write a haiku about a garden rake.",
        "Autumn leaves gather\nthin fingers comb the wet lawn\na red pile by noon",
    ),
    (
        "Write a haiku about a paintbrush.",
        "Bristles drink the blue\nlong strokes across the old fence\nsummer dries",
    ),
]


def _seeds(leaf, pairs):
    return [Seed(leaf, i, q, a) for i, (q, a) in enumerate(pairs, 1)]


def test_near_duplicates_and_contradictions_point_at_the_other_leaf():
    others = _seeds("skills/haiku", HAIKU) + _seeds("skills/other", [("What is a rake?", "A garden tool.")])
    mine = _seeds(
        "skills/new",
        [
            ("Write a haiku about a hammer!", HAIKU[0][1].upper()),  # same after normalisation
            (
                HAIKU[2][0],
                "Morning light on blue\nthe fence drinks slow even strokes\nwet paint, do not touch",
            ),
            ("How do I oil a saw?", "Wipe a thin coat of machine oil on the blade after use."),
        ],
    )
    found = find_overlap(mine, others, 0.85)
    assert found.near_duplicates == [
        {"seed": "skills/new#1", "of": "skills/haiku#1", "question": mine[0].question, "similarity": 1.0}
    ]
    assert found.contradictions == [{"seed": "skills/new#2", "of": "skills/haiku#3", "question": HAIKU[2][0]}]
    assert found.leaves() == ["skills/haiku"]
    assert find_overlap(mine[2:], others, 0.85).near_duplicates == []


def test_a_leaf_never_overlaps_an_unrelated_taxonomy():
    found = find_overlap(_seeds("a", HAIKU), _seeds("b", [("Name a tool.", "A hammer.")]), 0.85)
    assert found.near_duplicates == [] and found.contradictions == []


def _first_step_ids(flow, record, scale):
    items = start_items(flow, record)
    return {req.request_id for _, req in plan(flow, flow.generate_steps[0], items, fan_out_scale=scale)}


def test_skill_sample_is_the_first_fan_out_indices_of_the_full_run():
    flow = load_flows()["freeform_skill"]
    record = {"leaf_id": "s/x", "kind": "freeform_skill", "task_description": "t",
              "seed_examples": [{"question": q, "answer": a} for q, a in HAIKU]}  # fmt: skip
    cut, scale = sample_record(record, flow, 2)
    sample = _first_step_ids(flow, cut, scale)
    full = _first_step_ids(flow, record, 1.0)
    assert len(sample) == 2 and sample < full and len(full) == flow.generate_steps[0].fan_out
    assert sample_record(record, flow, 99)[1] == 1.0  # never more than the run asks for


def test_knowledge_sample_is_a_subset_of_the_full_run_items():
    flow = load_flows()["knowledge"]
    examples = [{"question": f"q{c}{i}", "answer": f"a{c}{i}", "context": f"context {c}"}
                for c in range(5) for i in range(3)]  # fmt: skip
    chunks = [{"chunk_id": f"d#{i}", "text": f"chunk text {i}"} for i in range(4)]
    record = {
        "leaf_id": "k/x",
        "kind": "knowledge",
        "domain": "d",
        "seed_examples": examples,
        "chunks": chunks,
    }
    full = _first_step_ids(flow, record, 1.0)
    for size, items in ((1, 1), (2, 2), (5, 5), (7, 10)):  # contexts first, then whole chunks x contexts
        sample = _first_step_ids(flow, *sample_record(record, flow, size))
        assert sample <= full and len(sample) == items


def test_near_duplicates_just_above_the_threshold_are_all_found():
    """Exact Jaccard over critique's shingles: a pair at 0.88-0.95 is always found (MinHash LSH, critique's
    estimate, misses such pairs now and then), and one below the threshold never is."""
    from labpipe.critique.dedup import jaccard, shingle_set

    words = [f"w{i}" for i in range(60)]
    base = Seed("a/x", 1, "Summarise the text.", " ".join(words))
    for k in (2, 3, 4, 12):  # change the last k words: lower and lower similarity
        changed = Seed("b/y", 1, "Summarise the text.", " ".join(words[:-k] + [f"v{i}" for i in range(k)]))
        j = jaccard(*(shingle_set({"question": s.question, "answer": s.answer}) for s in (base, changed)))
        found = find_overlap([changed], [base], 0.85).near_duplicates
        assert (found != []) == (j >= 0.85), (k, j)
        if found:
            assert found[0]["similarity"] == round(j, 3)


def test_critique_minhash_equals_datasketch_updated_one_by_one():
    import numpy as np
    from datasketch import MinHash

    from labpipe.critique.dedup import NUM_PERM, minhash

    for n in (1, 7, 300):
        shingles = {f"s{i} t{i * 7} u{i % 5}" for i in range(n)}
        reference = MinHash(num_perm=NUM_PERM, seed=1)
        for s in shingles:
            reference.update(s.encode())
        assert np.array_equal(minhash(shingles).hashvalues, reference.hashvalues)


def test_sample_contributor_branch_adds_three_leaves_on_top_of_main(tmp_path):
    from labpipe.taxonomy import gitrepo
    from labpipe.taxonomy.diff import taxonomy_diff
    from labpipe.taxonomy.sample import CONTRIBUTOR_BRANCH, prepare_sample_taxonomy

    taxonomy = prepare_sample_taxonomy(tmp_path / "a", contributor=True)
    again = prepare_sample_taxonomy(tmp_path / "b", contributor=True)
    assert gitrepo.git("rev-parse", "--abbrev-ref", "HEAD", cwd=taxonomy).strip() == "main"
    assert not (taxonomy / "branches").exists()  # the branch data is not part of main
    head = gitrepo.resolve(CONTRIBUTOR_BRANCH, taxonomy)
    assert head == gitrepo.resolve(CONTRIBUTOR_BRANCH, again)  # fixed author and date: the same commit id
    gitrepo.git("checkout", "--quiet", CONTRIBUTOR_BRANCH, cwd=taxonomy)
    diff = taxonomy_diff(taxonomy, "main")
    assert [(c.leaf_id.rsplit("/", 1)[1], c.status) for c in diff.changes] == [
        ("tool_care_tips", "added"), ("tool_haiku", "added"), ("workshop_rules", "added")]  # fmt: skip
