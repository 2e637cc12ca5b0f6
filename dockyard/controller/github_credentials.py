"""The one place that turns a stored GitHub link into the credential its calls use.

A link is either a token link (the token, sealed in the row) or an App link (the App's
sealed private key, and the installation found at link time). Every caller — the fetch of
the repository (`gitsource`/`sourcemirror`, HTTP Basic `x-access-token`), the REST client
(`Bearer`), the sweeper's head question — asks for "the token for this link now" and never
branches on the kind: an installation token is used exactly as a token is.

What it hands out is a callable, so that an App's installation token is minted (or taken
from the in-memory cache, `github_app.InstallationTokens`) when the call happens, not when
the link was read. Clear values live only in memory.
"""

from collections.abc import Callable

import httpx
from sqlalchemy import select
from sqlalchemy.orm import Session

from dockyard.clock import Clock
from dockyard.controller import github_app
from dockyard.controller.keys import Keyring
from dockyard.controller.store.db import Database
from dockyard.controller.store.models import GithubApp, GithubLink
from dockyard.errors import NotFound

Credential = Callable[[], str]
APP = "app"


class Credentials:
    """Credentials of links, with one cache of installation tokens for the whole server."""

    def __init__(
        self,
        db: Database,
        keys: Keyring,
        clock: Clock,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.db = db
        self.keys = keys
        self.clock = clock
        self.transport = transport
        self.tokens = github_app.InstallationTokens(clock, transport)

    def for_link(self, session: Session, link: GithubLink) -> Credential:
        """The link's credential: its token, or its App's installation token on demand."""
        if link.credential_kind == APP:
            app = self.app_of(session, link)
            installation, repo = link.installation_id or 0, link.repo
            return lambda: self.tokens.token(app, installation, repo)
        if link.sealed_credential is None:
            raise NotFound(f"the link to {link.repo} has no stored token: link it again")
        token = self.keys.unseal(link.sealed_credential).decode()
        return lambda: token

    def token(self, link_id: int) -> str:
        """The token for link `link_id` now (the sweeper's one call)."""
        with self.db.session() as session:
            link = session.get(GithubLink, link_id)
            if link is None:
                raise NotFound(f"GitHub link {link_id} was removed")
            credential = self.for_link(session, link)
        return credential()

    def app_of(self, session: Session, link: GithubLink) -> github_app.App:
        row = session.get(GithubApp, link.app_ref) if link.app_ref is not None else None
        if row is None:
            raise NotFound(f"the GitHub App of the link to {link.repo} is gone: link it again")
        return self.app(row)

    def app(self, row: GithubApp) -> github_app.App:
        return github_app.App(row.app_id, row.api_url, self.keys.unseal(row.sealed_private_key))

    def apps(self) -> list[tuple[int, github_app.App]]:
        """Every stored App (row id, App): what redelivery goes through."""
        with self.db.session() as session:
            rows = session.scalars(select(GithubApp).order_by(GithubApp.id)).all()
            return [(row.id, self.app(row)) for row in rows]
