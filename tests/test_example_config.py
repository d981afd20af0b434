from pathlib import Path

import yaml

from adapter.registry import ConnectorRegistry
from adapter.sources import iter_mapped, open_source
from tests.conftest import REPO, make_source

EXAMPLE = REPO / "config" / "sources.example.yaml"
# The foundation's settings refuse keys that look like secrets (password, api_key, token...).
SECRET_SUFFIXES = ("password", "passwd", "secret", "api_key", "apikey", "token", "private_key")


def example_sources():
    raw = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))["sources"]
    return {
        name: make_source(
            connector=entry["connector"], mapping=(EXAMPLE.parent / entry["mapping"]).resolve(),
            options=entry["options"], enabled=entry["enabled"], schedule=entry["schedule"])
        for name, entry in raw.items()
    }


def test_every_example_source_has_valid_options_and_mapping():
    registry = ConnectorRegistry().load_entry_points()
    sources = example_sources()
    assert {source.connector for source in sources.values()} == {"csv", "soap", "rest"}
    for name, source in sources.items():
        connector, _ = open_source(source, registry, source_name=name, base_dir=EXAMPLE.parent)
        assert connector.option_problems == [], (name, connector.option_problems)


def test_no_example_option_key_looks_like_a_secret():
    def keys(node):
        if isinstance(node, dict):
            for key, value in node.items():
                yield str(key)
                yield from keys(value)

    offending = [key for key in keys(yaml.safe_load(EXAMPLE.read_text(encoding="utf-8")))
                 if key.lower().endswith(SECRET_SUFFIXES)]
    assert offending == []


def test_the_demo_csv_source_reads_with_paths_relative_to_the_config():
    demo = example_sources()["demo"]
    results = list(iter_mapped(demo, ConnectorRegistry().load_entry_points(), base_dir=EXAMPLE.parent))
    assert len(results) == 6
    assert Path(demo.mapping).name == "demo-csv.yaml"
