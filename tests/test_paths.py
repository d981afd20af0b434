"""Field paths read values relative to an item; the one-key paths have their own fast getter."""

from hypothesis import given
from hypothesis import strategies as st

from adapter.paths import compile_field_path

leaves = st.one_of(st.none(), st.text(max_size=3), st.integers(), st.booleans())
nodes = st.recursive(leaves, lambda inner: st.one_of(
    st.lists(inner, max_size=2), st.dictionaries(st.sampled_from(["k", "x"]), inner, max_size=2)), max_leaves=6)


def reference(levels, key, from_root=False, levels_up=0):
    """The rule the docstring of adapter.paths gives, written out plainly."""
    if from_root:
        node = levels[0]
    elif levels_up >= len(levels):
        return None
    else:
        node = levels[-1 - levels_up]
    return node.get(key) if isinstance(node, dict) else None


@given(levels=st.lists(nodes, min_size=1, max_size=4).map(tuple))
def test_one_key_paths_read_the_item_a_parent_or_the_root(levels):
    assert compile_field_path("k")(levels) == reference(levels, "k")
    assert compile_field_path("^.k")(levels) == reference(levels, "k", levels_up=1)
    assert compile_field_path("^^.k")(levels) == reference(levels, "k", levels_up=2)
    assert compile_field_path("$.k")(levels) == reference(levels, "k", from_root=True)
    # The general getter (two steps) agrees with reading one key, then the next.
    first = reference(levels, "k")
    assert compile_field_path("k.x")(levels) == (first.get("x") if isinstance(first, dict) else None)


def test_examples():
    household = {"huishoudnummer": "H1", "lid": [{"bsn": "999993653", "pas": [{"pasnummer": "6400"}]}]}
    member = household["lid"][0]
    levels = (household, member, member["pas"][0])
    assert compile_field_path("pasnummer")(levels) == "6400"
    assert compile_field_path("^.bsn")(levels) == "999993653"
    assert compile_field_path("$.huishoudnummer")(levels) == "H1"
    assert compile_field_path("^^^.bsn")(levels) is None
    assert compile_field_path("^.pas[0].pasnummer")(levels) == "6400"
