"""What connectors.http gives a plug-in (docs/connectors.md names it the plug-in API)."""

from adapter.connector import CheckBuilder, ConnectorOptions
from connectors.http import HttpConnector
from connectors.replay import replay_session


class _GraphqlConnector(HttpConnector):
    """A plug-in's HTTP connector."""

    options_model = ConnectorOptions
    description = "made up"

    def records(self):
        yield from ()

    def check(self):
        return CheckBuilder(self.source_name, "made-up").result()


def test_a_plug_in_reads_the_injected_session_by_a_public_name():
    """The docs offered HttpConnector "taking an injected session" but not where it is kept: an author had to
    read the private self._session, and a helper method of that name was overwritten by it (TypeError)."""
    session = replay_session(lambda request: (200, {}, b"{}"), "https://acme.example/")
    assert _GraphqlConnector({}, session=session).injected_session is session
    assert _GraphqlConnector({}).injected_session is None
